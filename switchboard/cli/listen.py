"""``switchboard listen``: a running platform's events, forwarded to a local URL (as ``stripe listen`` does).

It reads ``GET /v1/listen`` (Server-Sent Events, gateway/listen.py) with an
API key, so the laptop needs no inbound port, and POSTs each event to
``--forward-to`` (its exact body, with the Content-Type it came with) re-signed
per Standard Webhooks with a local secret (given,
or generated and printed at start), printing one line per event: time, type,
id, the local answer's status and its latency. It reconnects by itself,
asking for what it missed since the last event it saw. While it runs, a line
``r`` on standard input forwards the last event again, ``r N`` the last N.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import datetime, UTC
from typing import Any, TextIO

import httpx
import orjson

from switchboard.cli.replay import api_key
from switchboard.cli.supervisor import edge_url
from switchboard.settings import Settings
from switchboard.signatures import generate_webhook_secret, sign_standard_webhook

__all__ = ["add_commands", "Forwarder", "sse_events"]

# Events kept for `r N`.
KEPT = 100
_RETRY_S = (1, 2, 5, 10)


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """(event name, data) of each Server-Sent Events frame; comments and ids skipped."""
    name, data = "message", list[str]()
    async for line in lines:
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", list[str]()
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)


class Forwarder:
    """Sends events to the local URL, signed, and prints a line for each."""

    def __init__(self, http: httpx.AsyncClient, forward_to: str | None, secret: str, out: TextIO) -> None:
        self.http = http
        self.forward_to = forward_to
        self.secret = secret
        self.out = out
        self.kept: deque[dict[str, Any]] = deque(maxlen=KEPT)

    async def forward(self, event: dict[str, Any], again: bool = False) -> None:
        if not again:
            self.kept.append(event)
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        label = f"{stamp}  {event['type']:<28} {event['id']}"
        if event.get("replayed") or again:
            label += "  (replayed)"
        if self.forward_to is None:
            self._print(label)
            return
        body = base64.b64decode(event["body_base64"]) if event.get("body_base64") else event["body"].encode()
        timestamp = int(time.time())
        headers = {
            "content-type": event.get("content_type") or "application/json",
            "webhook-id": event["id"],
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_standard_webhook(self.secret, event["id"], timestamp, body),
            "x-switchboard-event-id": event["id"],
            "x-switchboard-event-type": event["type"],
        }
        started = time.perf_counter()
        try:
            answer = await self.http.post(self.forward_to, content=body, headers=headers)
            result = f"{answer.status_code}"
        except httpx.HTTPError as exc:
            result = f"ERR {type(exc).__name__}: {exc}".rstrip(": ")
        self._print(f"{label}  -> {result}  {(time.perf_counter() - started) * 1000:.0f} ms")

    async def forward_last(self, count: int) -> None:
        for event in list(self.kept)[-count:]:
            await self.forward(event, again=True)

    def _print(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


class _Refused(Exception):
    """The platform refused the listener (bad key, unknown source...): no point retrying."""


async def _stream(api: httpx.AsyncClient, params: dict[str, Any], forwarder: Forwarder, seen: deque[str],
                  progress: dict[str, Any], err: TextIO) -> None:
    async with api.stream("GET", "/v1/listen", params=params, timeout=httpx.Timeout(10, read=None)) as reply:
        if reply.status_code != 200:
            await reply.aread()
            try:
                message = reply.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = reply.text
            if reply.status_code in (429, 502, 503, 504):
                raise httpx.TransportError(f"{reply.status_code}: {message}")
            raise _Refused(f"{reply.status_code}: {message}")
        progress["retries"] = 0
        err.write(f"listening on {params.get('source_id') or 'route ' + params['route_id']}"
                  f"{' -> ' + forwarder.forward_to if forwarder.forward_to else ''} (Ctrl-C to stop)\n")
        err.flush()
        async for name, data in sse_events(reply.aiter_lines()):
            if name == "event":
                event = orjson.loads(data)
                if event["id"] in seen:
                    continue
                seen.append(event["id"])
                progress["since"] = max(progress.get("since", 0.0), event["received_at"])
                await forwarder.forward(event)
            elif name == "dropped":
                err.write(f"switchboard: {orjson.loads(data)['dropped']} events were dropped: this listener "
                          f"read too slowly\n")
            elif name == "error":
                err.write(f"switchboard: {orjson.loads(data).get('error')}\n")


async def _commands(forwarder: Forwarder, err: TextIO) -> None:
    """``r [N]`` lines on standard input: forward the last N events again."""
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return  # no input (closed, or not a terminal): listening goes on
        words = line.split()
        if not words:
            continue
        if words[0] in ("r", "replay") and (len(words) == 1 or (len(words) == 2 and words[1].isdigit())):
            await forwarder.forward_last(int(words[1]) if len(words) == 2 else 1)
        else:
            err.write("commands: r (forward the last event again), r N (the last N)\n")
            err.flush()


async def listen(args: argparse.Namespace, key: str, base_url: str, out: TextIO, err: TextIO) -> int:
    secret = args.secret or generate_webhook_secret()
    if not args.secret and args.forward_to:
        err.write(f"forwarded events are signed with {secret} (pass --secret to choose one)\n")
    params: dict[str, Any] = {"source_id": args.source} if args.source else {"route_id": args.route}
    if args.replay:
        params["replay"] = args.replay
    seen: deque[str] = deque(maxlen=1000)
    progress: dict[str, Any] = {"retries": 0}
    async with httpx.AsyncClient(base_url=base_url, headers={"authorization": f"Bearer {key}"}) as api, \
            httpx.AsyncClient(timeout=args.timeout) as local:
        forwarder = Forwarder(local, args.forward_to, secret, out)
        commands = asyncio.create_task(_commands(forwarder, err)) if args.commands else None
        try:
            while True:
                try:
                    await _stream(api, params, forwarder, seen, progress, err)
                except _Refused as exc:
                    err.write(f"switchboard: {exc}\n")
                    return 1
                except httpx.HTTPError as exc:
                    err.write(f"switchboard: connection lost ({exc}); reconnecting\n")
                if args.once:
                    return 0
                # What was missed meanwhile comes from the store: events since the last one seen.
                if "since" in progress:
                    params["since"] = datetime.fromtimestamp(progress["since"], UTC).isoformat()
                    params["replay"] = 100
                await asyncio.sleep(_RETRY_S[min(progress["retries"], len(_RETRY_S) - 1)])
                progress["retries"] += 1
        finally:
            if commands is not None:
                commands.cancel()


def _listen(args: argparse.Namespace, settings: Settings) -> int:
    key = api_key(args, settings)
    if not key:
        print("switchboard: no API key: pass --key or set SWITCHBOARD_API_KEY", file=sys.stderr)
        return 2
    if args.secret:
        try:
            sign_standard_webhook(args.secret, "msg", 0, b"")
        except ValueError as exc:
            print(f"switchboard: --secret: {exc}", file=sys.stderr)
            return 2
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(listen(args, key, args.edge or edge_url(settings), sys.stdout, sys.stderr))
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    listen_ = commands.add_parser("listen", help="forward a source's or a route's events to a local URL, re-signed")
    which = listen_.add_mutually_exclusive_group(required=True)
    which.add_argument("--source", help="the source id whose events to forward")
    which.add_argument("--route", help="the route id whose matched events to forward")
    listen_.add_argument("--forward-to", help="the local URL to POST each event to (default: only print them)")
    listen_.add_argument("--secret", help="the whsec_ secret to sign forwarded events with (default: a new one)")
    listen_.add_argument("--replay", type=int, default=0, choices=range(0, 101), metavar="N",
                         help="first forward the last N stored events (0-100)")
    listen_.add_argument("--key", help="an API key with the read scope (default: SWITCHBOARD_API_KEY or admin.key)")
    listen_.add_argument("--edge", help="the edge URL (default: the running `switchboard up`)")
    listen_.add_argument("--timeout", type=float, default=10.0, help="seconds the local URL has to answer")
    listen_.add_argument("--no-commands", dest="commands", action="store_false",
                         help="do not read `r [N]` replay commands from standard input")
    listen_.add_argument("--once", action="store_true", help="stop when the stream ends instead of reconnecting")
    listen_.set_defaults(func=_listen)
