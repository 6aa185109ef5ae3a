"""Retention of the delivery log: settled deliveries and their attempts, deleted after the retention.

A delivery that succeeded or failed (a dead letter) and has not changed for
``SWITCHBOARD_RETENTION_DELIVERIES_DAYS`` is deleted with all its attempts,
in bounded batches per tenant (one statement each: the attempts, then the
deliveries), walking the ``(tenant_id, created_at)`` index. A pending
delivery is never pruned, whatever its age, nor are its attempts. A row
being changed meanwhile (a manual retry) is skipped and looked at again
next round; a manual retry makes a delivery pending and resets its age.
Once pruned, a delivery is no longer listed nor retryable by hand. The
dead letters on the ``DEAD_LETTERS`` stream follow that stream's own limits
(``SWITCHBOARD_STREAM_MAX_AGE`` / ``_MAX_BYTES``). Endpoints are kept.
Docs: docs/operations.md#retention.
"""

from __future__ import annotations

from switchboard.retention import TenantPruner

__all__ = ["DeliveryPruner"]


# created_at <= updated_at, so the index on created_at bounds the walk.
_DELETE = """
WITH doomed AS (
    SELECT id FROM delivery.deliveries
    WHERE tenant_id = %(tenant)s AND created_at < %(cutoff)s AND updated_at < %(cutoff)s
      AND status IN ('succeeded', 'failed')
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), gone_attempts AS (
    DELETE FROM delivery.attempts WHERE delivery_id IN (SELECT id FROM doomed)
)
DELETE FROM delivery.deliveries WHERE id IN (SELECT id FROM doomed)
"""


class DeliveryPruner(TenantPruner):
    """Deletes the settled deliveries past retention with their attempts."""

    what = "settled deliveries"
    table = "delivery.deliveries"
    statement = _DELETE
