"""An event's one-line summary, part of what ``classify`` answers.

Stripe events name the object, customer and amount ("Stripe
invoice.payment_failed: customer cus_123, 49.00 USD"); GitHub events the
repository and the title, commit or run; other events their first sentence
of text, or a few of the payload's scalar fields. At most ``SUMMARY_CHARS``
characters, one line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from plugins.ai.local.reading import MAX_LEAF, OPAQUE_RE, SECRET_KEY_RE, SPACE_RE, Reading, clean, walk
from plugins.ai.spec import EventInput

SUMMARY_CHARS = 140
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")
_ZERO_DECIMAL = frozenset(("bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
                           "xaf", "xof", "xpf"))


def one_line(text: str, limit: int = SUMMARY_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    text = SPACE_RE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def first_sentence(text: str) -> str:
    """The first sentence of ``text`` (of its first part, when it is parts joined by " | ")."""
    first = text.split(" | ")[0]
    return _SENTENCE_RE.split(first, maxsplit=1)[0]


def _stripe_summary(event: EventInput) -> str:
    payload = event.payload if isinstance(event.payload, Mapping) else {}
    data = payload.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    obj = obj if isinstance(obj, Mapping) else {}
    parts = []
    customer = obj.get("customer_email") or obj.get("customer") or obj.get("email")
    if isinstance(customer, str) and customer:
        parts.append(f"customer {customer}")
    elif obj.get("object") in ("customer",) and isinstance(obj.get("id"), str):
        parts.append(f"customer {obj['id']}")
    for key in ("amount_due", "amount_total", "amount", "amount_paid"):
        amount = obj.get(key)
        if isinstance(amount, int) and not isinstance(amount, bool):
            currency = str(obj.get("currency") or "").lower()
            value = f"{amount}" if currency in _ZERO_DECIMAL else f"{amount / 100:.2f}"
            parts.append(f"{value} {currency.upper()}".strip())
            break
    failure = obj.get("failure_message")
    if isinstance(failure, str) and failure:
        parts.append(failure.rstrip("."))
    head = f"Stripe {event.event_type}"
    return f"{head}: {', '.join(parts)}" if parts else head


def _github_summary(event: EventInput) -> str:
    payload = event.payload if isinstance(event.payload, Mapping) else {}
    repo = payload.get("repository")
    name = repo.get("full_name") if isinstance(repo, Mapping) else None
    head = f"GitHub {event.event_type}" + (f" in {name}" if isinstance(name, str) else "")
    detail = None
    for key in ("issue", "pull_request", "release", "workflow_run", "check_run", "deployment_status", "alert"):
        obj = payload.get(key)
        if isinstance(obj, Mapping):
            title = obj.get("title") or obj.get("name") or obj.get("tag_name") or obj.get("description")
            if key == "alert" and isinstance(obj.get("security_advisory"), Mapping):
                title = obj["security_advisory"].get("summary")
            if isinstance(title, str) and title:
                detail = title
                conclusion = obj.get("conclusion") or obj.get("state")
                if key in ("workflow_run", "check_run", "deployment_status") and isinstance(conclusion, str):
                    detail = f"{title} {conclusion}"
                break
    if detail is None:
        commit = payload.get("head_commit")
        if isinstance(commit, Mapping) and isinstance(commit.get("message"), str):
            detail = commit["message"].splitlines()[0] if commit["message"] else None
    return f"{head}: {detail}" if detail else head


_SOURCE_NAMES = {"slack": "Slack", "intercom": "Intercom", "twilio": "Twilio", "api": "API", "github": "GitHub",
                 "stripe": "Stripe"}


def summary(event: EventInput, reading: Reading) -> str:
    """The summary of ``event``; see the module docstring."""
    source = reading.source
    if source == "stripe":
        return one_line(_stripe_summary(event))
    if source == "github":
        return one_line(_github_summary(event))
    head = f"{_SOURCE_NAMES.get(source, source or 'event')} {event.event_type}".strip()
    if reading.human_raw:
        return one_line(f"{head}: {first_sentence(reading.human_raw)}")
    fields: list[str] = []
    for path, value in walk(event.payload, 100):
        if not path or SECRET_KEY_RE.search(path[-1]):
            continue
        if isinstance(value, str) and value.count(" ") >= 2 and not OPAQUE_RE.match(value):
            return one_line(f"{head}: {first_sentence(clean(value[:MAX_LEAF]))}")
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip() \
                and len(fields) < 3 and not (isinstance(value, str) and OPAQUE_RE.match(value)):
            fields.append(f"{path[-1]} {value}")
    return one_line(f"{head}: {', '.join(fields)}" if fields else head)
