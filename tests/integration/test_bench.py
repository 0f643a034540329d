"""`make bench` end to end, shortened (`--quick`): every figure the issue asks for is
measured and written. Timings are not asserted; benchmarks are not tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench import FIGURES

pytestmark = pytest.mark.stack  # every test here starts services of its own

REPO = Path(__file__).resolve().parents[2]
# What the issue asks latest.json for, at least.
REQUIRED = {"run_overhead_ratio", "throughput_ratio_c4", "throughput_ratio_c8", "gateway_rps"}
REQUIRED |= {"schedule_lateness_p99_s", "runner_rss_idle_mb", "runner_rss_per_slot_mb"}


@pytest.mark.timeout(600)
def test_a_quick_benchmark_writes_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "quick.json"
    argv = [sys.executable, "-m", "benchmarks", "--quick", "--runs", "8", "--output", str(output)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=570)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "throughput c8 (runs/min)" in done.stdout  # the printed table
    results = json.loads(output.read_text())
    assert REQUIRED.issubset(FIGURES)
    missing = [name for name in FIGURES if results.get(name) is None]
    assert not missing, f"not measured: {missing}"
    assert results["run_overhead_ratio"] > 0
    assert results["throughput_ratio_c4"] > 0
    assert results["throughput_ratio_c8"] > 0
    rps = results["gateway_rps"]
    assert rps["health"]["-"]["rps"] > 0
    assert rps["tasks_list"]["1000"]["rps"] > 0
    assert {"1000", "10000"} <= set(rps["executions_limit50"])
    for size in ("1000", "10000"):
        assert rps["executions_limit50"][size]["errors"] == 0
    assert results["machine"]["cpu_count"] >= 1
    # The console's pages, timed by the gateway's Server-Timing at the seeded sizes.
    assert results["console"]["rows"]["executions"] >= 10000
    pages = results["console_page_ms"]
    assert {"tasks", "executions", "execution", "schedules"} <= set(pages)
    assert all(page.get("missing") or page["p99"] >= page["p50"] > 0 for page in pages.values())
    assert results["console_page_worst_p99_ms"] >= pages["tasks"]["p99"]
    assert "console tasks (server ms)" in done.stdout
    assert results["git"]["commit"]
    # The control plane with browserless runners, through 1 and 2 gateways, and per run.
    capacity = results["capacity"]
    for gateways in ("gateways_1", "gateways_2"):
        assert capacity[gateways]["runs_per_s"] > 0
        assert capacity[gateways]["p99_enqueue_to_start_ms"] >= 0
    per_run = capacity["per_run"]
    assert per_run["gateway_cpu_ms"] > 0 and per_run["postgres_cpu_ms"] > 0
    assert per_run["rows_written"] > 0 and per_run["wal_bytes"] > 0
    assert per_run["nats_msgs_in"] > 0 and per_run["stream_bytes"]["RUN_EVENTS"] > 0
    assert "capacity 2 gateway(s) (runs/s)" in done.stdout
