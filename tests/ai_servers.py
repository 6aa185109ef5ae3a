"""Loopback servers that speak the model providers' HTTP APIs, for provider tests.

:class:`FakeAIServer` is a real threaded HTTP server on 127.0.0.1: the
official SDKs are pointed at it through their ``base_url`` and talk to it as
they would to api.anthropic.com or api.openai.com. A test queues the answers
(:class:`Reply`: status, JSON body, headers, a delay before answering) and
reads back every request the server received (:class:`Received`).

The body builders make what the APIs answer: :func:`anthropic_message` a
Messages API ``message``, :func:`openai_completion` a ``chat.completion``,
and :func:`anthropic_error` / :func:`openai_error` their error bodies.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "FakeAIServer",
    "Reply",
    "Received",
    "anthropic_message",
    "anthropic_error",
    "openai_completion",
    "openai_error",
]


@dataclass(frozen=True)
class Reply:
    """One canned answer. A dict or list ``body`` is sent as JSON, str or bytes as they are."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds to wait before answering: longer than the client's timeout makes it time out.
    delay_s: float = 0.0


@dataclass(frozen=True)
class Received:
    """One request as the server saw it; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


class FakeAIServer:
    """A threaded loopback HTTP server answering from a queue of :class:`Reply`.

    With the queue empty it answers 500, so a test that sends more requests
    than it planned for fails loudly. Use it as a context manager.
    """

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        # Set on stop: wakes handlers still sleeping out a delay.
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        """The server's root, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def reply(self, *replies: Reply) -> None:
        """Queue answers for the next requests, in order."""
        with self._lock:
            self._replies.extend(replies)

    def start(self) -> FakeAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _next_reply(self, request: Received) -> Reply:
        with self._lock:
            self.received.append(request)
            if self._replies:
                return self._replies.popleft()
        return Reply(500, {"error": {"type": "api_error", "message": "the test queued no reply for this request"}})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                request = Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                   self.rfile.read(length))
                reply = server._next_reply(request)
                if reply.delay_s and server._stopping.wait(reply.delay_s):
                    return
                body = reply.body
                if isinstance(body, (dict, list)):
                    body = json.dumps(body)
                if isinstance(body, str):
                    body = body.encode()
                body = body or b""
                try:
                    self.send_response(reply.status)
                    headers = {"content-type": "application/json", **reply.headers}
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout test)

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def anthropic_message(content: list[dict[str, Any]], *, model: str = "claude-haiku-4-5-20251001",
                      stop_reason: str = "end_turn", input_tokens: int = 10,
                      output_tokens: int = 5) -> dict[str, Any]:
    """A Messages API response body with these content blocks."""
    return {
        "id": "msg_01TestTestTestTestTestTest",
        "type": "message",
        "role": "assistant",
        "content": content,
        "model": model,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def anthropic_error(error_type: str, message: str) -> dict[str, Any]:
    """A Messages API error body, e.g. ``anthropic_error("overloaded_error", "Overloaded")``."""
    return {"type": "error", "error": {"type": error_type, "message": message}}


def openai_completion(content: str | None, *, model: str = "gpt-6-luna-2026-09-22", finish_reason: str = "stop",
                      prompt_tokens: int = 10, completion_tokens: int = 5) -> dict[str, Any]:
    """A ``chat.completion`` response body with one choice."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": None},
            "logprobs": None,
            "finish_reason": finish_reason,
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def openai_error(message: str, error_type: str, code: str | None = None) -> dict[str, Any]:
    """An OpenAI API error body."""
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}
