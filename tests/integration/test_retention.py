"""Old executions and their captures are deleted; deleting executions frees their captures."""

from __future__ import annotations

import time
import uuid

import httpx
import psycopg
import pytest

from tests.integration.captures_helpers import (
    capture_names,
    insert_finished_execution,
    put_captures,
)
from tests.integration.stack import Stack

pytestmark = pytest.mark.stack  # every test here starts services of its own


def _captures_of(client: httpx.Client, run_id: str) -> set[str]:
    response = client.get("/api/data/captures", params={"runId": run_id})
    assert response.status_code == 200, response.text
    return {c["name"] for c in response.json()["captures"]}


def test_old_executions_and_captures_are_deleted(isolated: Stack, site: str) -> None:
    _, client = isolated.start_gateway(RETENTION_INTERVAL_SECONDS="1")
    isolated.start_runner()
    task = {"id": "kept-short", "url": f"{site}/form", "extractionScript": "return 1"}
    assert client.post("/api/tasks", json=task).status_code == 200
    old, new = (client.post("/api/tasks/kept-short/api", json={}).json() for _ in range(2))
    old_id, new_id = old["executionId"], new["executionId"]
    assert _captures_of(client, old_id) and _captures_of(client, new_id)

    with psycopg.connect(isolated.env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "UPDATE executions SET created_at = now() - interval '10 days' WHERE id = %s",
            (old_id,),
        )
        conn.execute(
            "UPDATE execution_changes SET created_at = now() - interval '2 days'"
            " WHERE execution_id = %s",
            (old_id,),
        )
    deadline = time.monotonic() + 20
    while client.get(f"/api/executions/{old_id}").status_code != 404:
        assert time.monotonic() < deadline, "the old execution was never deleted"
        time.sleep(0.2)
    assert _captures_of(client, old_id) == set()
    assert client.get(f"/api/executions/{new_id}").status_code == 200
    assert _captures_of(client, new_id)
    with psycopg.connect(isolated.env["DATABASE_URL"]) as conn:
        row = conn.execute(
            "SELECT count(*) FROM execution_changes WHERE execution_id = %s AND kind <> 'deleted'",
            (old_id,),
        ).fetchone()
    assert row is not None and row[0] == 0  # the stream's change log was pruned too


def test_retention_zero_keeps_everything(isolated: Stack) -> None:
    gateway, client = isolated.start_gateway(RETENTION_DAYS="0", RETENTION_INTERVAL_SECONDS="1")
    insert_finished_execution(isolated.env["DATABASE_URL"], "exec_ancient", days_old=400)
    put_captures(isolated, ["exec_ancient_agent_1.png"])
    time.sleep(2.5)
    assert client.get("/api/executions/exec_ancient").status_code == 200
    assert "exec_ancient_agent_1.png" in capture_names(isolated.env["NATS_URL"])
    assert "retention.disabled" in gateway.log_text()


def test_one_replica_does_each_round(isolated: Stack) -> None:
    gateways = [isolated.start_gateway(RETENTION_INTERVAL_SECONDS="1")[0] for _ in range(3)]

    def rounds() -> int:
        return sum(g.log_text().count('"retention.round"') for g in gateways)

    before = rounds()
    time.sleep(5)
    done = rounds() - before
    # Uncoordinated, three replicas would do about 15 rounds in 5 s; shared, about 5.
    assert 3 <= done <= 7, done


def test_deleting_executions_frees_their_captures(isolated: Stack) -> None:
    _, client = isolated.start_gateway(RETENTION_DAYS="0")
    database_url, nats_url = isolated.env["DATABASE_URL"], isolated.env["NATS_URL"]
    tag = uuid.uuid4().hex[:6]
    one, longer, other = f"run_{tag}", f"run_{tag}_2", f"exec_{tag}"
    for execution_id in (one, longer, other):
        insert_finished_execution(database_url, execution_id)
    put_captures(
        isolated,
        [
            f"{one}_agent_1.png",
            f"{one}_agent_1.webm",
            f"{longer}_agent_1.png",  # shares the prefix "run_<tag>_" but is not one's
            f"{other}_agent_1.png",
            f"{other}_download_a.csv",
        ],
    )

    response = client.delete(f"/api/executions/{one}")
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "capturesRemoved": 2}
    assert capture_names(nats_url) == {
        f"{longer}_agent_1.png",
        f"{other}_agent_1.png",
        f"{other}_download_a.csv",
    }

    # Unfinished executions and their captures survive a clear.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO executions (id, source, phase, task_snapshot)"
            " VALUES ('exec_running', 'api', 'running', '{}')"
        )
    put_captures(isolated, ["exec_running_agent_1.png"])
    cleared = client.post("/api/executions/clear")
    assert cleared.status_code == 200, cleared.text
    assert cleared.json() == {"success": True, "removed": 2, "capturesRemoved": 3}
    assert capture_names(nats_url) == {"exec_running_agent_1.png"}
    assert client.get("/api/executions/exec_running").status_code == 200
