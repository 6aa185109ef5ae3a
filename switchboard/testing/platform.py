"""Run `switchboard up` as a real process tree, as a user would, for end-to-end tests.

The infrastructure is embedded (nats-server with JetStream and PostgreSQL, in
the state folder), as on a developer's machine: :func:`base_env` drops every
``SWITCHBOARD_*`` variable of the caller's environment. The project's tests
and plugin authors' share it (the ``switchboard_platform`` fixture).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Self

import httpx

from switchboard.cli.supervisor import listening_ports, pid_files

__all__ = ["Platform", "base_env"]

_EDGE = re.compile(r"edge:\s+(http://\S+)")
_KEY = re.compile(r"admin key:\s+(sb_live_\S+)")


def base_env(state_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a platform on loopback: state in ``state_dir``, every port picked by the system,
    loopback receivers allowed as destinations, quick retries; ``extra`` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update({
        "SWITCHBOARD_STATE_DIR": str(state_dir),
        "SWITCHBOARD_HTTP_PORT": "0",
        # Loopback receivers stand in for customers; every other private address stays refused.
        "SWITCHBOARD_DESTINATION_ALLOWLIST": "127.0.0.0/8",
        "SWITCHBOARD_DELIVERY_RETRY_BASE": "0.3",
        "SWITCHBOARD_PUBLISH_TIMEOUT": "2",
        "SWITCHBOARD_LOG_FORMAT": "text",
        "SWITCHBOARD_LOG_LEVEL": "INFO",
    })
    for name in ("INGEST", "ROUTER", "AI", "DELIVERY", "AUTH", "ANALYTICS"):
        env[f"SWITCHBOARD_{name}_GRPC_PORT"] = "0"
        env[f"SWITCHBOARD_{name}_METRICS_PORT"] = "0"
        # One process per service unless a test asks for more (test_multi_process.py): a
        # platform per test file on 2 cores, and a fault aimed at "the delivery process" has one target.
        env[f"SWITCHBOARD_{name}_PROCESSES"] = "1"
    env.update(extra)
    return env


class Platform:
    """``switchboard up`` in a subprocess; its output is collected in ``self.output``."""

    def __init__(self, env: dict[str, str], args: tuple[str, ...] = ()) -> None:
        """``args``: options of `switchboard up` (``("--cluster", "3")``)."""
        self.env = env
        self.args = args
        self.state_dir = Path(env["SWITCHBOARD_STATE_DIR"])
        self.output: list[str] = []
        self.process: subprocess.Popen | None = None
        self.edge_url = ""
        self.admin_key: str | None = None

    def start(self, timeout: float = 90.0) -> Self:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "switchboard.cli", "up", *self.args],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = "\n".join(self.output)
            if "Press Ctrl-C to stop." in text:
                edge = _EDGE.search(text)
                assert edge is not None, text
                self.edge_url = edge.group(1)
                found = _KEY.search(text)
                self.admin_key = found.group(1) if found else None
                return self
            if self.process.poll() is not None:
                time.sleep(0.2)
                raise AssertionError(f"switchboard up exited {self.process.returncode}:\n{self.log_tail()}")
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"switchboard up did not come up in {timeout}s:\n{self.log_tail()}")

    def _pump(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.output[-lines:])

    def wait_exit(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, timeout: float = 60.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout)

    def pids(self) -> dict[str, int]:
        return pid_files(self.state_dir)

    def grpc_target(self, service: str) -> str:
        return f"127.0.0.1:{listening_ports(self.state_dir)[service]}"

    def client(self, key: str | None = None) -> httpx.Client:
        key = key or self.admin_key or (self.state_dir / "admin.key").read_text().strip()
        return httpx.Client(base_url=self.edge_url, headers={"Authorization": f"Bearer {key}"}, timeout=15)

    def wait_for_log(self, pattern: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(re.search(pattern, line) for line in self.output):
                return
            time.sleep(0.1)
        raise AssertionError(f"no log line matching {pattern!r}:\n{self.log_tail()}")
