"""schemathesis hooks for tests/e2e/test_api_contract.py (loaded through SCHEMATHESIS_HOOKS).

Generated endpoint URLs keep their shape but point at a closed loopback port, so the fuzzer
never resolves or reaches a host beyond this machine.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import schemathesis


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    # before_call runs for every request of every phase (map_body does not run in the coverage phase).
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("url"), str):
        try:
            parts = urlsplit(body["url"])
            host = parts.hostname
        except ValueError:
            return
        if parts.scheme in ("http", "https") and host:
            body["url"] = urlunsplit((parts.scheme, "127.0.0.1:9", parts.path, parts.query, ""))
