"""``switchboard replay``: start a replay through the REST API and follow it with a progress bar.

It speaks to the edge like any API client, with an API key: ``--key``, else
``SWITCHBOARD_API_KEY``, else the bootstrap admin key a local `switchboard up`
saved in its state directory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

import httpx

from switchboard.settings import Settings
from switchboard.cli.supervisor import ADMIN_KEY_FILE, edge_url

__all__ = ["add_commands", "api_key", "progress_bar"]

_FINISHED = ("succeeded", "failed", "cancelled")


def progress_bar(done: int, total: int, width: int = 30) -> str:
    """``[#########.....]  45%  450/1000`` (a replay with nothing to do is complete)."""
    fraction = 1.0 if total <= 0 else min(1.0, done / total)
    filled = round(fraction * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%}  {done}/{total}"


def api_key(args: argparse.Namespace, settings: Settings) -> str | None:
    key = args.key or settings.api_key
    if key:
        return key
    try:
        return (settings.state_dir / ADMIN_KEY_FILE).read_text().strip()
    except OSError:
        return None


def _fail(reply: httpx.Response) -> int:
    try:
        message = reply.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = reply.text
    print(f"switchboard: {reply.status_code}: {message}", file=sys.stderr)
    return 1


def _follow(api: httpx.Client, replay: dict[str, Any], interval_s: float, out: TextIO) -> dict[str, Any]:
    while True:
        out.write(f"\r{replay['id']} {replay['status']:<9} {progress_bar(replay['done'], replay['total'])}")
        out.flush()
        if replay["status"] in _FINISHED:
            out.write("\n")
            return replay
        time.sleep(interval_s)
        reply = api.get(f"/v1/replays/{replay['id']}")
        reply.raise_for_status()
        replay = reply.json()


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    key = api_key(args, settings)
    if not key:
        print("switchboard: no API key: pass --key or set SWITCHBOARD_API_KEY", file=sys.stderr)
        return 2
    body = {"since": args.since, "until": args.until, "source_id": args.source, "event_types": args.type,
            "endpoint_id": args.endpoint}
    with httpx.Client(base_url=args.edge or edge_url(settings), headers={"authorization": f"Bearer {key}"},
                      timeout=30) as api:
        try:
            reply = api.post("/v1/replays", json={k: v for k, v in body.items() if v})
            if reply.status_code != 202:
                return _fail(reply)
            replay = reply.json()
            if not args.no_wait:
                replay = _follow(api, replay, args.interval, sys.stderr)
        except httpx.HTTPStatusError as exc:
            return _fail(exc.response)
        except httpx.HTTPError as exc:
            print(f"switchboard: cannot reach the edge: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(replay))
    else:
        print(f"replay {replay['id']} {replay['status']}: {replay['done']}/{replay['total']} events, "
              f"{replay['deliveries']} deliveries queued")
    return 0 if replay["status"] in ("succeeded", "queued", "running") else 1


def add_commands(commands: argparse._SubParsersAction) -> None:
    replay = commands.add_parser("replay", help="re-deliver the events of a time range, with a progress bar")
    replay.add_argument("--since", required=True, help="ISO 8601 start, e.g. 2026-11-23T00:00:00Z")
    replay.add_argument("--until", help="ISO 8601 end (default: now)")
    replay.add_argument("--source", help="only events from this source id")
    replay.add_argument("--type", action="append", default=[], help="only these event types (globs; repeatable)")
    replay.add_argument("--endpoint", help="deliver to this endpoint only (default: through the current routes)")
    replay.add_argument("--key", help="an API key with the admin scope (default: SWITCHBOARD_API_KEY or admin.key)")
    replay.add_argument("--edge", help="the edge URL (default: the running `switchboard up`)")
    replay.add_argument("--no-wait", action="store_true", help="start it and return at once")
    replay.add_argument("--interval", type=float, default=0.5, help="seconds between progress checks")
    replay.add_argument("--json", action="store_true", help="print the finished replay as JSON")
    replay.set_defaults(func=_replay)
