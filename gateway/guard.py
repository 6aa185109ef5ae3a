"""The guard in front of every ``/v1`` route: the caller's key, its rate limit and the scope the route needs."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from gateway.context import EdgeContext
from switchboard.apikeys import Principal, bearer_credential
from switchboard.errors import RateLimited
from switchboard.ratelimit import Verdict

__all__ = ["Admitted", "admit"]


@dataclass(frozen=True)
class Admitted:
    principal: Principal
    # The key as presented: RPCs are called with it, so the services bind its tenant themselves.
    credential: str
    # The key's rate-limit verdict; its headers go on the answer.
    verdict: Verdict


async def admit(request: Request, scope: str) -> Admitted:
    """The caller, once its key is valid, under its rate limit and holding ``scope``; raises otherwise."""
    edge: EdgeContext = request.app.state.edge
    credential = bearer_credential(request.headers.get("authorization"))
    principal = await edge.authenticator.verify(credential)
    verdict = await edge.key_buckets.take(principal.key_id, edge.key_rate)
    if not verdict.allowed:
        raise RateLimited("this API key is over its rate limit", retry_after_s=verdict.retry_after_s,
                          headers=verdict.headers())
    principal.require(scope)
    return Admitted(principal, credential, verdict)
