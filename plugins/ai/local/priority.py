"""The priority rules: the first of these that holds. Their level is one of the priority model's features
(``model.py``), which gives the answer.

1. ``low`` when the system reports a recovery ("resolved", "recovered",
   "back to normal", a closed issue — in the event type, a status, a
   machine's text, or the words of a person who isn't complaining) and
   nothing urgent is said;
2. ``urgent`` for urgent words anywhere (outage, down, urgent, asap,
   critical, emergency, breach, security incident / issue, data loss,
   locked out, sev1, p0, p1, unauthorized, without permission, injection,
   remote code execution…), a ``security`` / ``down`` / ``outage`` event
   type, "production" together with a failure word, or a triggered /
   firing alert;
3. ``high`` for a failed run, job, check or payment (``failed``,
   ``failure``, ``error``, ``past_due``, ``overdue``, ``dispute``… as the
   event type or a one-word status value such as ``"conclusion":
   "failure"`` — a commit message that mentions an error is not a
   failure), payment trouble said anywhere (insufficient funds, card
   declined, fraud, chargeback, expiring), a strongly upset sender
   (feeling words at −2 or below), or a negative sender who says the
   problem repeats ("again", "still", "keeps", "anymore") or writes about
   billing;
4. ``low`` for the ``other`` category, a positive sender (except in sales:
   a keen prospect is still ``normal``), and success / informational
   events (paid, succeeded, completed, merged, push, star, delivered…);
5. ``normal`` otherwise.

The words said anywhere are the lexicon's flags (``lexicon.py``); the event
types and status values are below.
"""

from __future__ import annotations

from plugins.ai.local.reading import Reading
from plugins.ai.local.sentiment import Sentiment

# A failed run, job or check: high when it is the event type or a one-word status value
# ("conclusion": "failure"), not when a commit message mentions an error.
_FAILED_STATUS = frozenset(("failed", "failure", "error", "errored", "failing", "timed_out", "payment_failed",
                            "past_due", "overdue", "dispute", "expiring", "early_fraud_warning",
                            "finalization_failed", "undelivered"))
_LOW_EVENT_WORDS = frozenset(("paid", "succeeded", "success", "completed", "complete", "merged", "push", "star",
                              "fork", "delivered", "renewed", "upcoming", "closed", "labeled", "published",
                              "updated", "signup", "viewed", "page_viewed", "scheduled", "started", "won"))
_ALERT_FIRING = ("triggered", "firing")


def priority(reading: Reading, category: str, sentiment: Sentiment) -> str:
    """The first rule that holds; see the module docstring."""
    person = reading.hits_human if reading.is_person else {}
    machine = reading.hits_leaves if reading.is_person else {**reading.hits_human, **reading.hits_leaves}
    every = {**reading.hits_human, **reading.hits_leaves}
    et = set(reading.et_tokens)
    # A recovery is what a system reports, or a person who isn't complaining ("still not resolved!" is no recovery).
    resolved = any(t.resolved for t in machine.values()) or bool(et & {"recovered", "resolved"}) \
        or ("closed" in et and "issues" in et) \
        or (sentiment.score > -1.0 and any(t.resolved for t in person.values()))
    if resolved and not any(t.urgent for t in person.values()):
        return "low"
    urgent = any(t.urgent for t in every.values()) or bool(et & {"down", "outage", "critical", "security"})
    production = "production" in every and any(t.failure for t in every.values())
    firing = category == "alert" and any(w in every or w in et for w in _ALERT_FIRING)
    if urgent or production or firing:
        return "urgent"
    failed = bool((et | reading.statuses) & _FAILED_STATUS) and not ("dispute" in et and "closed" in et)
    payment_trouble = any(t.high for t in every.values())
    repeat = any(t.repeat for t in person.values())
    negative = sentiment.score <= -1.0
    if failed or payment_trouble or sentiment.feeling <= -2.0 or (negative and (repeat or category == "billing")):
        return "high"
    if category == "other" or (sentiment.score >= 1.0 and category != "sales") or (et & _LOW_EVENT_WORDS):
        return "low"
    return "normal"
