"""Loopback servers that speak the model providers' HTTP APIs, for provider tests.

:class:`FakeAIServer` is a real threaded HTTP server on 127.0.0.1: the
official SDKs are pointed at it through their ``base_url`` and talk to it as
they would to api.anthropic.com or api.openai.com. A test queues the answers
(:class:`Reply`: status, JSON body, headers, a delay before answering) and
reads back every request the server received (:class:`Received`).

The body builders make what the APIs answer: :func:`anthropic_message` a
Messages API ``message``, :func:`openai_completion` a ``chat.completion``,
and :func:`anthropic_error` / :func:`openai_error` their error bodies.

A server may also answer from what it was asked (``FakeAIServer(responder)``,
once its queue is empty): :func:`keyword_greedy` is a caricature of a weak
model, answering a classification with the category of the first word
naming one in the user message, for tests of prompts that bias the answer.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
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
    "keyword_greedy",
    "user_message",
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

    With the queue empty it answers from ``responder``, or without one 500, so
    a test that sends more requests than it planned for fails loudly. Use it
    as a context manager.
    """

    def __init__(self, responder: Callable[[Received], Reply] | None = None) -> None:
        self.responder = responder
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
        if self.responder is not None:
            return self.responder(request)
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


def anthropic_answer(labels: dict[str, Any], **message: Any) -> Reply:
    """A Messages API reply answering through the ``answer`` tool with ``labels`` (``message``: the rest of
    :func:`anthropic_message`'s arguments)."""
    return Reply(body=anthropic_message([{"type": "tool_use", "id": "toolu_01", "name": "answer", "input": labels}],
                                        **{"stop_reason": "tool_use", **message}))


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


def user_message(request: Received) -> str:
    """The text of the last user message of a Messages API or Chat Completions request."""
    messages = [m for m in request.json["messages"] if m["role"] == "user"]
    content = messages[-1]["content"] if messages else ""
    if isinstance(content, list):  # content blocks
        content = "".join(block.get("text", "") for block in content)
    return content


def keyword_greedy(words: Mapping[str, Sequence[str]], model: str = "greedy-1") -> Callable[[Received], Reply]:
    """A responder playing a weak model that latches onto the first category it reads.

    It answers a classification (an Anthropic ``answer`` tool call, or an OpenAI JSON message, by the request's
    path) with the category of the first word of ``words`` (category -> the words that name it, its own name
    among them; whole words, any case) in the user message, read from its start: whatever comes first wins,
    the event's words or a list of categories. With no such word, the first category of ``words``.
    """
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for ws in words.values() for w in ws) + r")\b", re.I)
    category_of = {w.lower(): category for category, ws in words.items() for w in ws}

    def answer(request: Received) -> Reply:
        found = pattern.search(user_message(request))
        category = category_of[found.group(1).lower()] if found else next(iter(words))
        labels = {"category": category, "priority": "normal", "sentiment": "neutral", "confidence": 0.9,
                  "summary": f"read {found.group(1) if found else 'nothing'} first"}
        if request.path.endswith("/messages"):
            return anthropic_answer(labels, model=model)
        return Reply(body=openai_completion(json.dumps(labels), model=model))

    return answer
