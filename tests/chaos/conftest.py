"""Chaos suite fixtures: the ``chaos`` marker, the platform on its own embedded NATS and PostgreSQL, the figures.

``chaos_run(plan, fault, **env)`` starts ``switchboard up`` with ``env`` on top
of the end-to-end defaults and no SWITCHBOARD_NATS_URL / SWITCHBOARD_DATABASE_URL
(so the embedded servers the faults act on), sets up a slice to a fresh
receiver, runs the scenario, prints its ledger and returns it with the
platform's warnings and errors. Every ledger is summed up at the end of the
session.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections import Counter
from pathlib import Path
from collections.abc import Iterator

import pytest

from tests.chaos.harness import ChaosReceiver
from tests.chaos.ledger import Report
from tests.chaos.scenario import REPORTS, ChaosRun, FaultFactory, Outcome, Plan, chaos_slice, run_scenario
from tests.platform_runner import Platform, base_env

_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")
_IDS = re.compile(r"[0-9a-f]{12,}|\b\d{3,}\b")  # ids, trace ids, pids and ports: one line per kind of trouble
_TROUBLE = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|^[\w.]+(Error|Exception): |died|unavailable", re.IGNORECASE)


def _trouble(output: list[str], limit: int = 40) -> str:
    """The platform's warnings and errors, each kind once (with how often), in order of first sight."""
    first: dict[str, str] = {}
    counts: Counter[str] = Counter()
    for line in output:
        if _TROUBLE.search(line):
            message = _IDS.sub("…", _TIMESTAMP.sub("", line))
            first.setdefault(message, line)
            counts[message] += 1
    return "\n".join(first[m] + (f"  (x{counts[m]})" if counts[m] > 1 else "") for m in list(first)[-limit:])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: fault injection against the real platform (tests/chaos; `make chaos`)")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORTS:
        return
    terminalreporter.section("chaos ledger")
    terminalreporter.write_line("seconds; errwin: sender error window; rec202/recdlv: first 202/delivery after the "
                                "dependency was back; inflt: last in-flight event delivered, after the fault")
    terminalreporter.write_line(Report.header())
    for report in REPORTS:
        terminalreporter.write_line(report.row())


def _stop(platform: Platform) -> None:
    if platform.process is None:
        return
    try:
        platform.stop(timeout=30)
    except subprocess.TimeoutExpired:
        # A platform a fault left wedged: its embedded servers and services die with it (PR_SET_PDEATHSIG).
        platform.process.kill()
        platform.process.wait(10)


@pytest.fixture
def chaos_run(tmp_path: Path) -> Iterator[ChaosRun]:
    started: list[Platform] = []

    def run(plan: Plan, fault: FaultFactory, **env: str) -> Outcome:
        platform = Platform(base_env(tmp_path / plan.name / "state", **env))
        started.append(platform)
        platform.start(timeout=120)
        with ChaosReceiver() as receiver:
            source = chaos_slice(platform, receiver)
            report = asyncio.run(run_scenario(platform, receiver, source, fault(platform, receiver), plan))
        print("\n" + "\n".join(report.lines()), flush=True)
        return Outcome(report, _trouble(platform.output))

    yield run
    for platform in started:
        _stop(platform)
