"""`make faults` (``python -m faults``): the cluster, the load, the six faults one after
another, a table of figures per fault, and ``faults/results/latest.json``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from faults.cluster import API_KEY, Cluster
from faults.injections import matrix
from faults.load import Load
from faults.phases import Outcome, prepare, run_phase
from faults.receiver import Receiver

RESULTS = Path(__file__).parent / "results" / "latest.json"
SIZES = {"NATS_NODES": "3", "GATEWAYS": "2", "RUNNERS": "2", "SCHEDULERS": "2"}
ROLES = {"nats": 3, "gateway": 2, "runner": 2, "scheduler": 2, "postgres": 1}
COLUMNS = ("fault", "accepted", "finished", "duplicates", "scheduled", "missed_slots",
           "recover_seconds", "slowest_sync_seconds")  # fmt: skip


def table(outcomes: list[Outcome]) -> str:
    rows = [COLUMNS] + [tuple(str(o.row()[c]) for c in COLUMNS) for o in outcomes]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows
    )


def run_suite(workdir: Path, freeze_seconds: float, delay_ms: int) -> list[Outcome]:
    env = {**SIZES, "RUNNER_NULL_DELAY_MS": str(delay_ms), "NATS_PING_INTERVAL_SECONDS": "5"}
    outcomes: list[Outcome] = []
    with Receiver() as receiver, Cluster(workdir / "data", **env) as cluster:
        cluster.wait_ready(ROLES)
        prepare(cluster, receiver)
        base_url = f"http://127.0.0.1:{cluster.port}"
        with Load(base_url, API_KEY, receiver.url) as load:
            since = time.time()
            for fault in matrix(freeze_seconds):
                print(f"fault: {fault.name}", flush=True)
                outcome = run_phase(cluster, load, receiver, fault, since)
                outcomes.append(outcome)
                since = time.time()
                for problem in outcome.problems:
                    print(f"  problem: {problem}", flush=True)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m faults", description=__doc__)
    parser.add_argument("--freeze-seconds", type=float, default=30.0)
    parser.add_argument("--delay-ms", type=int, default=500, help="RUNNER_NULL_DELAY_MS")
    parser.add_argument("--keep", action="store_true", help="keep the data folder and logs")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="figranium-faults-"))
    outcomes = run_suite(workdir, args.freeze_seconds, args.delay_ms)
    print(table(outcomes))
    RESULTS.parent.mkdir(exist_ok=True)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "faults": [o.row() for o in outcomes],
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    failed = [o for o in outcomes if o.problems]
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} faults kept every invariant")
    return 1 if failed else 0
