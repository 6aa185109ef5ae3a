"""Classifications per second of the ``local`` AI provider, on one core.

Loops over the corpora of tests/fixtures/ai (corpus_train.jsonl,
corpus_holdout.jsonl and labelled_events.jsonl: every provider, short chat
messages to full GitHub payloads) for about BENCH_SECONDS (default 3) through
``LocalProvider.complete`` — the call the AI service makes — and prints the
rate, the CPU time per classification (the process's, so what another
process takes of the core does not count), the latency percentiles, and the
time a 1 MB payload takes. No server, no network.

    .venv/bin/python -m tests.bench.ai_local_bench
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from pathlib import Path

from plugins.ai.local import DEFAULT_CATEGORIES, LocalProvider
from plugins.ai.spec import AIRequest, EventInput

SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
FIXTURES = Path(__file__).parents[1] / "fixtures" / "ai"
CORPORA = ("corpus_train.jsonl", "corpus_holdout.jsonl", "labelled_events.jsonl")


def _requests() -> list[AIRequest]:
    rows = [json.loads(line) for name in CORPORA for line in (FIXTURES / name).read_text().splitlines()
            if line.strip()]
    return [AIRequest("classify", "", "", None, event=EventInput("ten_bench", r["source_type"], r["event_type"],
                                                                 r["payload"], r["text"]),
                      categories=DEFAULT_CATEGORIES) for r in rows]


async def _run(provider: LocalProvider, requests: list[AIRequest], seconds: float) -> list[float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for request in requests:
            started = time.perf_counter()
            await provider.complete(request)
            latencies.append(time.perf_counter() - started)
    return latencies


def _big_request() -> tuple[AIRequest, int]:
    payload = {"items": [{"id": f"it_{i}", "note": "lorem ipsum dolor sit amet " * 20, "n": {"x": i}}
                         for i in range(900)], "blob": "x" * 500_000}
    size = len(json.dumps(payload))
    return AIRequest("classify", "", "", None, event=EventInput("ten_bench", "api", "bulk.import", payload,
                                                                "lorem " * 2000)), size


def main() -> None:
    provider = LocalProvider()
    requests = _requests()
    asyncio.run(_run(provider, requests, 0.3))  # warm-up
    started, cpu_started = time.perf_counter(), time.process_time()
    latencies = asyncio.run(_run(provider, requests, SECONDS))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    big, size = _big_request()
    big_times = []
    for _ in range(20):
        t0 = time.perf_counter()
        asyncio.run(provider.complete(big))
        big_times.append(time.perf_counter() - t0)
    q = statistics.quantiles(latencies, n=100)
    print(f"\nlocal AI provider: classify, {len(requests)} labelled events looped for {elapsed:.1f} s, one core")
    print(f"{'classifications':>16}{'per s':>10}{'CPU µs':>10}{'p50 µs':>10}{'p99 µs':>10}{'max µs':>10}")
    print(f"{len(latencies):>16}{len(latencies) / elapsed:>10.0f}{cpu / len(latencies) * 1e6:>10.0f}"
          f"{q[49] * 1e6:>10.0f}{q[98] * 1e6:>10.0f}{max(latencies) * 1e6:>10.0f}")
    print(f"one {size / 1e6:.1f} MB payload: median {statistics.median(big_times) * 1000:.1f} ms over 20 runs")


if __name__ == "__main__":
    main()
