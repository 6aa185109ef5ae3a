"""Prompt templates: versioned, one per task, overridable per tenant.

Templates use ``string.Template`` placeholders (``$event_type``), so a
tenant's template can only insert the values below, never run code:

- ``$source_type``, ``$event_type``, ``$text``, ``$payload`` (compact JSON,
  cut at 6,000 characters), ``$categories`` (comma-separated, in the
  tenant's order), ``$category_guide`` (one ``- name: what it is for`` line
  per category, alphabetical), ``$schema`` (the extraction schema as JSON),
  ``$conversation`` (one ``role: text`` line per turn).

The built-in templates are version 0; a tenant's overrides count up from 1.
A built-in template whose text changes gets a new ``builtin_revision``;
tenants' saved versions are theirs and never change.

The built-in classify prompt shows the event first and the categories after
it, described, alphabetically, saying their order means nothing: a weak model
latches onto the first category name it reads, and with the list first
(revision 1: ``Categories: $categories`` opened the message) that was the
list's first category whatever the event said.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from string import Template
from typing import Any
from collections.abc import Mapping

from plugins.ai.spec import PRIORITIES, EventInput, Turn
from switchboard.errors import InvalidRequest

__all__ = ["PromptTemplate", "BUILTIN", "CATEGORY_DESCRIPTIONS", "LabelledExample", "render", "category_guide",
           "with_examples", "check_template", "PLACEHOLDERS"]

PLACEHOLDERS = frozenset({"source_type", "event_type", "text", "payload", "categories", "category_guide", "schema",
                          "conversation"})
_PAYLOAD_CHARS = 6000


@dataclass(frozen=True)
class PromptTemplate:
    task: str
    version: int
    system: str
    template: str
    # The built-in's revision (version 0): it counts up when the built-in text changes; 0 for a tenant's own.
    builtin_revision: int = 0


# What each default category is for, in the prompt's category guide (the labelling guide of docs/ai.md, cut short).
CATEGORY_DESCRIPTIONS: Mapping[str, str] = {
    "alert": "something failing or down now: monitors, incidents, outages, failed CI runs or deployments, "
             "security alerts",
    "billing": "money owed, paid or disputed: invoices, charges, refunds, cards, subscription payments",
    "code": "work on the code: pushes, pull requests, reviews, releases, successful builds and deployments",
    "other": "nothing to act on: small talk, thanks, acknowledgements, bot chatter, announcements",
    "sales": "buying intent: pricing, quotes, demos, trials, upgrades, leads",
    "support": "a customer or user who cannot do something or hit a bug; how-to questions",
}


BUILTIN: Mapping[str, PromptTemplate] = {
    "classify": PromptTemplate(
        "classify", 0,
        "You triage webhook events for an operations team. Read the event, then answer only through the JSON "
        "schema given: the category that fits best, the priority, the sender's sentiment, your confidence from "
        "0 to 1, and a one-line summary a person can act on. Choose the category from what the event itself "
        "says, never from where a category sits in the list: the list is alphabetical and its order means "
        "nothing. Priority: urgent only for outages, security incidents or blocked customers; high for failed "
        "runs, jobs or payments and upset customers; normal for the rest that needs a person; low for "
        "recoveries, informational events and small talk. Do not invent facts that are not in the event.",
        "Event type: $event_type\nSource: $source_type\nText: $text\nPayload (JSON): $payload\n\n"
        "The categories, in alphabetical order (the order means nothing):\n$category_guide\n\n"
        "Answer with the category the event's own words support best.",
        builtin_revision=2,
    ),
    "extract": PromptTemplate(
        "extract", 0,
        "You extract structured data from webhook events. Answer with one JSON object valid against the "
        "schema given. Use only values present in the event; use null where the schema allows it and the "
        "event has no value.",
        "Schema: $schema\n\nSource: $source_type\nEvent type: $event_type\nText: $text\nPayload (JSON): $payload",
        builtin_revision=1,
    ),
    "reply": PromptTemplate(
        "reply", 0,
        "You draft replies for a support team to send to a customer. Be brief, friendly and specific; "
        "answer in the customer's language; never promise refunds, dates or features; if you do not know, "
        "say a teammate will follow up. Write only the reply text.",
        "Conversation so far (oldest first):\n$conversation\n\nSource: $source_type\n"
        "Draft the next reply to the customer.",
        builtin_revision=1,
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


def category_guide(categories: tuple[str, ...], fallback: str = "") -> str:
    """One ``- name: what it is for`` line per category, alphabetical: no category gets the first place for
    being the tenant's first. A category of the tenant's own is described by its name alone."""
    lines = []
    for name in sorted(categories, key=str.casefold):
        described = CATEGORY_DESCRIPTIONS.get(name, "")
        if name == fallback:
            described = f"{described}; also any event that fits no other category" if described \
                else "any event that fits no other category"
        lines.append(f"- {name}: {described}" if described else f"- {name}")
    return "\n".join(lines)


def render(prompt: PromptTemplate, event: EventInput | None, categories: tuple[str, ...] = (),
           schema: Mapping[str, Any] | None = None, turns: tuple[Turn, ...] = (),
           fallback: str = "") -> tuple[str, str]:
    """``(system, user prompt)`` with the placeholders filled in; ``fallback``: the tenant's category for
    events that fit none, said so in the category guide."""
    values = {
        "source_type": event.source_type if event else "",
        "event_type": event.event_type if event else "",
        "text": event.text if event else "",
        "payload": _payload(event.payload) if event else "null",
        "categories": ", ".join(categories),
        "category_guide": category_guide(categories, fallback),
        "schema": json.dumps(schema, separators=(",", ":")) if schema is not None else "",
        "conversation": "\n".join(f"{t.role}: {t.text}" for t in turns),
    }
    return Template(prompt.system).safe_substitute(values), Template(prompt.template).safe_substitute(values)


@dataclass(frozen=True)
class LabelledExample:
    """An event of the tenant's that a person labelled: shown to a model as an example to follow."""

    source_type: str
    event_type: str
    text: str
    category: str
    priority: str = ""
    sentiment: str = ""


# Priorities an example may show: the scale every provider answers on (a tenant's own levels would mislead it).
_EXAMPLE_PRIORITIES = frozenset(PRIORITIES)


def with_examples(system: str, examples: tuple[LabelledExample, ...]) -> str:
    """The system prompt followed by the tenant's labelled examples, if any (in the system prompt: the user
    message stays the event alone, whatever the tenant's template)."""
    if not examples:
        return system
    lines = []
    for n, example in enumerate(examples, 1):
        labels = [f"category: {example.category}"]
        if example.priority in _EXAMPLE_PRIORITIES:
            labels.append(f"priority: {example.priority}")
        if example.sentiment:
            labels.append(f"sentiment: {example.sentiment}")
        text = json.dumps(example.text, ensure_ascii=False)
        lines.append(f"{n}. Event type: {example.event_type}; source: {example.source_type}; text: {text}\n"
                     f"   → {', '.join(labels)}")
    return (f"{system}\n\nEvents of this tenant that a person labelled; label events like them the same way:\n"
            + "\n".join(lines))
