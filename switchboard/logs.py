"""JSON logs with structured fields; never secrets, never raw personal data.

Use ``logger.info("delivered", extra={"event_id": ..., "tenant_id": ...})``:
keys given in ``extra`` become fields of the JSON line. Every line also
carries the ``trace_id`` and ``span_id`` of the current span, and the event,
tenant and delivery ids the current span was tagged with
(``switchboard.event_id`` etc.) unless ``extra`` gives them.

The redaction rule (docs/observability.md), applied to every line by both
formatters:

1. A field whose *name* looks like a credential (contains ``secret``,
   ``passw``, ``token`` but not ``tokens``, ``authoriz``, ``signature``,
   ``cookie``, ``credential``, or ``api_key``/``api-key``/``apikey``,
   ``private_key``, ``master_key``, ``signing_key``) has its value replaced by
   ``[redacted]``, at any depth of a dict.
2. In the message, in every other string field and in exception text:
   Switchboard API keys keep only their key id (``sb_live_<key id>_[redacted]``),
   webhook secrets become ``whsec_[redacted]``, ``Bearer <token>`` becomes
   ``Bearer [redacted]``, provider keys (``sk-...``, Slack ``xox?-...``) are
   masked, email addresses become ``[email]`` and phone numbers (international
   ``+`` form, or North American ``555-123-4567`` / ``(555) 123-4567``)
   become ``[phone]``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from opentelemetry import trace

__all__ = ["configure_logging", "redact", "redact_text", "JsonFormatter", "TextFormatter", "REDACTED"]

REDACTED = "[redacted]"

# Attributes every LogRecord has; anything else came from `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

_SECRET_KEY = re.compile(
    r"secret|passw|token(?!s)|authoriz|signature|cookie|credential|api[_-]?key|private[_-]?key"
    r"|master[_-]?key|signing[_-]?key",
    re.IGNORECASE,
)

# (pattern, replacement), applied in order to free text.
_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(Bearer|Basic)\s+[\w.~+/=\-]{8,}", re.IGNORECASE), r"\1 " + REDACTED),
    (re.compile(r"\bsb_live_([A-Za-z0-9]{1,32})_[A-Za-z0-9]+"), r"sb_live_\1_" + REDACTED),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_\-]+"), "whsec_" + REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"), "sk-" + REDACTED),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{8,}"), "xox-" + REDACTED),
    (re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"), "[email]"),
    (re.compile(r"(?<![\w+])\+\d[\d\s().\-]{6,18}\d\b"), "[phone]"),
    (re.compile(r"(?<![\w\-])(?:\(\d{3}\)\s?|\b\d{3}[\-.])\d{3}[\-.]\d{4}\b"), "[phone]"),
)

# Span attributes copied into lines that do not give these fields themselves.
_SPAN_FIELDS = {
    "switchboard.event_id": "event_id",
    "switchboard.tenant_id": "tenant_id",
    "switchboard.delivery_id": "delivery_id",
}


def redact_text(text: str) -> str:
    """``text`` with keys, secrets, bearer tokens, emails and phone numbers masked (rule 2)."""
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text


def redact(key: str, value: Any) -> Any:
    """The value a field named ``key`` may show in a log line (rules 1 and 2)."""
    if _SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(key, v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    # Anything else (an exception, an object) is written as its text: masked like any text.
    return redact_text(str(value))


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {k: redact(k, v) for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _trace_fields(fields: dict[str, object]) -> dict[str, object]:
    """The current span's trace and span ids, and the ids it was tagged with (unless given)."""
    span = trace.get_current_span()
    span_context = span.get_span_context()
    if not span_context.is_valid:
        return {}
    found: dict[str, object] = {}
    attributes = getattr(span, "attributes", None)  # recording SDK spans only
    if attributes:
        for attribute, field in _SPAN_FIELDS.items():
            if field not in fields and attribute in attributes:
                found[field] = attributes[attribute]
    found["trace_id"] = format(span_context.trace_id, "032x")
    found["span_id"] = format(span_context.span_id, "016x")
    return found


class TextFormatter(logging.Formatter):
    """For a terminal: the message, then ``key=value`` for each structured field."""

    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = redact_text(super().format(record))
        extras = _extras(record)
        extras.update(_trace_fields(extras))
        fields = " ".join(f"{k}={v}" for k, v in extras.items())
        return f"{line} {fields}" if fields else line


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
        }
        extras = _extras(record)
        line.update(extras)
        line.update(_trace_fields(extras))
        if record.exc_info:
            line["exc"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(line, default=str)


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party chatter that would otherwise drown the platform's own lines.
    for noisy in ("nats", "httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel("WARNING")
