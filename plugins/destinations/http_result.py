"""One HTTP exchange with a receiver or a provider's API, and its SendResult.

What every HTTP destination agrees on lives here:

- :func:`exchange` checks the URL against the SSRF guard, then sends one
  request through the host's client (``context.http``, a
  :class:`switchboard.outbound.OutboundClient`) under one deadline
  (``context.timeout_s`` for the whole exchange, so a server dripping bytes
  cannot hold a slot for ever), never follows redirects, and reads at most
  ``read_limit`` bytes of the answer. It returns an :class:`HttpAnswer`, or a
  :class:`SendResult` when no answer came: a refused URL and a request that
  cannot be sent as it is are final; timeouts and connection errors are
  retryable.
- :meth:`HttpAnswer.result` classifies an answer by its status: 2xx is
  success; 408, 425, 429 and 5xx are retryable, honouring ``Retry-After``
  (seconds, or an HTTP date); other statuses are final. When the endpoint has
  its own ``context.retry_statuses``, exactly those statuses are retryable.
- :meth:`HttpAnswer.failure` makes a failed result from an answer whose status
  said success but whose body did not (Slack's ``{"ok": false}``).

Every result from an answer carries ``status_code``, ``response_excerpt`` (the
first 512 bytes of the body) and ``response_headers``.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from collections.abc import Mapping
from urllib.parse import urlencode

import orjson

from plugins.destinations.spec import DestinationContext, SendResult
from switchboard.netguard import DestinationRefused, check_url_shape, ensure_public_destination
from switchboard.outbound import OutboundError, RequestNotSendable

__all__ = [
    "DEFAULT_RETRYABLE_STATUSES",
    "EXCERPT_BYTES",
    "HttpAnswer",
    "MAX_RETRY_AFTER_S",
    "exchange",
    "is_retryable_status",
    "parse_retry_after",
]

#: Retried besides every 5xx, unless the endpoint lists its own statuses.
DEFAULT_RETRYABLE_STATUSES = frozenset({408, 425, 429})
#: How much of a body is kept in a result.
EXCERPT_BYTES = 512
#: A receiver cannot make us wait longer than this between attempts (its ``Retry-After``).
MAX_RETRY_AFTER_S = 3600.0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (seconds or an HTTP date), capped at an hour."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(seconds, MAX_RETRY_AFTER_S))


def is_retryable_status(status: int, context: DestinationContext) -> bool:
    """Whether an answer with this status is worth trying again."""
    if context.retry_statuses is not None:
        return status in context.retry_statuses
    return status >= 500 or status in DEFAULT_RETRYABLE_STATUSES


@dataclass(frozen=True)
class HttpAnswer:
    """What the server answered: status, lower-case headers, the start of the body."""

    status_code: int
    headers: Mapping[str, str] = field(default_factory=dict)
    # At most the ``read_limit`` given to :func:`exchange`.
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def excerpt(self) -> str:
        return self.body[:EXCERPT_BYTES].decode("utf-8", errors="replace")

    @property
    def retry_after_s(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"))

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON (or was cut short)."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None

    def _answered(self) -> dict[str, Any]:
        return {"status_code": self.status_code, "response_excerpt": self.excerpt,
                "response_headers": dict(self.headers)}

    def result(self, context: DestinationContext, who: str = "receiver", detail: str | None = None) -> SendResult:
        """Success for 2xx, else a failure retryable per :func:`is_retryable_status`.

        The error reads ``"<who> answered <status>: <detail>"``.
        """
        if self.ok:
            return SendResult(ok=True, **self._answered())
        error = f"{who} answered {self.status_code}" + (f": {detail}" if detail else "")
        return self.failure(error, retryable=is_retryable_status(self.status_code, context))

    def failure(self, error: str, *, retryable: bool, disable_endpoint: str | None = None) -> SendResult:
        """A failed result for this answer; a retryable one honours ``Retry-After``."""
        return SendResult(
            ok=False,
            error=error[:500],
            retryable=retryable,
            retry_after_s=self.retry_after_s if retryable else None,
            disable_endpoint=disable_endpoint,
            **self._answered(),
        )


async def exchange(
    context: DestinationContext,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    form: Mapping[str, str] | None = None,
    basic_auth: tuple[str, str] | None = None,
    read_limit: int = EXCERPT_BYTES,
) -> HttpAnswer | SendResult:
    """Send one request to ``url``; the answer, or a failed SendResult when none came.

    ``body`` is sent as is; ``form`` as ``application/x-www-form-urlencoded``;
    ``basic_auth`` is ``(user, password)``.
    """
    headers = dict(headers or {})
    if form is not None:
        body = urlencode(form).encode()
        headers["content-type"] = "application/x-www-form-urlencoded"
    if basic_auth:
        headers["authorization"] = "Basic " + base64.b64encode(":".join(basic_auth).encode()).decode()
    try:
        # One deadline for the whole exchange, the address check included.
        async with asyncio.timeout(context.timeout_s):
            if context.connections_guarded:
                check_url_shape(url)
            else:
                await ensure_public_destination(url, context.allow_private_networks, context.allowed_networks)
            response = await context.http.request(method, url, headers=headers, body=body or b"",
                                                  read_limit=read_limit)
    except DestinationRefused as exc:
        return SendResult(ok=False, error=str(exc), retryable=False)
    except TimeoutError:
        return SendResult(ok=False, error=f"timed out after {context.timeout_s:g}s", retryable=True)
    except RequestNotSendable as exc:  # cannot be sent as it is: retrying won't help
        return SendResult(ok=False, error=f"request not sendable: {exc}"[:500], retryable=False)
    except (OutboundError, OSError) as exc:
        return SendResult(ok=False, error=str(exc)[:500] or type(exc).__name__, retryable=True)
    return HttpAnswer(response.status, response.headers, response.body)
