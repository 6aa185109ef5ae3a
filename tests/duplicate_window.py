"""Waiting out a stream's (short, test-sized) duplicate window without guessing how long it takes."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext

from switchboard.ids import new_id


async def wait_out_duplicate_window(js: JetStreamContext, subject: str, timeout_s: float = 30.0) -> None:
    """Return once the stream holding ``subject`` has forgotten every message id published before the call.

    Publishes one probe on ``subject`` (it stays in the stream, so count it or
    use a subject of its own) and repeats it until the stream stores it again:
    JetStream forgets ids oldest first, so the earlier ones are gone too.
    """
    probe = {"Nats-Msg-Id": new_id("prb")}
    await js.publish(subject, b"probe", headers=probe)
    async with asyncio.timeout(timeout_s):
        while (await js.publish(subject, b"probe", headers=probe)).duplicate:
            await asyncio.sleep(0.2)
