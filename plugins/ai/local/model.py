"""The local provider's category model: a linear model over an event's words, read in pure Python.

*Features* (``features``), all 0/1 except the rules': the source
(``src:slack``); each event-type token (``et:payment_failed``); the human
text's words (``w:invoice``, common words left out) and word pairs
(``b:review my``), and the shape of numbers that name a kind of trouble
(``num:http_5xx`` for "503s", ``num:percentile`` for "p95"); the words of
other payload strings (``l:failure``), one-word status values
(``st:failure``) and key names (``k:bot_id``); the text's shape (``shape:``
no text, 1-3 words, a question, emoji only...); and the rules' own score
for each of the six categories (``rule:billing``, see ``classification.py``),
so the model learns how far to trust them.

*Model*: multinomial logistic regression, one weight per feature and
category plus a bias, trained by ``training.py`` on
tests/fixtures/ai/corpus_train.jsonl and shipped as ``model.json`` (weights
rounded to three decimals, features whose weights are all small dropped).
A prediction is a sum of weights and a softmax: a few hundred dictionary
look-ups, no dependency. *Explanation*: the features that pushed the chosen
category most above the others (``explain``).

*Priority* is a second model of the same kind (``priority.json``), over the
same features and three more: the level the priority rules give
(``prule:high``, see ``priority.py``), the category answered
(``pcat:alert``) and the sentiment (``psent:negative``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

from plugins.ai.local.reading import Reading
from plugins.ai.spec import PRIORITIES

LABELS = ("billing", "code", "support", "sales", "alert", "other")
WEIGHTS_PATH = Path(__file__).with_name("model.json")
# The priority model: the built-in levels, most urgent first, and its weights.
PRIORITY_LABELS = PRIORITIES
PRIORITY_WEIGHTS_PATH = Path(__file__).with_name("priority.json")

_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_LEAF_WORD_RE = re.compile(r"[a-z]{3,}")
_EMOJI_RE = re.compile(r"[\u2600-\u27bf\U0001f000-\U0001faff]|:[a-z0-9_+\-]+:")
_MAX_WORDS = 200  # of the human text: the start of a message says what it is about
_MAX_LEAF_CHARS = 1500
_MAX_KEYS = 80
_RULE_CAP = 9.0
# Words that say nothing of a topic: left out alone (they stay in word pairs: "is down", "my pr").
_STOPWORDS = frozenset((
    "a", "an", "the", "and", "or", "but", "if", "of", "to", "in", "on", "at", "by", "for", "with", "from", "as",
    "is", "are", "was", "were", "be", "been", "it", "its", "it's", "this", "that", "these", "those", "i", "i'm",
    "me", "my", "we", "our", "us", "you", "your", "he", "she", "they", "them", "their", "his", "her", "so", "just",
    "do", "does", "did", "have", "has", "had", "can", "could", "would", "will", "should", "there", "here", "what",
    "when", "where", "who", "how", "why", "which", "all", "any", "some", "about", "into", "than", "then", "also",
    "very", "really", "up", "out", "now", "get", "got", "one", "am"))


# Numbers that say what kind of trouble it is, whatever the digits: "503s", "4xx", "p95".
_NUMBER_SHAPES = ((re.compile(r"5\d\d(?:s)?|5xx"), "num:http_5xx"), (re.compile(r"4\d\d(?:s)?|4xx"), "num:http_4xx"),
                  (re.compile(r"p(?:50|90|95|99)"), "num:percentile"))


def _shape(reading: Reading, words: list[str]) -> str:
    if not reading.human:
        return "shape:no_text"
    if not words or not _EMOJI_RE.sub("", reading.human).strip(" .!?,:;()-"):
        return "shape:emoji_only"
    if len(words) <= 3:
        return "shape:1-3_words"
    if len(words) <= 10:
        return "shape:4-10_words"
    return "shape:long"


def features(reading: Reading, rule_scores: dict[str, float]) -> dict[str, float]:
    """The features of one event: name → value; see the module docstring."""
    found: dict[str, float] = {f"src:{reading.source or 'api'}": 1.0}
    for token in reading.et_tokens:
        found[f"et:{token}"] = 1.0
    words = _WORD_RE.findall(reading.human)[:_MAX_WORDS]
    found[_shape(reading, words)] = 1.0
    if "?" in reading.human:
        found["shape:question"] = 1.0
    if _EMOJI_RE.search(reading.human):
        found["shape:emoji"] = 1.0
    previous = ""
    for word in words:
        if previous:
            found[f"b:{previous} {word}"] = 1.0
        previous = word
        if word in _STOPWORDS:
            continue
        found[f"w:{word}"] = 1.0
        for pattern, name in _NUMBER_SHAPES if word[0] in "45p" else ():
            if pattern.fullmatch(word):
                found[name] = 1.0
    for word in _LEAF_WORD_RE.findall(reading.leaves[:_MAX_LEAF_CHARS]):
        found[f"l:{word}"] = 1.0
    for status in reading.statuses:
        found[f"st:{status}"] = 1.0
    for key in reading.keys.split(" ")[:_MAX_KEYS]:
        if key:
            found[f"k:{key}"] = 1.0
    for category, score in rule_scores.items():
        if score > 0:
            found[f"rule:{category}"] = min(score, _RULE_CAP) / 3.0
    return found


@dataclass(frozen=True)
class Weights:
    """A trained model: labels, biases and each feature's weight per label."""

    labels: tuple[str, ...]
    bias: tuple[float, ...]
    weights: dict[str, tuple[float, ...]]
    # What answers say the model is ("": the shipped model's name); not part of the file.
    name: str = ""

    @classmethod
    def from_json(cls, text: str) -> Weights:
        data = json.loads(text)
        return cls(tuple(data["labels"]), tuple(data["bias"]),
                   {name: tuple(values) for name, values in data["weights"].items()})

    def to_json(self) -> str:
        """Compact and stable: sorted features, one per line, so that a retrained model diffs readably."""
        lines = [f"{json.dumps(name, ensure_ascii=False)}: {json.dumps(list(values))}"
                 for name, values in sorted(self.weights.items())]
        return (f'{{"labels": {json.dumps(list(self.labels))}, "bias": {json.dumps(list(self.bias))},\n'
                f'"weights": {{\n' + ",\n".join(lines) + "\n}}\n")

    def scores(self, found: dict[str, float]) -> list[float]:
        # The rows of the features found, summed column by column by zip and sum (C loops: most features are 0/1,
        # and a per-weight Python loop was most of a classification's time).
        weights = self.weights
        rows = []
        for name, value in found.items():
            row = weights.get(name)
            if row is not None:
                rows.append(row if value == 1.0 else tuple(w * value for w in row))
        if not rows:
            return list(self.bias)
        return [b + sum(column) for b, column in zip(self.bias, zip(*rows, strict=True), strict=True)]

    def best(self, found: dict[str, float]) -> str:
        """The most likely label for these features (ties: the first in ``labels``)."""
        scores = self.scores(found)
        return self.labels[scores.index(max(scores))]

    def probabilities(self, found: dict[str, float]) -> dict[str, float]:
        """Each label's probability for these features (a softmax of the scores)."""
        scores = self.scores(found)
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        total = sum(exps)
        return {label: e / total for label, e in zip(self.labels, exps, strict=True)}

    @cached_property
    def _pushes(self) -> dict[str, tuple[float, ...]]:
        """Per feature, how far it pushes each label above the mean of the others (``explain``'s measure)."""
        others = len(self.labels) - 1
        return {name: tuple(w - (sum(row) - w) / others for w in row) for name, row in self.weights.items()}

    def explain(self, found: dict[str, float], label: str, count: int = 3) -> list[tuple[str, float]]:
        """The features that pushed ``label`` most above the mean of the other labels, strongest first."""
        index = self.labels.index(label)
        table = self._pushes
        pushes: list[tuple[float, str]] = []
        for name, value in found.items():
            row = table.get(name)
            if row is not None:
                push = value * row[index]
                if push > 0.05:
                    pushes.append((push, name))
        pushes.sort(key=lambda p: (-p[0], p[1]))
        return [(name, round(push, 2)) for push, name in pushes[:count]]


@cache
def shipped() -> Weights:
    """The weights shipped with the package (model.json), read once."""
    return Weights.from_json(WEIGHTS_PATH.read_text(encoding="utf-8"))


@cache
def shipped_priority() -> Weights:
    """The priority model shipped with the package (priority.json), read once."""
    return Weights.from_json(PRIORITY_WEIGHTS_PATH.read_text(encoding="utf-8"))


def priority_features(found: dict[str, float], category: str, by_rules: str, sentiment: str) -> dict[str, float]:
    """The priority model's features: the category model's, and what the other parts answered (the priority
    rules' level, the category, the sentiment), so that it learns where to trust the rules."""
    return {**found, f"prule:{by_rules}": 1.0, f"pcat:{category}": 1.0, f"psent:{sentiment}": 1.0}


_KINDS = {"src": "source", "et": "event type", "w": "word", "b": "words", "l": "payload word",
          "st": "status", "k": "payload key", "shape": "text shape", "num": "number",
          "rule": "the rules' score for"}


def describe(feature: str) -> str:
    """A feature's name for a person: ``w:invoice`` → ``word "invoice"``."""
    kind, _, value = feature.partition(":")
    name = _KINDS.get(kind, kind)
    if kind == "rule":
        return f"{name} {value}"
    if kind in ("shape", "num"):
        return f"{name}: {value.replace('_', ' ')}"
    return f'{name} "{value.strip("<>")}"'
