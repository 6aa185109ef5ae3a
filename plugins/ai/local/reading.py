"""What the local provider reads of an event: a capped, cleaned view every rule works from.

It looks at the event's source type and event type; its human text
(``EventInput.text``, HTML tags removed); and, capped, the payload: at most
``MAX_NODES`` nodes walked breadth first, string leaves of at most
``MAX_LEAF`` characters and ``MAX_TEXT`` characters in all, and the key
names. Opaque strings (ids, URLs, tokens) and credential-like keys
(``token``, ``secret``, ``signature``…) are skipped. The work is bounded by
these caps — a few milliseconds at most, whatever the payload's size.
"""

from __future__ import annotations

import html
import re
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from collections.abc import Iterator

from plugins.ai.local.lexicon import Term, hits
from plugins.ai.spec import EventInput

# Caps on what is looked at: the answer must not cost more for a bigger payload.
MAX_NODES = 400
MAX_LEAF = 600
MAX_TEXT = 4000
MAX_HUMAN = 2000

# Event types whose text is a person's words, not a machine's.
_HUMAN_EVENT_WORDS = frozenset(("issues", "issue_comment", "pull_request", "pull_request_review", "discussion",
                                "commit_comment", "ticket", "feedback", "nps", "form", "comment", "review", "survey",
                                "chat", "conversation", "reply", "message", "posted", "escalated", "requested"))

# Never shown in a summary nor read: what looks like a credential.
SECRET_KEY_RE = re.compile(r"token|secret|passw|signature|api_?key|authorization|credential|cookie", re.IGNORECASE)
_TAG_RE = re.compile(r"<[^>]{0,200}>")
SPACE_RE = re.compile(r"\s+")
OPAQUE_RE = re.compile(r"^(?:[a-z]{1,6}_[A-Za-z0-9_]{6,}|[A-Za-z0-9+/=_\-]{20,}|https?://\S+|\+?\d[\d\s\-.]{6,}"
                       r"|\d{4}-\d\d-\d\d[T ][\d:.]+Z?)$")
_SPLIT_EVENT_RE = re.compile(r"[.:/\s]+")
SPLIT_WORD_RE = re.compile(r"[._:/\-\s]+")
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[.!?;,:]")


@dataclass
class Reading:
    """The capped view of one event that every rule works from."""

    source: str
    event_type: str
    et_tokens: tuple[str, ...]
    human: str  # the person's text, tags removed, lower case
    human_raw: str  # the same, original case (for summaries)
    leaves: str  # other payload strings, lower case
    keys: str  # payload key names, as words
    statuses: frozenset[str]  # one-word string values ("failed", "past_due"), lower case
    prose: str  # payload strings of three words or more: a person's words under an unusual key
    is_person: bool
    hits_human: dict[str, Term] = field(default_factory=dict)
    hits_leaves: dict[str, Term] = field(default_factory=dict)
    hits_keys: dict[str, Term] = field(default_factory=dict)


# Payload keys repeat from event to event (each provider has its own few hundred): what is read of one is kept.
@lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    return SECRET_KEY_RE.search(key) is not None


@lru_cache(maxsize=4096)
def _key_words(key: str) -> str:
    return SPLIT_WORD_RE.sub(" ", _CAMEL_RE.sub(" ", key)).lower()


def clean(text: str) -> str:
    """``text`` without HTML tags and entities, on one line."""
    if "<" in text:
        text = _TAG_RE.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    return SPACE_RE.sub(" ", text.replace("\u2019", "'")).strip()


def walk(payload: Any, max_nodes: int = MAX_NODES) -> Iterator[tuple[tuple[str, ...], Any]]:
    """``(path, value)`` for the payload's nodes, breadth first, at most ``max_nodes``."""
    queue: deque[tuple[tuple[str, ...], Any]] = deque([((), payload)])
    seen = 0
    while queue and seen < max_nodes:
        path, node = queue.popleft()
        seen += 1
        yield path, node
        if isinstance(node, dict):
            for key, value in node.items():
                queue.append(((*path[-2:], str(key)), value))
        elif isinstance(node, list):
            for value in node[:50]:
                queue.append((path, value))


def read(event: EventInput) -> Reading:
    """The capped view of ``event``, with the lexicon's terms found in each part of it."""
    source = (event.source_type or "").lower()
    event_type = (event.event_type or "").lower()[:200]
    segments = [s for s in _SPLIT_EVENT_RE.split(event_type) if s]
    tokens = dict.fromkeys(segments)
    for segment in segments:
        tokens.update(dict.fromkeys(w for w in SPLIT_WORD_RE.split(segment) if w))
    human_raw = clean(event.text[:MAX_HUMAN * 2])[:MAX_HUMAN] if event.text else ""
    human = human_raw.lower()
    leaves: list[str] = []
    prose: list[str] = []
    statuses: set[str] = set()
    keys: dict[str, None] = {}
    size = 0
    for path, value in walk(event.payload):
        if path:
            keys[path[-1]] = None
            if _secret_key(path[-1]):
                continue
        if isinstance(value, str) and size < MAX_TEXT:
            value = value[:MAX_LEAF].strip()
            if not value or OPAQUE_RE.match(value) or (human and value.lower() in human):
                continue
            value = clean(value).lower()
            leaves.append(value)
            size += len(value) + 3
            if " " not in value:
                if len(value) <= 30:
                    statuses.add(value)
            elif value.count(" ") >= 2:
                prose.append(value)
    is_person = (source in ("slack", "intercom") or (source == "twilio" and event_type.startswith("message.received"))
                 or any(t in _HUMAN_EVENT_WORDS for t in tokens))
    key_words = " ".join(_key_words(k) for k in list(keys)[:200])
    reading = Reading(source, event_type, tuple(tokens), human, human_raw, " | ".join(leaves)[:MAX_TEXT],
                      key_words, frozenset(statuses), " . ".join(prose)[:MAX_HUMAN], is_person)
    reading.hits_human = hits(reading.human)
    reading.hits_leaves = {t: v for t, v in hits(reading.leaves).items() if t not in reading.hits_human}
    # Key names count only for an event without human text (classification's key factor): not looked up otherwise.
    reading.hits_keys = hits(reading.keys) if not reading.human else {}
    return reading
