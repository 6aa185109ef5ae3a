"""``classify``: an event's category, confidence and reasons, with its priority, sentiment and summary.

*Category.* The model (``model.py``, trained by ``training.py``) gives each
of the six categories it knows (billing, code, support, sales, alert,
other) a probability. Among its inputs are the rules' scores, the sum of

- a source prior: ``stripe`` → billing (+3), ``github`` → code (+3);
  ``intercom``, ``slack`` and ``twilio`` messages → support (+1; Twilio
  status callbacks get none);
- event-type tokens (+3 each, e.g. ``invoice``, ``charge`` → billing;
  ``push``, ``pull_request``, ``workflow`` → code; ``alert``, ``incident``,
  ``monitor``, ``down`` → alert; ``lead``, ``deal``, ``quote`` → sales);
- the lexicon (``_LEXICON`` in ``lexicon.py``): each distinct term found in
  the human text adds its weight (1 for hints such as "help", 2 for topic
  words, 3 for "is down" and the like); found only in other payload
  strings, 0.6 of it; in key names, 0.3 of the strong ones, and only when
  the event has no human text.

The tenant's categories then decide:

1. a tenant category the model does not know is matched by its own name:
   the name or a simple stem of it (``refunds`` → ``refund``) as a word of
   the event type (+3) or of the text (+2); named (``_NAMED``), it wins;
2. otherwise the most probable of the tenant's categories the model knows;
3. the tenant's *fallback* when the model's best is ``other``, or when none
   of the tenant's categories reaches ``_MIN_PROBABILITY`` (the fallback is
   the tenant's ``fallback_category``, else ``other``, else its last
   category).

*Confidence*: the model's probability of the answer; for the fallback, at
most ``_OTHER_CONFIDENCE`` (0.45 × the probability of ``other``, 0.1 when
the answer is the fallback because nothing of the tenant's fits), so that a
route's ``min_confidence`` of 0.5 or more never matches small talk. A
category matched by name: ``0.15 + 0.8 × (1 − e^(−score/4))``.

*Reasons*: the model's features that pushed the answer most above the other
categories (``word "invoice" (+1.9)``), or why the fallback answered.

*Priority*: the priority model's (``model.py``), which reads the level the
priority rules give (``priority.py``) among its features. Sentiment and
summary have their own modules.
"""

from __future__ import annotations

import math
from typing import Any

from plugins.ai.local.model import LABELS, Weights, describe, features, priority_features, shipped, shipped_priority
from plugins.ai.local.priority import priority
from plugins.ai.local.reading import SPLIT_WORD_RE, WORD_RE, Reading, read
from plugins.ai.local.sentiment import sentiment_label, sentiment_score
from plugins.ai.local.summary import summary
from plugins.ai.spec import EventInput

DEFAULT_CATEGORIES = LABELS
# A tenant category named in the event (its name in the event type: 3, in the text: 2) wins.
_NAMED = 2.0
# Below this probability the model's best category of the tenant's does not fit: the fallback answers.
_MIN_PROBABILITY = 0.25
# "other" is the absence of a topic: its confidence is at most this, so routes with min_confidence above it skip it.
_OTHER_CONFIDENCE = 0.45

# Source → (category, weight): the prior before anything is read.
_SOURCE_PRIOR = {"stripe": ("billing", 3.0), "github": ("code", 3.0), "intercom": ("support", 1.0),
                 "slack": ("support", 1.0), "twilio": ("support", 1.0)}

# Event-type tokens (a segment like "payment_failed" or a word of it) → category; each adds 3.
_EVENT_TYPE_WORDS = {
    "billing": ("invoice", "invoices", "charge", "charges", "payment", "payment_intent", "payments", "subscription",
                "subscriptions", "payout", "payouts", "refund", "refunds", "checkout", "dispute", "billing",
                "receipt", "order", "orders", "customer", "price", "plan", "coupon", "tax", "credit_note", "renewed"),
    "code": ("push", "pull_request", "pull_request_review", "issues", "issue_comment", "release", "workflow",
             "workflow_run", "workflow_job", "check_run", "check_suite", "deployment", "deployment_status", "star",
             "fork", "commit", "commit_comment", "repository", "dependabot", "dependabot_alert", "code_scanning_alert",
             "build", "pipeline", "merge_request", "tag"),
    "alert": ("alert", "alerts", "incident", "incidents", "monitor", "error", "errors", "down", "uptime", "outage",
              "pagerduty", "anomaly", "certificate", "replication_lag", "lag", "failed", "failure", "security",
              "health", "degraded"),
    "sales": ("lead", "leads", "deal", "deals", "trial", "demo", "pricing", "quote", "contract", "opportunity",
              "prospect"),
    "support": ("ticket", "tickets", "feedback", "nps", "support", "chat", "survey", "escalated"),
    "other": ("meeting", "calendar"),
}
# What one event-type word adds: the event type is what the sender's system says the event is.
_EVENT_TYPE_WEIGHT = 3.0
_EVENT_TYPE_TABLE: dict[str, tuple[str, ...]] = {}
for _category, _words in _EVENT_TYPE_WORDS.items():
    for _word in _words:
        _EVENT_TYPE_TABLE[_word] = (*_EVENT_TYPE_TABLE.get(_word, ()), _category)


def _stems(word: str) -> set[str]:
    word = word.lower().strip()
    stems = {word}
    for suffix in ("ies", "es", "s", "ing", "ed", "ment", "ments"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: -len(suffix)]
            stems.add(stem + "y" if suffix == "ies" else stem)
    return stems


def _category_scores(reading: Reading, categories: tuple[str, ...]) -> dict[str, float]:
    scores = dict.fromkeys(categories, 0.0)
    prior = _SOURCE_PRIOR.get(reading.source)
    twilio_status = reading.source == "twilio" and not reading.event_type.startswith(("message.received", "call"))
    if prior and prior[0] in scores and not twilio_status:
        scores[prior[0]] += prior[1]
    for token in reading.et_tokens:
        for category in _EVENT_TYPE_TABLE.get(token, ()):
            if category in scores:
                scores[category] += _EVENT_TYPE_WEIGHT
    # Key names are noise next to a person's words (Intercom's "delivery_status"); alone, they are a hint.
    key_factor = 0.0 if reading.human else 0.3
    for hits, factor in ((reading.hits_human, 1.0), (reading.hits_leaves, 0.6), (reading.hits_keys, key_factor)):
        for term in hits.values():
            for category, weight in term.categories:
                # Key names are a weak hint, and only their strong terms count ("app" in "api_app_id" doesn't).
                if factor and category in scores and (factor > 0.3 or weight >= 2.0):
                    scores[category] += weight * factor
    # The tenant's own categories: matched by their names.
    unknown = [c for c in categories if c not in _EVENT_TYPE_WORDS]
    if unknown:
        words = set(WORD_RE.findall(f"{reading.human} {reading.leaves[:1000]}"))
        word_stems = {s for w in words if w.isalpha() for s in _stems(w)}
        et_stems = {s for t in reading.et_tokens for s in _stems(t)}
        for category in unknown:
            names = {s for part in SPLIT_WORD_RE.split(category.lower()) if part for s in _stems(part)}
            if names & et_stems:
                scores[category] += _EVENT_TYPE_WEIGHT
            if names & word_stems:
                scores[category] += 2.0
    return scores


def event_features(event: EventInput) -> tuple[Reading, dict[str, float]]:
    """The reading of ``event`` and the model's features of it (the rules' scores for the six included)."""
    reading = read(event)
    return reading, features(reading, _category_scores(reading, DEFAULT_CATEGORIES))


def fallback_of(categories: tuple[str, ...], fallback: str = "") -> str:
    """Where an event that fits no category goes: the tenant's choice, else ``other``, else its last category."""
    if fallback and fallback in categories:
        return fallback
    return "other" if "other" in categories else categories[-1]


def _choose(reading: Reading, found: dict[str, float], categories: tuple[str, ...],
            fallback: str, weights: Weights) -> tuple[str, float, list[str]]:
    """The category, its confidence and the reasons: see the module docstring."""
    known = weights.labels
    unknown = [c for c in categories if c not in known]
    if unknown:
        named = _category_scores(reading, tuple(unknown))
        best = max(unknown, key=lambda c: named[c])  # ties: the tenant's order
        if named[best] >= _NAMED:
            confidence = 0.15 + 0.8 * (1.0 - math.exp(-named[best] / 4.0))
            return best, round(confidence, 2), [f"the category's name is in the event ({best})"]
    probabilities = weights.probabilities(found)
    top = max(known, key=lambda c: probabilities[c])
    kept = [c for c in categories if c in known and c != "other"]
    choice = max(kept, key=lambda c: probabilities[c]) if kept else ""
    reasons = [f"{describe(name)} ({push:+.1f})" for name, push in weights.explain(found, top)]
    if top == "other" or not choice or probabilities[choice] < _MIN_PROBABILITY:
        # Nothing to act on: "other" is an answer, never a confident one.
        if top != "other":
            reasons = [f"{top} is not a category of the tenant's"] if not choice else \
                [f"no category is likely enough (best: {choice}, {probabilities[choice]:.2f})"]
        confidence = _OTHER_CONFIDENCE * probabilities["other"] if top == "other" else 0.1
        return fallback_of(categories, fallback), round(confidence, 2), reasons
    if choice != top:
        reasons = [f"{top} is not a category of the tenant's; next likely"] + \
            [f"{describe(name)} ({push:+.1f})" for name, push in weights.explain(found, choice)]
    return choice, round(probabilities[choice], 2), reasons


def _answers(event: EventInput, categories: tuple[str, ...], fallback: str,
             weights: Weights) -> tuple[Reading, str, float, list[str], str, dict[str, float]]:
    """What classify answers before the priority model: the reading, category, confidence, reasons and
    sentiment, and the priority model's features."""
    reading, found = event_features(event)
    category, confidence, reasons = _choose(reading, found, categories, fallback, weights)
    sentiment = sentiment_score(reading.human or reading.prose, reading.is_person and bool(reading.human))
    feeling = sentiment_label(sentiment.score)
    return reading, category, confidence, reasons, feeling, \
        priority_features(found, category, priority(reading, category, sentiment), feeling)


def priority_inputs(event: EventInput, weights: Weights) -> dict[str, float]:
    """The priority model's features of ``event``, the category answered by ``weights`` among the six:
    what the priority model is trained on (``training.py``)."""
    return _answers(event, DEFAULT_CATEGORIES, "", weights)[-1]


def classify(event: EventInput, categories: tuple[str, ...] = DEFAULT_CATEGORIES,
             fallback: str = "", weights: Weights | None = None) -> dict[str, Any]:
    """``{"category", "priority", "sentiment", "confidence", "summary", "reasons"}`` for ``event``.

    ``fallback``: the tenant's category for events that fit none (default: ``other``, if it has it);
    ``weights``: a model trained for the tenant, which may know categories of its own (default: the shipped
    one). The priority is the shipped priority model's, whatever the category model."""
    categories = tuple(c for c in categories if isinstance(c, str) and c) or DEFAULT_CATEGORIES
    reading, category, confidence, reasons, feeling, inputs = _answers(event, categories, fallback,
                                                                       weights or shipped())
    return {
        "category": category,
        "priority": shipped_priority().best(inputs),
        "sentiment": feeling,
        "confidence": confidence,
        "summary": summary(event, reading),
        "reasons": reasons,
    }
