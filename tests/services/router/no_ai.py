"""The AI for routing tests in which no route needs it: the dispatcher must never call it."""

from typing import Any

from switchboard.events import Event


class NoAI:
    """An :class:`~services.router.dispatch.AIClient` that fails the test if it is asked anything."""

    async def classify(self, event: Event) -> tuple[dict[str, Any] | None, str | None]:
        raise AssertionError(f"no route needs the AI, yet event {event.id} was sent to be classified")

    async def draft_reply(self, event: Event, hold: bool = False) -> tuple[str | None, str | None]:
        raise AssertionError(f"no route needs the AI, yet a reply to event {event.id} was asked for")


NO_AI = NoAI()
