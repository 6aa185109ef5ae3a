"""Retention of the router's stored events: events older than the retention are deleted.

Every row of ``router.events`` is settled: the router stores an event only
once it has been routed (its deliveries are then the delivery service's
business, kept by its own retention). An event older than
``SWITCHBOARD_RETENTION_EVENTS_DAYS`` (by ``received_at``) is deleted, in
bounded batches per tenant, walking the ``(tenant_id, received_at)`` index.
Once pruned it can no longer be read (``GET /v1/events/{id}``) or replayed;
but a tenant's queued or running replay holds the events of its range
until it finishes (nothing from its ``since`` on is pruned meanwhile). Each
batch's statement reads the replays itself, so a replay created while a
round is under way holds its range from the next batch on.
AI-drafted replies (``router.replies``) go with the same retention, by when
they were drafted, except those held for review: they, and their events
(an approval sends the event's reply), wait for a person.
Docs: docs/operations.md#retention.
"""

from __future__ import annotations

from switchboard.retention import TenantPruner

__all__ = ["EventPruner", "ReplyPruner"]


_DELETE = """DELETE FROM router.events WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM router.events
                 WHERE tenant_id = %(tenant)s
                   AND received_at < LEAST(%(cutoff)s, (
                       SELECT min(since) FROM router.replays
                       WHERE tenant_id = %(tenant)s AND status IN ('queued', 'running')))
                   AND NOT EXISTS (SELECT 1 FROM router.replies
                                   WHERE replies.event_id = events.id AND replies.status = 'held')
                 LIMIT %(batch)s))"""


class EventPruner(TenantPruner):
    """Deletes the events past retention that no active replay still needs."""

    what = "router events"
    table = "router.events"
    statement = _DELETE


class ReplyPruner(TenantPruner):
    """Deletes the drafted replies past retention, but never one held for review."""

    what = "router replies"
    table = "router.replies"
    statement = """DELETE FROM router.replies WHERE ctid = ANY(ARRAY(
                       SELECT ctid FROM router.replies
                       WHERE tenant_id = %(tenant)s AND created_at < %(cutoff)s AND status <> 'held'
                       LIMIT %(batch)s))"""
