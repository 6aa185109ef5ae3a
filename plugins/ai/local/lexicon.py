"""The words the local provider looks for in an event's text, and the one regex that finds them all.

Each term (a word or a phrase, matched as whole words) carries the categories
it is evidence for, with a weight, and the priority flags it raises (urgent,
failure, high, resolved, repeat); how they count is said in
``classification.py`` and ``priority.py``. One regex finds every term in a
single pass over a text: ``hits`` is what each part of an event's reading is
matched with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

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
    "support": (("password", "login", "log in", "reset", "export", "import", "integration", "sync", "upload",
                 "crash", "crashing", "crashes",
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
_RESOLVED_TERMS = ("resolved", "recovered", "back to normal", "fixed in")
_REPEAT_TERMS = ("again", "still", "keeps", "keep", "twice", "anymore", "no longer", "every time", "always")


def _phrase_regex(terms: list[str]) -> re.Pattern[str]:
    ordered = sorted(set(terms), key=lambda t: (-len(t), t))
    return re.compile(r"(?<![a-z0-9_])(?:" + "|".join(re.escape(t) for t in ordered) + r")(?![a-z0-9_])")


@dataclass(frozen=True)
class Term:
    """What finding one term says: the categories it weighs for and the priority flags it raises."""

    categories: tuple[tuple[str, float], ...] = ()
    urgent: bool = False
    failure: bool = False
    high: bool = False
    resolved: bool = False
    repeat: bool = False


def _build_terms() -> dict[str, Term]:
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
    return {term: Term(categories=tuple(sorted(spec.pop("categories", {}).items())), **spec)
            for term, spec in table.items()}


_TERMS = _build_terms()
_TERMS_RE = _phrase_regex(list(_TERMS))


def hits(text: str) -> dict[str, Term]:
    """The terms found in ``text`` (lower case), each with what it is evidence for."""
    if not text:
        return {}
    return {match: _TERMS[match] for match in _TERMS_RE.findall(text)}
