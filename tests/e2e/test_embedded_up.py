"""`switchboard up` on a fresh machine: no URLs, so it starts its own NATS and
PostgreSQL; data survives a restart; Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest

from switchboard.settings import machine_processes
from tests.platform_runner import Platform, base_env

pytestmark = pytest.mark.e2e


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if text in cmdline or text.encode() in environ:
            found.append(f"{entry.name}: {cmdline}")
    return found


def test_up_starts_embedded_infrastructure_keeps_data_and_leaves_no_orphans(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = base_env(state)  # no SWITCHBOARD_NATS_URL, no SWITCHBOARD_DATABASE_URL
    # And the processes a user gets: one per two cores for the edge, router and delivery.
    env = {k: v for k, v in env.items() if not k.endswith("_PROCESSES")}

    first = Platform(env).start()
    try:
        assert first.admin_key and first.admin_key.startswith("sb_live_")
        key_file = state / "admin.key"
        assert key_file.read_text().strip() == first.admin_key
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert (state / "nats").is_dir() and (state / "postgres" / "PG_VERSION").exists()
        per_service = machine_processes(os.cpu_count() or 1)
        assert sum(name.startswith("delivery") for name in first.pids()) == per_service, first.pids()
        with first.client() as api:
            created = api.post("/v1/sources", json={"name": "kept across restarts"})
            assert created.status_code == 201, created.text
    finally:
        assert first.stop() == 0, first.log_tail()
    assert processes_mentioning(str(state)) == []

    second = Platform(env).start()
    try:
        # The key is printed only on the first start; the data is still there.
        assert second.admin_key is None
        assert first.admin_key not in "\n".join(second.output)
        with second.client(first.admin_key) as api:
            names = [s["name"] for s in api.get("/v1/sources").json()["data"]]
        assert names == ["kept across restarts"]
        assert httpx.get(f"{second.edge_url}/readyz").status_code == 200
    finally:
        assert second.stop() == 0, second.log_tail()
    assert processes_mentioning(str(state)) == []
