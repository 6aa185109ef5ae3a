"""The sender's sentiment, read from the words of an event.

It is read from the human text (or, when the event has none, from payload
strings of three words or more): a lexicon of feeling words (±2:
"frustrating", "love"; ±1: "expensive", "nice") and of problem words (−1:
"broken", "fails", "again"; counted only for text a person wrote — a failed
CI run is not upset), with negation ("not", "no", "never", "n't", "without"
flip the next sentiment word within three words, so "not happy" is negative
and "not bad" or "no problem" positive; "no longer" counts −1), intensifiers
("very", "so", "really"… × 1.5), contrast (before "but" counts a quarter,
after it 1.5 times: "thanks, but it is still broken" is negative), wishes
("it would be nice to…" is not praise), greetings ("good morning" is not
praise) and "!!" (× 1.2). At −1 or below: negative; at +1 or above: positive.
"""

from __future__ import annotations

from dataclasses import dataclass

from plugins.ai.local.reading import MAX_HUMAN, WORD_RE

# Sentiment: word → weight. Problem words count only in what a person wrote.
_FEELING = {
    **dict.fromkeys(("angry", "terrible", "awful", "horrible", "worst", "frustrating", "frustrated",
                     "unacceptable", "ridiculous", "useless", "unusable", "disappointed", "disappointing", "hate",
                     "annoying", "annoyed", "furious", "upset", "unhappy", "scam", "clunky", "poor", "bad",
                     "threatens", "churn", "waste", "worse", "rude", "nobody", "sick"), -2.0),
    **dict.fromkeys(("expensive", "overpriced", "confusing", "disappointing", "sadly", "unfortunately"), -1.0),
    **dict.fromkeys(("love", "great", "awesome", "excellent", "fantastic", "amazing", "perfect", "perfectly",
                     "thanks", "thank", "appreciate", "appreciated", "wonderful", "helpful", "brilliant", "saved",
                     "smoother", "delighted", "thrilled", "impressed", "superb", "happy", "glad", "pleased"), 2.0),
    **dict.fromkeys(("good", "nice", "works", "working", "worked", "fixed", "smooth", "easy", "quick", "excited",
                     "interested", "enjoy", "enjoyed", "useful", "better", "well", "cool", "won"), 1.0),
}
_PROBLEM = dict.fromkeys((
    "broken", "bug", "crash", "crashes", "crashing", "error", "errors", "fail", "fails", "failed", "failing",
    "failure", "wrong", "problem", "problems", "slow", "stuck", "down", "outage", "lost", "missing", "cannot",
    "can't", "couldn't", "declined", "damaged", "complaint", "twice", "locked", "spinner", "empty", "never",
    "cancel", "breaks", "breaking", "unable", "glitch", "misaligned", "issue", "issues", "keeps", "again",
    "nothing", "leak", "critical", "urgent", "asap", "anymore", "please fix", "without permission"), -1.0)
_PROBLEM["not working"] = -2.0
# Words that only occur under a negation ("doesn't trigger anymore"): the negation must not flip them.
_NEGATIVE_POLARITY = frozenset(("anymore",))
# Greetings are not praise.
_NEUTRAL_PAIRS = frozenset(("good morning", "good afternoon", "good evening", "good night", "good day"))
_NEGATORS = frozenset(("not", "no", "never", "without", "hardly", "barely", "nor", "cannot"))
_INTENSIFIERS = frozenset(("very", "really", "so", "extremely", "super", "totally", "absolutely", "completely",
                           "incredibly", "too", "highly", "truly", "way"))
_CONTRAST = frozenset(("but", "however", "although", "though", "yet"))
_CONTRACTION = {"can't": ("can", "not"), "won't": ("will", "not"), "n't": ("not",)}


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    for word in WORD_RE.findall(text):
        if word.endswith("n't"):
            out.extend(_CONTRACTION.get(word, (word[:-3], "not")))
        else:
            out.append(word)
    return out


@dataclass(frozen=True)
class Sentiment:
    """A sentiment score, and the part of it that is feeling words."""

    score: float  # everything: feeling and problem words
    feeling: float  # feeling words only: how upset (or pleased) the sender is


def sentiment_score(text: str, is_person: bool) -> Sentiment:
    """The sender's sentiment in ``text``; see the module docstring for the rules."""
    if not text:
        return Sentiment(0.0, 0.0)
    words = _tokens(text[:MAX_HUMAN])
    parts: list[tuple[float, float]] = []  # (score, feeling) of each clause before a contrast word
    score = feeling = 0.0
    negate_left = 0
    boost = 1.0
    i = 0
    while i < len(words):
        word = words[i]
        pair = f"{word} {words[i + 1]}" if i + 1 < len(words) else ""
        if word in _CONTRAST:
            parts.append((score, feeling))
            score = feeling = 0.0
            negate_left, boost = 0, 1.0
        elif word in (".", "!", "?", ";"):
            negate_left, boost = 0, 1.0
        elif pair == "no longer":
            score -= 1.0
            negate_left = 3
            i += 1
        elif pair in ("no problem", "no problems", "no worries", "not bad"):
            score += 1.0
            i += 1
        elif pair in _NEUTRAL_PAIRS:
            i += 1
        elif word in _INTENSIFIERS:
            boost = 1.5
        elif word in _FEELING or (is_person and (word in _PROBLEM or pair in _PROBLEM)):
            if pair in _PROBLEM:
                weight = _PROBLEM[pair]
                i += 1
            else:
                weight = _FEELING.get(word, _PROBLEM.get(word, 0.0))
            if negate_left and word not in _NEGATIVE_POLARITY:
                # "not happy" is negative; "not broken" only mildly positive.
                weight = -weight if weight > 0 else -weight * 0.5
                negate_left = 0
            if weight > 0 and "would" in words[max(0, i - 3):i]:
                weight = 0.0  # "it would be nice to have": a wish, not praise
            score += weight * boost
            if word in _FEELING:
                feeling += weight * boost
            boost = 1.0
        elif word in _NEGATORS:
            negate_left = 3
        elif negate_left:
            negate_left -= 1
        i += 1
    if parts:
        # What comes after "but" is what the sender means.
        score = sum(p[0] for p in parts) * 0.25 + score * 1.5
        feeling = sum(p[1] for p in parts) * 0.25 + feeling * 1.5
    if "!!" in text:
        score, feeling = score * 1.2, feeling * 1.2
    return Sentiment(score, feeling)


def sentiment_label(score: float) -> str:
    """``negative``, ``neutral`` or ``positive`` for a score."""
    return "negative" if score <= -1.0 else "positive" if score >= 1.0 else "neutral"
