"""``classify``: an event's category and confidence, with its priority, sentiment and summary.

*Category.* Every category gets a score, the sum of

- a source prior: ``stripe`` → billing (+3), ``github`` → code (+3);
  ``intercom``, ``slack`` and ``twilio`` messages → support (+1, weak, so
  that what the text says wins; Twilio status callbacks get none);
- event-type tokens (+3 each, e.g. ``invoice``, ``charge``, ``payment``,
  ``subscription`` → billing; ``push``, ``pull_request``, ``issues``,
  ``release``, ``workflow`` → code; ``alert``, ``incident``, ``monitor``,
  ``error``, ``down`` → alert; ``lead``, ``deal``, ``trial``, ``demo``,
  ``pricing``, ``quote`` → sales);
- the lexicon (``_LEXICON`` in ``lexicon.py``): each distinct term (a word
  or a phrase) found in the human text adds its weight (1 for weak hints
  such as "help" or "account", 2 for topic words, 3 for "is down" and the
  like); found only in other payload strings, 0.6 of it; in key names, 0.3
  of the strong ones, and only when the event has no human text.

A tenant category that is not in the lexicon is matched by its own name: the
name and simple stems of it (``refunds`` → ``refund``) found as a word of the
event type (+3) or the text (+2). Only the tenant's categories compete; with
less than ``_MIN_EVIDENCE`` for the best one the answer is ``other`` if the
tenant has it, else the tenant's last category.

*Confidence* grows with the evidence (the best score) and with the margin
over the runner-up: ``0.15 + 0.8 × (1 − e^(−best/4)) × (0.5 + 0.5 ×
margin/best)``; 0.3 when nothing matched.

Sentiment, priority and summary have their own modules.
"""

from __future__ import annotations

import math
from typing import Any

from plugins.ai.local.priority import priority
from plugins.ai.local.reading import SPLIT_WORD_RE, WORD_RE, Reading, read
from plugins.ai.local.sentiment import sentiment_label, sentiment_score
from plugins.ai.local.summary import summary
from plugins.ai.spec import EventInput

DEFAULT_CATEGORIES = ("billing", "code", "support", "sales", "alert", "other")
_MIN_EVIDENCE = 1.0

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


def _choose(scores: dict[str, float], categories: tuple[str, ...]) -> tuple[str, float]:
    ranked = sorted(categories, key=lambda c: -scores[c])  # stable: ties go to the tenant's order
    best = scores[ranked[0]]
    second = scores[ranked[1]] if len(ranked) > 1 else 0.0
    if best < _MIN_EVIDENCE:
        fallback = "other" if "other" in categories else categories[-1]
        return fallback, 0.3
    strength = 1.0 - math.exp(-best / 4.0)
    confidence = 0.15 + 0.8 * strength * (0.5 + 0.5 * (best - second) / best)
    return ranked[0], round(min(1.0, max(0.0, confidence)), 2)


def classify(event: EventInput, categories: tuple[str, ...] = DEFAULT_CATEGORIES) -> dict[str, Any]:
    """``{"category", "priority", "sentiment", "confidence", "summary"}`` for ``event``."""
    categories = tuple(c for c in categories if isinstance(c, str) and c) or DEFAULT_CATEGORIES
    reading = read(event)
    category, confidence = _choose(_category_scores(reading, categories), categories)
    sentiment = sentiment_score(reading.human or reading.prose, reading.is_person and bool(reading.human))
    return {
        "category": category,
        "priority": priority(reading, category, sentiment),
        "sentiment": sentiment_label(sentiment.score),
        "confidence": confidence,
        "summary": summary(event, reading),
    }
