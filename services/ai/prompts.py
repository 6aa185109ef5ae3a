"""Prompt templates: versioned, one per task, overridable per tenant.

Templates use ``string.Template`` placeholders (``$event_type``), so a
tenant's template can only insert the values below, never run code:

- ``$source_type``, ``$event_type``, ``$text``, ``$payload`` (compact JSON,
  cut at 6,000 characters), ``$categories`` (comma-separated),
  ``$schema`` (the extraction schema as JSON), ``$conversation`` (one
  ``role: text`` line per turn).

The built-in templates are version 0; a tenant's overrides count up from 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from string import Template
from typing import Any
from collections.abc import Mapping

from plugins.ai.spec import EventInput, Turn
from switchboard.errors import InvalidRequest

__all__ = ["PromptTemplate", "BUILTIN", "render", "check_template", "PLACEHOLDERS"]

PLACEHOLDERS = frozenset({"source_type", "event_type", "text", "payload", "categories", "schema", "conversation"})
_PAYLOAD_CHARS = 6000


@dataclass(frozen=True)
class PromptTemplate:
    task: str
    version: int
    system: str
    template: str


BUILTIN: Mapping[str, PromptTemplate] = {
    "classify": PromptTemplate(
        "classify", 0,
        "You triage webhook events for an operations team. Answer only through the JSON schema given: "
        "the category that fits best, the priority (urgent only for outages, security incidents or "
        "blocked customers), the sender's sentiment, your confidence from 0 to 1, and a one-line summary "
        "a person can act on. Do not invent facts that are not in the event.",
        "Categories: $categories\n\nSource: $source_type\nEvent type: $event_type\n"
        "Text: $text\nPayload (JSON): $payload",
    ),
    "extract": PromptTemplate(
        "extract", 0,
        "You extract structured data from webhook events. Answer with one JSON object valid against the "
        "schema given. Use only values present in the event; use null where the schema allows it and the "
        "event has no value.",
        "Schema: $schema\n\nSource: $source_type\nEvent type: $event_type\nText: $text\nPayload (JSON): $payload",
    ),
    "reply": PromptTemplate(
        "reply", 0,
        "You draft replies for a support team to send to a customer. Be brief, friendly and specific; "
        "answer in the customer's language; never promise refunds, dates or features; if you do not know, "
        "say a teammate will follow up. Write only the reply text.",
        "Conversation so far (oldest first):\n$conversation\n\nSource: $source_type\n"
        "Draft the next reply to the customer.",
    ),
}


def check_template(system: str, template: str) -> None:
    """InvalidRequest unless both parts are valid templates using only known placeholders."""
    for part, text in (("system", system), ("template", template)):
        if not isinstance(text, str) or not text.strip() or len(text) > 20_000:
            raise InvalidRequest(f"{part} is 1 to 20,000 characters")
        parsed = Template(text)
        if not parsed.is_valid():
            raise InvalidRequest(f"{part} has a malformed placeholder (use $name or ${{name}}; $$ for a dollar)")
        unknown = set(parsed.get_identifiers()) - PLACEHOLDERS
        if unknown:
            raise InvalidRequest(f"{part} uses unknown placeholders {', '.join(sorted(unknown))}; "
                                 f"known: {', '.join(sorted(PLACEHOLDERS))}")


def _payload(payload: Any) -> str:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)
    return text if len(text) <= _PAYLOAD_CHARS else text[:_PAYLOAD_CHARS] + "…"


def render(prompt: PromptTemplate, event: EventInput | None, categories: tuple[str, ...] = (),
           schema: Mapping[str, Any] | None = None, turns: tuple[Turn, ...] = ()) -> tuple[str, str]:
    """``(system, user prompt)`` with the placeholders filled in."""
    values = {
        "source_type": event.source_type if event else "",
        "event_type": event.event_type if event else "",
        "text": event.text if event else "",
        "payload": _payload(event.payload) if event else "null",
        "categories": ", ".join(categories),
        "schema": json.dumps(schema, separators=(",", ":")) if schema is not None else "",
        "conversation": "\n".join(f"{t.role}: {t.text}" for t in turns),
    }
    return Template(prompt.system).safe_substitute(values), Template(prompt.template).safe_substitute(values)
