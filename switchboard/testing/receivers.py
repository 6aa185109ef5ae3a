"""A real HTTP receiver on loopback that stands in for a customer's endpoint, or for a provider's API.

Shared by the project's tests and plugin authors' (the destination and AI
provider contracts send to it).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Callable

__all__ = ["Received", "Receiver"]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    method: str = "POST"


class Receiver:
    """Records every request; answers with ``status`` (settable while running).

    The answer's body is ``response_body`` when set (an API stand-in returns
    JSON there), else "ok" for a success and "not now" otherwise.
    """

    def __init__(self, status: int = 200, headers: dict[str, str] | None = None, delay_s: float = 0.0,
                 response_body: bytes | None = None) -> None:
        self.status = status
        self.response_body = response_body
        # Seconds to wait before answering (a slow receiver).
        self.delay_s = delay_s
        # Extra response headers (settable while running).
        self.headers = dict(headers or {})
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                with receiver._lock:
                    receiver.requests.append(Received(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body, self.command))
                    status = receiver.status
                    extra = dict(receiver.headers)
                    payload = receiver.response_body
                if payload is None:
                    payload = b"ok" if status < 300 else b"not now"
                try:
                    self.send_response(status)
                    for name, value in extra.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up waiting (a timeout under test)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # A short poll: stopping waits for the serving loop to notice, and tests start many receivers.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def base_url(self) -> str:
        """The server's root, standing in for an API base such as ``https://api.example.com``."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                snapshot = list(self.requests)
            if predicate(snapshot):
                return snapshot
            time.sleep(0.05)
        raise AssertionError(f"receiver condition not met in {timeout}s; got {len(self.requests)} requests")
