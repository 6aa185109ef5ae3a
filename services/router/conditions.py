"""Route conditions on payloads and AI labels, each checked at creation and explained when evaluated.

A payload filter is ``{"path": "$.data.object.amount_due", "op": "gte", "value": 1000}``.
Paths are ``$`` then ``.name``, ``[index]`` or ``["any name"]`` steps. Operators:
``eq``, ``ne``, ``gt``, ``gte``, ``lt``, ``lte``, ``in`` (the value is a list),
``contains`` (a substring of a string, or an element of a list), ``exists``
(the value is true or false) and ``regex`` (searched in a string). A field
that is missing, or of a type the operator cannot compare, makes the
condition false, never an error (``exists: false`` is the way to ask for a
missing field). Filters combine with ``all`` (every one) or ``any``.

AI conditions name the labels a classification must have: ``category``,
``priority``, ``sentiment`` (each a list of accepted values) and
``min_confidence``. Priorities are levels of the tenant's own scale (its AI
settings' ``priority_levels``; by default urgent, high, normal, low): a route
is checked against them when saved (:meth:`AIConditions.check_priorities`),
and a level the tenant no longer has simply never matches.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any
from collections.abc import Mapping

from plugins.ai.spec import SENTIMENTS
from switchboard.errors import InvalidRequest

__all__ = ["PayloadFilter", "Filters", "AIConditions", "parse_path", "MISSING"]

OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "contains", "exists", "regex")
MAX_FILTERS = 20
MAX_PRIORITY_LEVELS = 5
_REGEX_INPUT = 10_000  # a regex never scans more of a value than this
_STEP = re.compile(r'\.([A-Za-z_$][\w$-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


class _Missing:
    def __repr__(self) -> str:
        return "missing"


MISSING: Any = _Missing()


@lru_cache(maxsize=4096)
def parse_path(path: str) -> tuple[str | int, ...]:
    """``$.a[0]["b c"]`` as ``("a", 0, "b c")``; InvalidRequest when malformed."""
    if not isinstance(path, str) or not path.startswith("$") or len(path) > 500:
        raise InvalidRequest(f"path {path!r} must start with $ (like $.data.object.id) and be at most 500 characters")
    steps: list[str | int] = []
    position = 1
    while position < len(path):
        match = _STEP.match(path, position)
        if match is None:
            raise InvalidRequest(f"path {path!r} is malformed at character {position + 1}")
        name, index, quoted = match.groups()
        steps.append(name if name is not None else int(index) if index is not None else json.loads(quoted))
        position = match.end()
    return tuple(steps)


def _lookup(document: Any, steps: tuple[str | int, ...]) -> Any:
    # Payloads are parsed JSON: dicts and lists (exact type checks: this runs per route per event).
    value = document
    for step in steps:
        kind = type(value)
        if kind is dict and type(step) is str and step in value:
            value = value[step]
        elif kind is list and type(step) is int and step < len(value):
            value = value[step]
        else:
            return MISSING
    return value


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "eq":
        return actual == expected
    if op == "ne":
        return actual != expected
    if op in ("gt", "gte", "lt", "lte"):
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (actual, expected))
        strings = isinstance(actual, str) and isinstance(expected, str)
        if not (numbers or strings):
            return False
        return {"gt": actual > expected, "gte": actual >= expected, "lt": actual < expected,
                "lte": actual <= expected}[op]
    if op == "in":
        return actual in expected
    if op == "contains":
        if isinstance(actual, str):
            return isinstance(expected, str) and expected in actual
        return isinstance(actual, list) and expected in actual
    if op == "regex":
        return isinstance(actual, str) and _regex(expected).search(actual[:_REGEX_INPUT]) is not None
    raise AssertionError(op)


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@dataclass(frozen=True)
class PayloadFilter:
    path: str
    op: str
    value: Any = None

    @classmethod
    def parse(cls, raw: Any) -> PayloadFilter:
        if not isinstance(raw, Mapping) or set(raw) - {"path", "op", "value"} or "path" not in raw or "op" not in raw:
            raise InvalidRequest('a filter is {"path": "$...", "op": "...", "value": ...}')
        op, value = raw["op"], raw.get("value")
        if op not in OPERATORS:
            raise InvalidRequest(f"filter op {op!r} is not one of {', '.join(OPERATORS)}")
        parse_path(raw["path"])
        if op == "in" and not isinstance(value, list):
            raise InvalidRequest("an in filter needs a list value")
        if op == "exists" and not isinstance(value, bool):
            raise InvalidRequest("an exists filter needs true or false")
        if op == "regex":
            if not isinstance(value, str) or len(value) > 200:
                raise InvalidRequest("a regex filter needs a pattern of at most 200 characters")
            try:
                _regex(value)
            except re.error as exc:
                raise InvalidRequest(f"regex {value!r} is invalid: {exc}") from None
        if op in ("gt", "gte", "lt", "lte") and (isinstance(value, bool) or not isinstance(value, (int, float, str))):
            raise InvalidRequest(f"a {op} filter needs a number or a string")
        return cls(raw["path"], op, value)

    @cached_property
    def steps(self) -> tuple[str | int, ...]:
        return parse_path(self.path)

    def holds(self, payload: Any) -> bool:
        """Whether the condition holds (no explanation: the hot path)."""
        actual = _lookup(payload, self.steps)
        if self.op == "exists":
            return (actual is not MISSING) == self.value
        return actual is not MISSING and _compare(self.op, actual, self.value)

    def evaluate(self, payload: Any) -> tuple[bool, str]:
        actual = _lookup(payload, parse_path(self.path))
        if self.op == "exists":
            met = (actual is not MISSING) == self.value
            return met, f"{self.path} {'exists' if actual is not MISSING else 'is missing'}"
        if actual is MISSING:
            return False, f"{self.path} is missing"
        met = _compare(self.op, actual, self.value)
        shown = repr(actual) if len(repr(actual)) <= 60 else repr(actual)[:57] + "..."
        return met, f"{self.path} {shown} {self.op}{'' if met else ' (not)'} {self.value!r}"

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "op": self.op, "value": self.value}


@dataclass(frozen=True)
class Filters:
    match: str  # "all" | "any"
    conditions: tuple[PayloadFilter, ...]

    @classmethod
    def parse(cls, raw: Any) -> Filters | None:
        """``{"all": [...]}`` or ``{"any": [...]}``; None for no filters."""
        if raw is None or raw == {}:
            return None
        if not isinstance(raw, Mapping) or len(raw) != 1 or next(iter(raw)) not in ("all", "any"):
            raise InvalidRequest('filters is {"all": [...]} or {"any": [...]}')
        match, conditions = next(iter(raw.items()))
        if not isinstance(conditions, list) or not 1 <= len(conditions) <= MAX_FILTERS:
            raise InvalidRequest(f"filters has 1 to {MAX_FILTERS} conditions")
        return cls(match, tuple(PayloadFilter.parse(c) for c in conditions))

    def holds(self, payload: Any) -> bool:
        if self.match == "all":
            return all(c.holds(payload) for c in self.conditions)
        return any(c.holds(payload) for c in self.conditions)

    def evaluate(self, payload: Any) -> tuple[bool, list[str]]:
        """Whether the filters hold, with the reasons of the conditions that decided it."""
        reasons = []
        deciding = self.match == "any"  # the outcome that settles it: one true for any, one false for all
        for condition in self.conditions:
            met, reason = condition.evaluate(payload)
            reasons.append(reason)
            if met is deciding:
                return met, reasons
        return not deciding, reasons

    def to_json(self) -> dict[str, Any]:
        return {self.match: [c.to_json() for c in self.conditions]}


@dataclass(frozen=True)
class AIConditions:
    category: tuple[str, ...] = ()
    priority: tuple[str, ...] = ()
    sentiment: tuple[str, ...] = ()
    min_confidence: float = 0.0

    @classmethod
    def parse(cls, raw: Any) -> AIConditions | None:
        if raw is None or raw == {}:
            return None
        keys = {"category", "priority", "sentiment", "min_confidence"}
        if not isinstance(raw, Mapping) or set(raw) - keys:
            raise InvalidRequest(f"ai conditions take {', '.join(sorted(keys))}")
        lists = {}
        # Priorities are the tenant's level names: checked against its scale when the route is saved.
        for name, allowed in (("category", None), ("priority", None),
                              ("sentiment", SENTIMENTS)):
            value = raw.get(name, [])
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise InvalidRequest(f"ai {name} is a list of values")
            if allowed and set(value) - set(allowed):
                raise InvalidRequest(f"ai {name} values are {', '.join(allowed)}")
            lists[name] = tuple(value)
        if len(lists["priority"]) > MAX_PRIORITY_LEVELS or any(len(v) > 20 for v in lists["priority"]):
            raise InvalidRequest(f"ai priority values are at most {MAX_PRIORITY_LEVELS} level names of at most "
                                 "20 characters")
        confidence = raw.get("min_confidence", 0.0)
        if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 <= confidence <= 1:
            raise InvalidRequest("ai min_confidence is a number from 0 to 1")
        return cls(**lists, min_confidence=float(confidence))

    def check_priorities(self, levels: tuple[str, ...]) -> None:
        """InvalidRequest unless every priority named is one of ``levels``, the tenant's scale."""
        unknown = [p for p in self.priority if p not in levels]
        if unknown:
            raise InvalidRequest(f"ai priority values are the tenant's priority levels ({', '.join(levels)}), "
                                 f"not {', '.join(repr(p) for p in unknown)}", field="ai.priority")

    def evaluate(self, labels: Mapping[str, Any] | None) -> tuple[bool, list[str]]:
        if labels is None:
            return False, ["no AI classification available"]
        reasons, met = [], True
        for name in ("category", "priority", "sentiment"):
            accepted = getattr(self, name)
            if accepted:
                ok = labels.get(name) in accepted
                met &= ok
                reasons.append(f"ai {name} {labels.get(name)!r}{'' if ok else ' not'} in {list(accepted)}")
        if self.min_confidence:
            confidence = float(labels.get("confidence", 0))
            ok = confidence >= self.min_confidence
            met &= ok
            reasons.append(f"ai confidence {confidence:.2f} {'>=' if ok else '<'} {self.min_confidence:g}")
        return met, reasons

    def to_json(self) -> dict[str, Any]:
        return {"category": list(self.category), "priority": list(self.priority),
                "sentiment": list(self.sentiment), "min_confidence": self.min_confidence}
