"""The human text of an event: what a person wrote, found in the payload."""

from __future__ import annotations

from typing import Any

__all__ = ["event_text"]

# Field names that hold what a person wrote, most telling first.
_TEXT_FIELDS = ("text", "body", "message", "content", "comment", "title", "subject", "description", "summary",
                "Body")
_MAX_CHARS = 4000


def event_text(payload: Any, limit: int = _MAX_CHARS) -> str:
    """Strings under the usual text fields, breadth first, joined; at most ``limit`` characters."""
    found: list[str] = []
    queue, seen = [payload], 0
    while queue and seen < 2000:  # bounded walk: payloads can be deep and wide
        node = queue.pop(0)
        seen += 1
        if isinstance(node, dict):
            for name in _TEXT_FIELDS:
                value = node.get(name)
                if isinstance(value, str) and value.strip() and value.strip() not in found:
                    found.append(value.strip())
            queue.extend(v for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            queue.extend(v for v in node[:50] if isinstance(v, (dict, list)))
    return " | ".join(found)[:limit]
