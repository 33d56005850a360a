"""The import graph of `app` has no cycle, every Admin GraphQL document is in one module, and no
background loop waits in a way that can swallow its cancellation.

No cycle (module level; `if TYPE_CHECKING:` imports excluded).

A cycle is how layers start to blur (a service importing one that imports it back, made to work
with a function-level import): this test names the modules of each one. The layer contracts
themselves are import-linter's (`make lint`, pyproject's [tool.importlinter]).
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

import app
from app.shopify import documents
from tests.unit.test_graphql_documents import collect_documents


def strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's algorithm, iterative: every group of modules that import each other (size > 1)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(graph.find_modules_directly_imported_by(root)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            if successors:
                nxt = successors.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.find_modules_directly_imported_by(nxt))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_the_finder_sees_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("x.a", "x.b", "x.c"):
        graph.add_module(module)
    graph.add_import(importer="x.a", imported="x.b")
    graph.add_import(importer="x.b", imported="x.a")
    graph.add_import(importer="x.b", imported="x.c")
    assert strongly_connected(graph) == [["x.a", "x.b"]]


def test_app_has_no_import_cycle() -> None:
    graph = grimp.build_graph("app", exclude_type_checking_imports=True)
    assert strongly_connected(graph) == []


def test_every_admin_graphql_document_lives_in_the_documents_module() -> None:
    """Modules import their documents from `app.shopify.documents`; none defines one of its own."""
    texts = set(collect_documents().values())
    defined = {value for name, value in vars(documents).items() if name.isupper() and isinstance(value, str)}
    assert len(texts) >= 14  # the client's reads, write-through's metaobject and discount operations, ...
    assert texts <= defined, sorted(texts - defined)


def test_app_waits_with_a_timeout_without_asyncio_wait_for() -> None:
    """`asyncio.wait_for` on Python 3.11 can swallow the cancellation of the task waiting in it
    (app/core/tasks.py says when), and a background loop waiting that way outlives its `stop()`.
    `app` waits with `wait_event` or `asyncio.timeout` instead."""
    offenders = []
    for path in sorted(Path(app.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "wait_for":
                offenders.append(f"{path.relative_to(Path(app.__file__).parent.parent)}:{node.lineno}")
    assert offenders == []
