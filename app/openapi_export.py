"""Print the service's OpenAPI document as YAML (`make openapi` writes it to openapi.yaml).

A test holds the committed `openapi.yaml` equal to this output, so the spec cannot drift.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from app.main import create_app


def openapi_document() -> dict[str, Any]:

    return create_app().openapi()


def render() -> str:
    return yaml.safe_dump(openapi_document(), sort_keys=False, allow_unicode=True, width=120)


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
