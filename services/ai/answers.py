"""What a valid answer is, per task: the output schemas and their checks.

A model's answer is never trusted as it comes: a classification must name one
of the tenant's categories and the known priorities and sentiments, an
extraction must be valid against the tenant's schema, a reply must be
non-empty text of a sane length.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from collections.abc import Mapping

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from plugins.ai.spec import PRIORITIES, SENTIMENTS
from switchboard.errors import InvalidRequest

__all__ = [
    "DEFAULT_CATEGORIES", "PRIORITIES", "SENTIMENTS", "Classification", "InvalidAnswer",
    "classification_schema", "parse_classification", "check_extraction_schema", "parse_extraction",
    "parse_reply", "check_categories",
]

DEFAULT_CATEGORIES = ("billing", "code", "support", "sales", "alert", "other")
MAX_REPLY_CHARS = 2000


class InvalidAnswer(ValueError):
    """The model's answer is not what the task asks for."""


@dataclass(frozen=True)
class Classification:
    category: str
    priority: str
    sentiment: str
    confidence: float
    summary: str
    # Why, when the provider says (the local provider names the features that decided).
    reasons: tuple[str, ...] = ()
    # The priority on the built-in scale (PRIORITIES), which every provider answers on; ``priority`` is on the
    # tenant's scale (services/ai/priority_scale.py).
    priority_builtin: str = ""


def classification_schema(categories: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "category": {"type": "string", "enum": list(categories)},
            # Least urgent first, as models have always been shown it.
            "priority": {"type": "string", "enum": list(reversed(PRIORITIES))},
            "sentiment": {"type": "string", "enum": list(SENTIMENTS)},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "summary": {"type": "string", "maxLength": 300},
            "reasons": {"type": "array", "maxItems": 5, "items": {"type": "string", "maxLength": 200}},
        },
        "required": ["category", "priority", "sentiment", "confidence", "summary"],
        "additionalProperties": False,
    }


def _json_object(text: str) -> Any:
    text = text.strip()
    if text.startswith("```"):  # a fenced answer: the JSON inside
        text = text.strip("`").removeprefix("json").strip()
    try:
        return json.loads(text)
    except ValueError:
        raise InvalidAnswer("the answer is not JSON") from None


def _validate(value: Any, schema: Mapping[str, Any]) -> None:
    error = next(iter(Draft202012Validator(schema).iter_errors(value)), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the answer"
        raise InvalidAnswer(f"{where}: {error.message}"[:300])


def parse_classification(text: str, categories: tuple[str, ...]) -> Classification:
    value = _json_object(text)
    _validate(value, classification_schema(categories))
    return Classification(value["category"], value["priority"], value["sentiment"], float(value["confidence"]),
                          " ".join(value["summary"].split())[:300], tuple(value.get("reasons", ())),
                          priority_builtin=value["priority"])


def check_categories(categories: list[str]) -> tuple[str, ...]:
    if not 1 <= len(categories) <= 50:
        raise InvalidRequest("a tenant has 1 to 50 categories")
    if any(not isinstance(c, str) or not c.strip() or len(c) > 50 for c in categories):
        raise InvalidRequest("categories are 1 to 50 characters")
    return tuple(dict.fromkeys(c.strip() for c in categories))


def check_extraction_schema(schema: Any) -> Mapping[str, Any]:
    """The tenant's schema, if it is a JSON schema of an object; InvalidRequest otherwise."""
    if not isinstance(schema, Mapping) or schema.get("type") != "object" or not schema.get("properties"):
        raise InvalidRequest('schema must be a JSON schema of an object with "properties"')
    if len(json.dumps(schema)) > 20_000:
        raise InvalidRequest("schema is at most 20,000 characters of JSON")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidRequest(f"schema is not a valid JSON schema: {exc.message}"[:300]) from None
    return schema


def parse_extraction(text: str, schema: Mapping[str, Any]) -> Any:
    value = _json_object(text)
    _validate(value, schema)
    return value


def parse_reply(text: str) -> str:
    reply = text.strip()
    if not reply:
        raise InvalidAnswer("the reply is empty")
    if len(reply) > MAX_REPLY_CHARS:
        raise InvalidAnswer(f"the reply is over {MAX_REPLY_CHARS} characters")
    return reply
