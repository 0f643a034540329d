"""One fault under load: inject it, time the recovery, let the runs accepted so far settle,
then check the invariants (:mod:`faults.checks`) for them."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from faults import checks
from faults.cluster import Cluster
from faults.injections import Fault
from faults.load import TASK_ID, Load
from faults.receiver import Receiver

SETTLE_TIMEOUT = 180.0
# A webhook whose sender died mid-send waits for its lease (60 s) before it is sent again.
DELIVERY_TIMEOUT = 120.0
RECOVERY_TIMEOUT = 120.0
# A sync call must answer within the run's timeout plus the gateway's margin (20 + 15 s,
# see faults.cluster.BASE_ENV) and some slack for two shared cores.
SYNC_LIMIT = 45.0
# A due minute counts once its fire had time to be stored (checks.check_schedules: 10 s).
DUE_MARGIN_SECONDS = 12.0
SCHEDULE_TASKS = ("faults-cron-1", "faults-cron-2")


@dataclass
class Outcome:
    fault: str
    accepted: int
    finished: int
    duplicates: int
    scheduled: int
    missed_slots: int
    recover_seconds: float
    slowest_sync_seconds: float
    problems: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return asdict(self)


def prepare(cluster: Cluster, receiver: Receiver) -> None:
    """The load's task and the schedules due every minute, each with a webhook."""
    api = cluster.client
    task = {"id": TASK_ID, "name": TASK_ID, "url": "http://127.0.0.1:9/", "actions": []}
    for task_id in (TASK_ID, *SCHEDULE_TASKS):
        answer = api.post("/api/tasks", json={**task, "id": task_id, "name": task_id})
        answer.raise_for_status()
    for task_id in SCHEDULE_TASKS:
        body = {"enabled": True, "cron": "* * * * *", "allowOverlap": True}
        answer = api.post(f"/api/schedules/{task_id}", json={**body, "webhookUrl": receiver.url})
        answer.raise_for_status()


def time_to_recover(cluster: Cluster, since: float) -> float:
    """Seconds from ``since`` until a sync run through PORT succeeds again."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while time.monotonic() < deadline:
        try:
            answer = cluster.client.post(f"/api/tasks/{TASK_ID}/api", json={}, timeout=40)
            if answer.status_code == 200:
                return time.time() - since
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"no sync run succeeded within {RECOVERY_TIMEOUT:g} s")


def hold_past_a_due_minute(started: float) -> None:
    """Keep the phase (and its load) going until the first minute boundary after the
    fault, plus the time its fires need to be stored: every window then holds a due time
    of the every-minute schedules, so a double or lost fire across the fault would show."""
    due = (int(started) // 60 + 1) * 60
    while time.time() < due + DUE_MARGIN_SECONDS:
        time.sleep(0.5)


def run_phase(
    cluster: Cluster, load: Load, receiver: Receiver, fault: Fault, since: float
) -> Outcome:
    """``fault`` now; the checks cover what was accepted after ``since`` (the end of the
    previous phase) up to the end of this one."""
    started = time.time()
    fault.inject(cluster)
    recover = time_to_recover(cluster, started)
    time.sleep(2)  # a little load after the recovery belongs to this phase too
    hold_past_a_due_minute(started)
    ended = time.time()
    accepted = [a for a in load.accepted_until(ended) if a.at > since]
    ids = [a.execution_id for a in accepted]
    verdict = checks.Verdict()
    if not checks.wait_settled(cluster.database_url, ids, SETTLE_TIMEOUT):
        verdict.problems.append(f"runs still unfinished after {SETTLE_TIMEOUT:g} s")
    checks.check_runs(cluster.database_url, ids, verdict)
    hooked = [a.execution_id for a in accepted if a.webhook]
    checks.wait_delivered(receiver, hooked, DELIVERY_TIMEOUT)
    checks.check_webhooks(receiver, hooked, verdict)
    checks.check_schedules(
        cluster.database_url,
        list(SCHEDULE_TASKS),
        checks.utc(since),
        checks.utc(ended),
        verdict,
    )
    calls = load.sync_between(since, ended)
    slowest = max((c.seconds for c in calls), default=0.0)
    if slowest > SYNC_LIMIT:
        verdict.problems.append(f"a sync call took {slowest:.1f} s (limit {SYNC_LIMIT:g} s)")
    return Outcome(
        fault.name,
        verdict.accepted,
        verdict.finished,
        verdict.duplicates,
        verdict.scheduled,
        verdict.missed,
        round(recover, 1),
        round(slowest, 1),
        verdict.problems,
    )
