"""The compact cluster test: `make run` with three NATS nodes (one gateway, runner and
scheduler, the browserless runner), one node frozen with SIGSTOP for a few seconds under
load. Runs keep completing during and after, and every accepted run has exactly one
finished execution with one result, and its webhook one delivery id (faults.checks).
The whole matrix is `make faults` (docs/faults.md)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from faults import checks
from faults.cluster import API_KEY, Cluster
from faults.injections import freeze_nats_node
from faults.load import Load
from faults.phases import prepare, time_to_recover
from faults.receiver import Receiver

pytestmark = pytest.mark.stack  # starts a stack of its own

FREEZE_SECONDS = 5.0
ENV = {
    "NATS_NODES": "3",
    "GATEWAYS": "1",
    "RUNNERS": "1",
    "SCHEDULERS": "1",
    "RUNNER_NULL_DELAY_MS": "200",
    # A frozen node is given up after about 1 s x (1 + 1) rather than minutes.
    "NATS_PING_INTERVAL_SECONDS": "1",
    "NATS_MAX_OUTSTANDING_PINGS": "1",
}


@pytest.mark.timeout(150)
def test_runs_keep_completing_while_a_nats_node_is_frozen(tmp_path: Path) -> None:
    with Receiver() as receiver, Cluster(tmp_path / "data", **ENV) as cluster:
        cluster.wait_ready({"nats": 3, "gateway": 1, "runner": 1, "scheduler": 1})
        prepare(cluster, receiver)
        load = Load(f"http://127.0.0.1:{cluster.port}", API_KEY, receiver.url, sync_threads=1)
        with load:
            time.sleep(2)
            frozen_at = time.time()
            freeze_nats_node(FREEZE_SECONDS)(cluster)
            time_to_recover(cluster, frozen_at)
            thawed_at = time.time()
            time.sleep(2)
        accepted = load.accepted
        ids = [a.execution_id for a in accepted]
        assert any(frozen_at <= a.at <= thawed_at for a in accepted), "nothing accepted meanwhile"
        assert checks.wait_settled(cluster.database_url, ids, 60)
        verdict = checks.Verdict()
        checks.check_runs(cluster.database_url, ids, verdict)
        hooked = [a.execution_id for a in accepted if a.webhook]
        checks.wait_delivered(receiver, hooked, 30)
        checks.check_webhooks(receiver, hooked, verdict)
        assert verdict.problems == []
        assert verdict.finished == len(ids) > 0
        assert max(c.seconds for c in load.sync_calls) < 45
