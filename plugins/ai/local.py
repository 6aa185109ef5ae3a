"""The ``local`` provider: rules and a lexicon, no model, no key, no network.

It is the default provider and always ends a tenant's chain, so that
classification-based routing, extraction and reply drafts work on a machine
with no AI provider configured. It never reads ``system`` or ``prompt``: it
reads the structured fields of the request (``event``, ``categories``,
``output_schema``, ``turns``). Answers are deterministic: the same request
always gets the same answer, which also makes routing tests exact.

What it looks at
    The event's source type and event type; its human text
    (``EventInput.text``, HTML tags removed); and, capped, the payload: at
    most ``_MAX_NODES`` nodes walked breadth first, string leaves of at most
    ``_MAX_LEAF`` characters and ``_MAX_TEXT`` characters in all, and the key
    names. Opaque strings (ids, URLs, tokens) and credential-like keys
    (``token``, ``secret``, ``signature``…) are skipped. The work is bounded
    by these caps — a few milliseconds at most, whatever the payload's size.

classify
    *Category.* Every category gets a score, the sum of

    - a source prior: ``stripe`` → billing (+3), ``github`` → code (+3);
      ``intercom``, ``slack`` and ``twilio`` messages → support (+1, weak, so
      that what the text says wins; Twilio status callbacks get none);
    - event-type tokens (+3 each, e.g. ``invoice``, ``charge``, ``payment``,
      ``subscription`` → billing; ``push``, ``pull_request``, ``issues``,
      ``release``, ``workflow`` → code; ``alert``, ``incident``, ``monitor``,
      ``error``, ``down`` → alert; ``lead``, ``deal``, ``trial``, ``demo``,
      ``pricing``, ``quote`` → sales);
    - the lexicon (``_LEXICON``): each distinct term (a word or a phrase)
      found in the human text adds its weight (1 for weak hints such as
      "help" or "account", 2 for topic words, 3 for "is down" and the like);
      found only in other payload strings, 0.6 of it; in key names, 0.3 of
      the strong ones, and only when the event has no human text.

    A tenant category that is not in the lexicon is matched by its own name:
    the name and simple stems of it (``refunds`` → ``refund``) found as a word
    of the event type (+3) or the text (+2). Only the tenant's categories
    compete; with less than ``_MIN_EVIDENCE`` for the best one the answer is
    ``other`` if the tenant has it, else the tenant's last category.

    *Confidence* grows with the evidence (the best score) and with the margin
    over the runner-up: ``0.15 + 0.8 × (1 − e^(−best/4)) × (0.5 + 0.5 ×
    margin/best)``; 0.3 when nothing matched.

    *Sentiment* is the sender's, read from the human text (or, when the event
    has none, from payload strings of three words or more): a lexicon of
    feeling words (±2: "frustrating", "love"; ±1: "expensive", "nice") and of
    problem words (−1: "broken", "fails", "again"; counted only for text a
    person wrote — a failed CI run is not upset), with negation ("not", "no",
    "never", "n't", "without" flip the next sentiment word within three words,
    so "not happy" is negative and "not bad" or "no problem" positive; "no
    longer" counts −1), intensifiers ("very", "so", "really"… × 1.5),
    contrast (before "but" counts a quarter, after it 1.5 times: "thanks, but
    it is still broken" is negative), wishes ("it would be nice to…" is not
    praise), greetings ("good morning" is not praise) and "!!" (× 1.2). At −1
    or below: negative; at +1 or above: positive.

    *Priority*, the first rule that holds:

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

    *Summary*: Stripe events name the object, customer and amount ("Stripe
    invoice.payment_failed: customer cus_123, 49.00 USD"); GitHub events the
    repository and the title, commit or run; other events their first
    sentence of text, or a few of the payload's scalar fields. At most 140
    characters, one line.

extract
    Each property of ``output_schema`` is looked for in the payload (breadth
    first, capped): a key whose normalised name (case, ``_``, ``-`` and
    camelCase ignored) equals the property name, or its path does
    (``customer_email`` matches ``{"customer": {"email": ...}}``), or a
    synonym does (``_SYNONYMS``: email/e-mail/mail, amount/total/price, id,
    phone/mobile, url/link…), or the key ends with the property name.
    Candidates are tried best first and coerced to the schema type (string,
    number, integer, boolean, an enum's values; nested objects and arrays
    recursively). When none fits and the property name suggests it, regexes
    over the text find an email, phone number, URL, money amount, order or
    invoice id. What is not found is left out, unless required: then null if
    the schema allows it, else ``ProviderError(retryable=False)`` so the host
    asks the next provider.

reply
    A short, polite, plain-text draft (at most 600 characters) for the last
    customer turn: it thanks the customer, says sorry when the message is
    negative, names the topic from the classification's category, quotes
    nothing it was not told, and promises that a teammate follows up. It
    never invents facts: no dates, refunds, prices or names. English only.

Limits: it knows English words, not meaning; sarcasm, irony and languages
other than English read as neutral or are misread; mixed-topic messages get
the topic with the most evidence; it has no knowledge of the tenant beyond
the category names. See docs/ai.md for measured accuracy.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from plugins.ai.spec import AIRequest, AIResponse, EventInput, ProviderError, ProviderSettings, Turn
from plugins.markers import hookimpl

__all__ = ["LocalProvider", "classify", "extract", "draft_reply", "DEFAULT_CATEGORIES", "MODEL"]

MODEL = "local-rules-1"
DEFAULT_CATEGORIES = ("billing", "code", "support", "sales", "alert", "other")

# Caps on what is looked at: the answer must not cost more for a bigger payload.
_MAX_NODES = 400
_MAX_LEAF = 600
_MAX_TEXT = 4000
_MAX_HUMAN = 2000
_MIN_EVIDENCE = 1.0
_SUMMARY_CHARS = 140
_REPLY_CHARS = 600

# ----------------------------------------------------------------- lexicons

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

# Text terms → {category: weight}. Phrases are matched as whole words.
_LEXICON: dict[str, tuple[tuple[str, ...], float]] = {
    "billing": (("invoice", "invoices", "invoiced", "billing", "billed", "bill", "refund", "refunds", "refunded",
                 "charged", "overcharged", "charge", "charges", "chargeback", "payment", "payments", "receipt",
                 "receipts", "subscription", "subscriptions", "money back", "credit card", "card declined",
                 "declined", "dispute", "payout", "vat", "renewal", "paid", "pay", "insufficient funds",
                 "past due", "overdue", "accountant", "accounting", "amount due", "unit amount", "amount paid",
                 "amount refunded", "fraudulent"), 2.0),
    "billing:1": (("card", "price", "amount", "currency", "tax", "cost", "money", "checkout"), 1.0),
    "code": (("bug", "bugs", "pull request", "pr", "merge", "merged", "commit", "commits", "branch", "repo",
              "repository", "ci", "build", "builds", "pipeline", "stack trace", "traceback", "exception",
              "refactor", "dependency", "dependencies", "lint", "test", "tests", "flaky", "release", "changelog",
              "github", "hotfix", "revert", "reverting", "code", "typo", "readme", "node", "python", "npm",
              "pip", "migration guide", "feature request", "regression", "stack", "keyerror", "upgrade guide",
              "conclusion", "head sha", "head branch", "workflow"), 2.0),
    "code:1": (("deploy", "deployment", "docs", "version", "api", "endpoint", "sdk", "library"), 1.0),
    "support": (("password", "login", "log in", "reset", "export", "import", "integration", "sync", "upload", "crash", "crashing", "crashes",
                 "not working", "isn't working", "doesn't work", "broken", "ticket", "support", "order", "shipped",
                 "shipping", "package", "delivery", "appointment", "gdpr", "personal data", "where can i",
                 "not loading", "spinner", "dashboard", "response time", "editor", "search", "onboarding",
                 "report builder", "keyboard shortcuts", "workspace", "add a new user", "contacts",
                 "open tomorrow", "opening hours", "tutorial"), 2.0),
    # How a question is asked, not what it is about: weak.
    "support:1": (("help", "how do i", "how to", "how can i", "where can i", "question", "account", "issue",
                   "problem", "app", "slow", "find", "access", "data", "feature", "user", "email"), 1.0),
    "sales": (("demo", "pricing", "quote", "lead", "leads", "deal", "deals", "trial", "upgrade", "upgrading",
               "enterprise", "seats", "discount", "contract", "partnership", "partner", "reselling", "resell",
               "evaluate", "evaluating", "vendor", "vendors", "purchase", "buy", "sales", "prospect",
               "security questionnaire", "procurement", "nonprofit", "business plan", "premium plan", "team plan",
               "pro plan", "plans", "sso", "audit logs", "annual", "signed", "units", "competitor", "book a demo",
               "pricing page", "won", "lost reason", "lost_reason"), 2.0),
    "sales:1": (("plan", "price", "interested", "company", "budget", "renewal"), 1.0),
    "alert": (("alert", "alerts", "alerting", "incident", "incidents", "monitor", "monitoring", "outage", "down",
               "downtime", "firing", "triggered", "latency", "threshold", "cpu", "disk", "pagerduty", "sev1",
               "sev2", "degraded", "unavailable", "error rate", "5xx", "health check", "health checks", "uptime",
               "replication lag", "certificate", "expires", "expiring", "resolved", "recovered", "anomaly",
               "impossible travel", "timeout", "timeouts", "timeouterror", "returning 401", "returning 500",
               "returning 502", "returning 503", "502", "503", "504", "p99", "memory usage", "disk usage",
               "back to normal", "investigating", "severity", "disk full"), 2.0),
    "alert:3": (("is down", "been down", "are down", "went down", "site down", "outage"), 3.0),
    "alert:1": (("error", "errors", "failed", "failure", "critical", "warning", "production", "webhook", "job",
                 "backup", "environment", "region"), 1.0),
    "other": (("lunch", "pizza", "kitchen", "all-hands", "all hands", "meeting", "reminder", "wifi", "office",
               "stop", "unsubscribe", "wrong number", "remove me", "birthday", "good morning", "hello",
               "have a nice day", "planning", "signup", "sign up", "thanks to the team", "just wanted to say"), 2.0),
}

# Priority words. "production" alone is not urgent; with a failure word it is.
_URGENT_TERMS = ("outage", "down", "urgent", "asap", "critical", "emergency", "breach", "security incident",
                 "security issue", "data loss", "lost a day of data", "locked out", "sev1", "p0", "p1",
                 "unauthorized", "without permission", "injection", "remote code execution", "rce",
                 "double charges", "charges some customers twice", "customers cannot", "customers can't",
                 "threatens to churn", "account_closed", "can't place an order")
_FAILURE_TERMS = ("fail", "fails", "failed", "failing", "failure", "error", "errors", "500", "5xx", "broken",
                  "crash", "crashing", "triggered", "firing", "above threshold")
# Payment trouble and deadlines: high wherever they are said.
_HIGH_TERMS = ("payment_failed", "past_due", "past due", "insufficient_funds", "insufficient funds",
               "card_declined", "card declined", "needs_response", "fraud", "fraudulent", "early_fraud_warning",
               "overdue", "expires", "expiring", "finalization_failed", "chargeback")
# A failed run, job or check: high when it is the event type or a one-word status value
# ("conclusion": "failure"), not when a commit message mentions an error.
_FAILED_STATUS = frozenset(("failed", "failure", "error", "errored", "failing", "timed_out", "payment_failed",
                            "past_due", "overdue", "dispute", "expiring", "early_fraud_warning",
                            "finalization_failed", "undelivered"))
_RESOLVED_TERMS = ("resolved", "recovered", "back to normal", "fixed in")
_LOW_EVENT_WORDS = frozenset(("paid", "succeeded", "success", "completed", "complete", "merged", "push", "star",
                              "fork", "delivered", "renewed", "upcoming", "closed", "labeled", "published",
                              "updated", "signup", "viewed", "page_viewed", "scheduled", "started", "won"))
_REPEAT_TERMS = ("again", "still", "keeps", "keep", "twice", "anymore", "no longer", "every time", "always")
_ALERT_FIRING = ("triggered", "firing")

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

# Event types whose text is a person's words, not a machine's.
_HUMAN_EVENT_WORDS = frozenset(("issues", "issue_comment", "pull_request", "pull_request_review", "discussion",
                                "commit_comment", "ticket", "feedback", "nps", "form", "comment", "review", "survey",
                                "chat", "conversation", "reply", "message", "posted", "escalated", "requested"))

# ----------------------------------------------------------------- compiled tables


def _phrase_regex(terms: list[str]) -> re.Pattern[str]:
    ordered = sorted(set(terms), key=lambda t: (-len(t), t))
    return re.compile(r"(?<![a-z0-9_])(?:" + "|".join(re.escape(t) for t in ordered) + r")(?![a-z0-9_])")


@dataclass(frozen=True)
class _Term:
    categories: tuple[tuple[str, float], ...] = ()
    urgent: bool = False
    failure: bool = False
    high: bool = False
    resolved: bool = False
    repeat: bool = False


def _build_terms() -> dict[str, _Term]:
    table: dict[str, dict[str, Any]] = {}
    for key, (terms, weight) in _LEXICON.items():
        category = key.split(":")[0]
        for term in terms:
            cats = table.setdefault(term, {}).setdefault("categories", {})
            cats[category] = max(weight, cats.get(category, 0.0))
    for flag, terms in (("urgent", _URGENT_TERMS), ("failure", _FAILURE_TERMS), ("high", _HIGH_TERMS),
                        ("resolved", _RESOLVED_TERMS), ("repeat", _REPEAT_TERMS)):
        for term in terms:
            table.setdefault(term, {})[flag] = True
    # The regex matches the longest term, so a phrase carries the flags of its words ("is down" is urgent).
    flags = ("urgent", "failure", "high", "resolved", "repeat")
    for term, spec in table.items():
        words = term.split(" ")
        for word in words if len(words) > 1 else ():
            for flag in flags:
                if table.get(word, {}).get(flag):
                    spec[flag] = True
    return {term: _Term(categories=tuple(sorted(spec.pop("categories", {}).items())), **spec)
            for term, spec in table.items()}


_TERMS = _build_terms()
_TERMS_RE = _phrase_regex(list(_TERMS))
_EVENT_TYPE_TABLE: dict[str, tuple[str, ...]] = {}
for _category, _words in _EVENT_TYPE_WORDS.items():
    for _word in _words:
        _EVENT_TYPE_TABLE[_word] = (*_EVENT_TYPE_TABLE.get(_word, ()), _category)

# Never shown in a summary nor read: what looks like a credential.
_SECRET_KEY_RE = re.compile(r"token|secret|passw|signature|api_?key|authorization|credential|cookie", re.IGNORECASE)
_TAG_RE = re.compile(r"<[^>]{0,200}>")
_SPACE_RE = re.compile(r"\s+")
_OPAQUE_RE = re.compile(r"^(?:[a-z]{1,6}_[A-Za-z0-9_]{6,}|[A-Za-z0-9+/=_\-]{20,}|https?://\S+|\+?\d[\d\s\-.]{6,}"
                        r"|\d{4}-\d\d-\d\d[T ][\d:.]+Z?)$")
_SPLIT_EVENT_RE = re.compile(r"[.:/\s]+")
_SPLIT_WORD_RE = re.compile(r"[._:/\-\s]+")
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[.!?;,:]")
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")
_CONTRACTION = {"can't": ("can", "not"), "won't": ("will", "not"), "n't": ("not",)}


# ----------------------------------------------------------------- what an event says


@dataclass
class _Reading:
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
    hits_human: dict[str, _Term] = field(default_factory=dict)
    hits_leaves: dict[str, _Term] = field(default_factory=dict)
    hits_keys: dict[str, _Term] = field(default_factory=dict)


def _clean(text: str) -> str:
    if "<" in text:
        text = _TAG_RE.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    return _SPACE_RE.sub(" ", text.replace("\u2019", "'")).strip()


def _walk(payload: Any, max_nodes: int = _MAX_NODES) -> Iterator[tuple[tuple[str, ...], Any]]:
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


def _read(event: EventInput) -> _Reading:
    source = (event.source_type or "").lower()
    event_type = (event.event_type or "").lower()[:200]
    segments = [s for s in _SPLIT_EVENT_RE.split(event_type) if s]
    tokens = dict.fromkeys(segments)
    for segment in segments:
        tokens.update(dict.fromkeys(w for w in _SPLIT_WORD_RE.split(segment) if w))
    human_raw = _clean(event.text[:_MAX_HUMAN * 2])[:_MAX_HUMAN] if event.text else ""
    human = human_raw.lower()
    leaves: list[str] = []
    prose: list[str] = []
    statuses: set[str] = set()
    keys: dict[str, None] = {}
    size = 0
    for path, value in _walk(event.payload):
        if path:
            keys[path[-1]] = None
            if _SECRET_KEY_RE.search(path[-1]):
                continue
        if isinstance(value, str) and size < _MAX_TEXT:
            value = value[:_MAX_LEAF].strip()
            if not value or _OPAQUE_RE.match(value) or (human and value.lower() in human):
                continue
            value = _clean(value).lower()
            leaves.append(value)
            size += len(value) + 3
            if " " not in value:
                if len(value) <= 30:
                    statuses.add(value)
            elif value.count(" ") >= 2:
                prose.append(value)
    is_person = (source in ("slack", "intercom") or (source == "twilio" and event_type.startswith("message.received"))
                 or any(t in _HUMAN_EVENT_WORDS for t in tokens))
    key_words = " ".join(_SPLIT_WORD_RE.sub(" ", _CAMEL_RE.sub(" ", k)).lower() for k in list(keys)[:200])
    reading = _Reading(source, event_type, tuple(tokens), human, human_raw, " | ".join(leaves)[:_MAX_TEXT],
                       key_words, frozenset(statuses), " . ".join(prose)[:_MAX_HUMAN], is_person)
    reading.hits_human = _hits(reading.human)
    reading.hits_leaves = {t: v for t, v in _hits(reading.leaves).items() if t not in reading.hits_human}
    reading.hits_keys = _hits(reading.keys)
    return reading


def _hits(text: str) -> dict[str, _Term]:
    if not text:
        return {}
    return {match: _TERMS[match] for match in _TERMS_RE.findall(text)}


# ----------------------------------------------------------------- classify


def _stems(word: str) -> set[str]:
    word = word.lower().strip()
    stems = {word}
    for suffix in ("ies", "es", "s", "ing", "ed", "ment", "ments"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: -len(suffix)]
            stems.add(stem + "y" if suffix == "ies" else stem)
    return stems


def _category_scores(reading: _Reading, categories: tuple[str, ...]) -> dict[str, float]:
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
        words = set(_WORD_RE.findall(f"{reading.human} {reading.leaves[:1000]}"))
        word_stems = {s for w in words if w.isalpha() for s in _stems(w)}
        et_stems = {s for t in reading.et_tokens for s in _stems(t)}
        for category in unknown:
            names = {s for part in _SPLIT_WORD_RE.split(category.lower()) if part for s in _stems(part)}
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


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    for word in _WORD_RE.findall(text):
        if word.endswith("n't"):
            out.extend(_CONTRACTION.get(word, (word[:-3], "not")))
        else:
            out.append(word)
    return out


@dataclass(frozen=True)
class _Sentiment:
    score: float  # everything: feeling and problem words
    feeling: float  # feeling words only: how upset (or pleased) the sender is


def _sentiment_score(text: str, is_person: bool) -> _Sentiment:
    """The sender's sentiment; see the module docstring for the rules."""
    if not text:
        return _Sentiment(0.0, 0.0)
    words = _tokens(text[:_MAX_HUMAN])
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
    return _Sentiment(score, feeling)


def _sentiment(score: float) -> str:
    return "negative" if score <= -1.0 else "positive" if score >= 1.0 else "neutral"


def _priority(reading: _Reading, category: str, sentiment: _Sentiment) -> str:
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


# ----------------------------------------------------------------- summaries

_ZERO_DECIMAL = frozenset(("bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
                           "xaf", "xof", "xpf"))


def _one_line(text: str, limit: int = _SUMMARY_CHARS) -> str:
    text = _SPACE_RE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _first_sentence(text: str) -> str:
    first = text.split(" | ")[0]
    return _SENTENCE_RE.split(first, maxsplit=1)[0]


def _stripe_summary(event: EventInput) -> str:
    payload = event.payload if isinstance(event.payload, Mapping) else {}
    data = payload.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    obj = obj if isinstance(obj, Mapping) else {}
    parts = []
    customer = obj.get("customer_email") or obj.get("customer") or obj.get("email")
    if isinstance(customer, str) and customer:
        parts.append(f"customer {customer}")
    elif obj.get("object") in ("customer",) and isinstance(obj.get("id"), str):
        parts.append(f"customer {obj['id']}")
    for key in ("amount_due", "amount_total", "amount", "amount_paid"):
        amount = obj.get(key)
        if isinstance(amount, int) and not isinstance(amount, bool):
            currency = str(obj.get("currency") or "").lower()
            value = f"{amount}" if currency in _ZERO_DECIMAL else f"{amount / 100:.2f}"
            parts.append(f"{value} {currency.upper()}".strip())
            break
    failure = obj.get("failure_message")
    if isinstance(failure, str) and failure:
        parts.append(failure.rstrip("."))
    head = f"Stripe {event.event_type}"
    return f"{head}: {', '.join(parts)}" if parts else head


def _github_summary(event: EventInput) -> str:
    payload = event.payload if isinstance(event.payload, Mapping) else {}
    repo = payload.get("repository")
    name = repo.get("full_name") if isinstance(repo, Mapping) else None
    head = f"GitHub {event.event_type}" + (f" in {name}" if isinstance(name, str) else "")
    detail = None
    for key in ("issue", "pull_request", "release", "workflow_run", "check_run", "deployment_status", "alert"):
        obj = payload.get(key)
        if isinstance(obj, Mapping):
            title = obj.get("title") or obj.get("name") or obj.get("tag_name") or obj.get("description")
            if key == "alert" and isinstance(obj.get("security_advisory"), Mapping):
                title = obj["security_advisory"].get("summary")
            if isinstance(title, str) and title:
                detail = title
                conclusion = obj.get("conclusion") or obj.get("state")
                if key in ("workflow_run", "check_run", "deployment_status") and isinstance(conclusion, str):
                    detail = f"{title} {conclusion}"
                break
    if detail is None:
        commit = payload.get("head_commit")
        if isinstance(commit, Mapping) and isinstance(commit.get("message"), str):
            detail = commit["message"].splitlines()[0] if commit["message"] else None
    return f"{head}: {detail}" if detail else head


_SOURCE_NAMES = {"slack": "Slack", "intercom": "Intercom", "twilio": "Twilio", "api": "API", "github": "GitHub",
                 "stripe": "Stripe"}


def _summary(event: EventInput, reading: _Reading) -> str:
    source = reading.source
    if source == "stripe":
        return _one_line(_stripe_summary(event))
    if source == "github":
        return _one_line(_github_summary(event))
    head = f"{_SOURCE_NAMES.get(source, source or 'event')} {event.event_type}".strip()
    if reading.human_raw:
        return _one_line(f"{head}: {_first_sentence(reading.human_raw)}")
    fields = []
    for path, value in _walk(event.payload, 100):
        if not path or _SECRET_KEY_RE.search(path[-1]):
            continue
        if isinstance(value, str) and value.count(" ") >= 2 and not _OPAQUE_RE.match(value):
            return _one_line(f"{head}: {_first_sentence(_clean(value[:_MAX_LEAF]))}")
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip() \
                and len(fields) < 3 and not (isinstance(value, str) and _OPAQUE_RE.match(value)):
            fields.append(f"{path[-1]} {value}")
    return _one_line(f"{head}: {', '.join(fields)}" if fields else head)


def classify(event: EventInput, categories: tuple[str, ...] = DEFAULT_CATEGORIES) -> dict[str, Any]:
    """``{"category", "priority", "sentiment", "confidence", "summary"}`` for ``event``."""
    categories = tuple(c for c in categories if isinstance(c, str) and c) or DEFAULT_CATEGORIES
    reading = _read(event)
    category, confidence = _choose(_category_scores(reading, categories), categories)
    sentiment = _sentiment_score(reading.human or reading.prose, reading.is_person and bool(reading.human))
    return {
        "category": category,
        "priority": _priority(reading, category, sentiment),
        "sentiment": _sentiment(sentiment.score),
        "confidence": confidence,
        "summary": _summary(event, reading),
    }


# ----------------------------------------------------------------- extract


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_SYNONYM_GROUPS = (
    ("email", "emailaddress", "mail", "customeremail", "receiptemail", "contactemail", "useremail"),
    ("amount", "total", "amounttotal", "amountdue", "price", "sum", "grandtotal", "value", "cost"),
    ("id", "identifier", "uid", "uuid", "key"),
    ("phone", "phonenumber", "mobile", "tel", "telephone", "from", "msisdn"),
    ("name", "fullname", "displayname"),
    ("url", "link", "href", "htmlurl", "website", "uri"),
    ("orderid", "ordernumber", "orderno", "order"),
    ("invoiceid", "invoicenumber", "invoiceno", "invoice"),
    ("message", "text", "body", "content", "comment"),
    ("title", "subject", "headline"),
    ("customer", "customerid", "client", "clientid"),
    ("company", "organization", "organisation", "org", "companyname"),
    ("status", "state"),
    ("currency", "currencycode"),
    ("date", "createdat", "created", "timestamp", "time"),
)
_SYNONYMS = {word: set(group) - {word} for group in _SYNONYM_GROUPS for word in group}
_CANONICAL = {word: group[0] for group in _SYNONYM_GROUPS for word in group}

_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
# International (+…) or North American (555 867 5310) numbers; not dates or ids.
_PHONE_RE = re.compile(r"(?<![\w+])(?:\+\d[\d\s().\-]{7,17}\d|\(?\d{3}\)?[\s.\-]\d{3}[\s.\-]\d{4})(?![\w])")
_URL_RE = re.compile(r"https?://[^\s<>\"')]+")
_MONEY_RE = re.compile(r"(?:[$€£¥]\s?\d[\d,]*(?:\.\d+)?|\d[\d,]*(?:\.\d+)?\s?(?:USD|EUR|GBP|CAD|AUD|JPY|CHF)\b)")
_ORDER_RE = re.compile(r"(?:#[A-Z0-9][A-Z0-9\-]{2,}|\bord_[A-Za-z0-9]+|\border\s+(?:no\.?\s*|number\s*)?#?\d[\w\-]*)",
                       re.IGNORECASE)
_INVOICE_RE = re.compile(r"\b(?:INV[-_ ]?[\w\-]*\d[\w\-]*|in_[A-Za-z0-9]{6,})\b")
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def _fallback(name: str) -> re.Pattern[str] | None:
    if "email" in name or "mail" in name:
        return _EMAIL_RE
    if "phone" in name or "mobile" in name or name in ("tel", "telephone"):
        return _PHONE_RE
    if "url" in name or "link" in name or "website" in name:
        return _URL_RE
    if "invoice" in name:
        return _INVOICE_RE
    if "order" in name:
        return _ORDER_RE
    if any(w in name for w in ("amount", "total", "price", "cost")):
        return _MONEY_RE
    return None


def _types(schema: Mapping[str, Any]) -> list[str]:
    kind = schema.get("type")
    kinds = [kind] if isinstance(kind, str) else [k for k in kind if isinstance(k, str)] if isinstance(kind, list) else []
    for option in schema.get("anyOf", ()) or schema.get("oneOf", ()) or ():
        if isinstance(option, Mapping):
            kinds.extend(_types(option))
    if not kinds and "properties" in schema:
        kinds = ["object"]
    if not kinds and isinstance(schema.get("enum"), list):
        kinds = ["enum"]
    return kinds


def _allows_null(schema: Mapping[str, Any]) -> bool:
    return "null" in _types(schema) or schema.get("nullable") is True or (
        isinstance(schema.get("enum"), list) and None in schema["enum"])


_MISSING = object()


def _to_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        match = _NUMBER_RE.search(value)
        if match and len(value.strip()) <= 40:
            try:
                return float(match.group().replace(",", ""))
            except ValueError:
                return None
    return None


def _coerce(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` as the schema's type, or ``_MISSING`` when it cannot be."""
    kinds = [k for k in _types(schema) if k != "null"] or ["any"]
    enum = schema.get("enum")
    for kind in kinds:
        result: Any = _MISSING
        if kind == "string" and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            result = value if isinstance(value, str) else str(value)
            result = result.strip() or _MISSING
        elif kind == "number":
            number = _to_number(value)
            result = _MISSING if number is None else (int(number) if number.is_integer() else number)
        elif kind == "integer":
            number = _to_number(value)
            result = int(number) if number is not None and number.is_integer() else _MISSING
        elif kind == "boolean":
            if isinstance(value, bool):
                result = value
            elif isinstance(value, (str, int)):
                lowered = str(value).strip().lower()
                result = True if lowered in ("true", "yes", "1", "y", "on") else \
                    False if lowered in ("false", "no", "0", "n", "off") else _MISSING
        elif kind == "object" and isinstance(value, Mapping):
            result = _fill(value, schema, text="", strict=False, depth=3) or _MISSING
        elif kind == "array" and isinstance(value, list):
            items = schema.get("items") if isinstance(schema.get("items"), Mapping) else {}
            coerced = [_coerce(v, items) if items else v for v in value[:100]]
            result = [v for v in coerced if v is not _MISSING]
        elif kind in ("any", "enum") and isinstance(value, (str, int, float, bool)):
            result = value
        if result is not _MISSING and isinstance(enum, list) and result not in enum:
            lowered = {str(e).lower(): e for e in enum}
            result = lowered.get(str(result).lower(), _MISSING)
        if result is not _MISSING:
            return result
    return _MISSING


def _candidates(payload: Any, name: str) -> list[Any]:
    """Values under keys that match ``name``, best match first, shallowest first."""
    target = _norm(name)
    synonyms = _SYNONYMS.get(target, set())
    ranked: list[tuple[int, int, Any]] = []
    for order, (path, value) in enumerate(_walk(payload)):
        if not path:
            continue
        names = [_norm(p) for p in path]
        key = names[-1]
        if key == target or "".join(names[-2:]) == target or "".join(names[-3:]) == target:
            rank = 0
        elif key in synonyms or (len(names) > 1 and names[-2] + _CANONICAL.get(key, key) == target):
            rank = 1  # a synonym: "total" for "amount"; "customer"/"fullName" for "customer_name"
        elif len(target) >= 4 and key.endswith(target):
            rank = 2  # "customer_email" for "email"
        else:
            continue
        ranked.append((rank, order, value))
    ranked.sort(key=lambda item: (item[0], item[1]))
    return [value for _, _, value in ranked]


def _fill(payload: Any, schema: Mapping[str, Any], text: str, strict: bool = True, depth: int = 0,
          prefix: str = "") -> dict[str, Any]:
    """The schema's properties from ``payload``; ``strict``: a missing required one raises, else gives ``{}``.

    ``prefix`` names the object property being filled from the whole event: its ``id`` is then looked
    for as ``customer_id``, never as any ``id``.
    """
    properties = schema.get("properties") if isinstance(schema.get("properties"), Mapping) else {}
    required = [r for r in schema.get("required", ()) if isinstance(r, str)]
    result: dict[str, Any] = {}
    for name, subschema in properties.items():
        subschema = subschema if isinstance(subschema, Mapping) else {}
        value: Any = _MISSING
        for candidate in _candidates(payload, f"{prefix}_{name}" if prefix else name):
            value = _coerce(candidate, subschema)
            if value is not _MISSING:
                break
        if value is _MISSING and "object" in _types(subschema) and depth < 3:
            # A nested object with no key of its own name: its properties come from the whole event.
            value = _fill(payload, subschema, "", strict=False, depth=depth + 1,
                          prefix=f"{prefix}_{name}" if prefix else name) or _MISSING
        if value is _MISSING and text and not prefix:
            pattern = _fallback(_norm(name))
            if pattern is not None:
                for match in pattern.finditer(text):
                    value = _coerce(match.group().strip().rstrip(".,;:!?"), subschema)
                    if value is not _MISSING:
                        break
        if value is not _MISSING:
            result[name] = value
    for name in required:
        if name in result:
            continue
        subschema = properties.get(name) if isinstance(properties.get(name), Mapping) else {}
        if _allows_null(subschema):
            result[name] = None
        elif strict:
            raise ProviderError(f"the local provider found no value for required property {name!r}",
                                retryable=False)
        else:
            return {}
    return result


def _extraction_text(event: EventInput) -> str:
    pieces = [_clean(event.text[:_MAX_TEXT])] if event.text else []
    size = len(pieces[0]) if pieces else 0
    for _, value in _walk(event.payload):
        if isinstance(value, str) and size < _MAX_TEXT:
            value = value[:_MAX_LEAF]
            pieces.append(value)
            size += len(value) + 1
    return "\n".join(pieces)


def extract(event: EventInput, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema's properties filled from the event; ProviderError when a required one is missing."""
    if not isinstance(schema, Mapping) or not isinstance(schema.get("properties"), Mapping):
        raise ProviderError('the local provider needs an output schema with "properties"', retryable=False)
    return _fill(event.payload, schema, _extraction_text(event))


# ----------------------------------------------------------------- reply

_TOPICS = {
    "billing": "your billing question",
    "code": "the technical issue you reported",
    "support": "your request",
    "sales": "your interest in our plans",
    "alert": "the service problem you are seeing",
    "other": "your message",
}


def _quote(text: str, limit: int = 140) -> str:
    first = _first_sentence(text)
    return _one_line(first, limit)


def draft_reply(turns: tuple[Turn, ...], event: EventInput | None = None,
                categories: tuple[str, ...] = DEFAULT_CATEGORIES) -> str:
    """A short, polite reply to the last customer turn that promises a follow-up and invents nothing."""
    last = next((t.text for t in reversed(turns) if t.role == "customer" and t.text.strip()), "")
    if not last and event is not None:
        last = event.text
    last = _clean(last[:_MAX_HUMAN])
    if not last:
        return "Hi,\n\nThank you for getting in touch. A member of our team will look into this and get back to " \
               "you shortly.\n\nBest regards"
    source, event_type, payload = ("", "", None) if event is None else (event.source_type, event.event_type,
                                                                       event.payload)
    about = classify(EventInput(event.tenant_id if event else "", source, event_type, payload if payload else {},
                                last), categories)
    category = about["category"]
    topic = _TOPICS.get(category, f"your message about {category}" if category else "your message")
    opening = "Thank you for your message, and sorry for the trouble." if about["sentiment"] == "negative" \
        else "Thank you for your message."
    soon = " as soon as possible" if about["priority"] in ("high", "urgent") else " shortly"
    quote = _quote(last)
    body = (f"Hi,\n\n{opening} We have received {topic}: \"{quote}\" "
            f"A member of our team will look into it and get back to you{soon}.\n\nBest regards")
    if len(body) > _REPLY_CHARS:  # only the quote is long: shorten it
        quote = _quote(last, max(20, 140 - (len(body) - _REPLY_CHARS)))
        body = (f"Hi,\n\n{opening} We have received {topic}: \"{quote}\" "
                f"A member of our team will look into it and get back to you{soon}.\n\nBest regards")
    return body[:_REPLY_CHARS]


# ----------------------------------------------------------------- the provider


class LocalProvider:
    """Answers every task from rules and a lexicon; see the module docstring."""

    name = "local"
    cost_per_million_tokens = (0.0, 0.0)

    @property
    def available(self) -> bool:
        return True

    async def complete(self, request: AIRequest) -> AIResponse:
        return AIResponse(text=self.answer(request), model=MODEL)

    def answer(self, request: AIRequest) -> str:
        """The answer's text; synchronous, and cheap enough to run on the event loop."""
        handler = _TASKS.get(request.task)
        if handler is None:
            raise ProviderError(f"the local provider cannot do {request.task!r}", retryable=False)
        return handler(request)


def _classify_task(request: AIRequest) -> str:
    if request.event is None:
        raise ProviderError("the local provider classifies request.event, and there is none", retryable=False)
    return json.dumps(classify(request.event, tuple(request.categories) or DEFAULT_CATEGORIES), ensure_ascii=False)


def _extract_task(request: AIRequest) -> str:
    if request.event is None:
        raise ProviderError("the local provider extracts from request.event, and there is none", retryable=False)
    return json.dumps(extract(request.event, request.output_schema or {}), ensure_ascii=False)


def _reply_task(request: AIRequest) -> str:
    return draft_reply(tuple(request.turns), request.event, tuple(request.categories) or DEFAULT_CATEGORIES)


_TASKS: dict[str, Callable[[AIRequest], str]] = {"classify": _classify_task, "extract": _extract_task,
                                                 "reply": _reply_task}


@hookimpl
def register_ai_providers(register: Callable[[LocalProvider], None], settings: ProviderSettings) -> None:
    """The local provider needs no settings."""
    register(LocalProvider())
