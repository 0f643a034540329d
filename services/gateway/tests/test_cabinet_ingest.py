"""A run's downloads and uploads stored at ingest, against a real PostgreSQL: once each
under redelivery, in the default cabinet when theirs is gone, refused over a quota."""

from __future__ import annotations

import hashlib
from typing import Any

from figranium_common import db, queue
from figranium_common.cabinet_models import StoredDownload, item_object
from figranium_common.models import DownloadEntry, ResultEvent, RunResult
from figranium_gateway.cabinet_ingest import UNBOUNDED, settle_files
from figranium_gateway.store import executions, recording
from figranium_gateway.store.cabinet_runs import place_downloads
from figranium_gateway.store.cabinets import Quotas

DEFAULT = "cab_basic"


async def _queued(pool: db.Pool, execution_id: str) -> None:
    async with pool.connection() as conn:
        new = queue.NewExecution(execution_id, {"id": "task_1", "name": "t"}, "api")
        assert await executions.create_execution(conn, new)


def _download(item_id: str, cabinet_id: str, name: str = "a.csv") -> StoredDownload:
    return StoredDownload(
        item_id=item_id,
        cabinet_id=cabinet_id,
        name=name,
        url="http://127.0.0.1/a.csv",
        object=item_object(item_id),
        size=3,
        sha256=hashlib.sha256(b"abc").hexdigest(),
    )


def _event(execution_id: str, *downloads: StoredDownload, **fields: Any) -> ResultEvent:
    entries = [
        DownloadEntry(name=d.name, url=d.url, path="", size=d.size, itemId=d.item_id)
        for d in downloads
    ]
    return ResultEvent(
        execution_id=execution_id,
        attempt=1,
        seq=1,
        result=RunResult(outcome="success", downloads=entries),
        duration_ms=1,
        stored_downloads=list(downloads),
        **fields,
    )


async def _rows(pool: db.Pool, query: Any, *params: object) -> list[Any]:
    async with pool.connection() as conn:
        cur = await conn.execute(query, params)
        return list(await cur.fetchall()) if cur.description else []


async def test_downloads_become_items_once_and_uploads_are_marked(pool: db.Pool) -> None:
    await _queued(pool, "exec_cab")
    first, second = _download("item_" + "1" * 20, "cab_gone"), _download("item_" + "2" * 20, "")
    await _rows(
        pool,
        "INSERT INTO cabinet_items (id, cabinet_id, name, kind, size, object)"
        " VALUES ('item_up', %s, 'up.txt', 'file', 1, 'items/item_up')",
        DEFAULT,
    )
    event = _event("exec_cab", first, second, uploaded_items=["item_up", "item_missing"])
    payload = event.model_dump(mode="json")
    settled = await settle_files(pool, event, payload, UNBOUNDED)
    assert settled.doomed == []
    # A cabinet that is gone (or none named): the default one; names made unique there.
    rows = await _rows(
        pool,
        "SELECT id, cabinet_id, name, source_task_id, source_run_id FROM cabinet_items"
        " WHERE id = ANY(%s) ORDER BY id",
        [first.item_id, second.item_id],
    )
    assert [(r["cabinet_id"], r["name"]) for r in rows] == [
        (DEFAULT, "a.csv"),
        (DEFAULT, "a (2).csv"),
    ]
    assert {(r["source_task_id"], r["source_run_id"]) for r in rows} == {("task_1", "exec_cab")}
    entries = settled.event.result.downloads
    assert [e.path for e in entries] == [
        f"/api/cabinets/{DEFAULT}/items/{d.item_id}/download" for d in (first, second)
    ]
    assert payload["result"]["downloads"][0]["cabinetId"] == DEFAULT
    assert "stored_downloads" not in payload
    [up] = await _rows(pool, "SELECT status FROM cabinet_items WHERE id = 'item_up'")
    assert up["status"] == "uploaded"

    # Stored again (a redelivery before the result was recorded): the same items.
    again = await place_downloads(pool, [first, second], UNBOUNDED, "exec_cab")
    assert [p.name for p in again] == ["a.csv", "a (2).csv"]
    count = await _rows(pool, "SELECT count(*) AS n FROM cabinet_items WHERE name LIKE 'a%%'")
    assert count[0]["n"] == 2
    # Once the result is recorded, a redelivered one changes nothing.
    await recording.record_result(pool, settled.event, payload)
    await _rows(pool, "UPDATE cabinet_items SET status = 'unuploaded' WHERE id = 'item_up'")
    redelivered = _event("exec_cab", first, second, uploaded_items=["item_up"])
    later = await settle_files(pool, redelivered, redelivered.model_dump(), Quotas(1, 1))
    assert later.doomed == [] and later.event is redelivered
    [up] = await _rows(pool, "SELECT status FROM cabinet_items WHERE id = 'item_up'")
    assert up["status"] == "unuploaded"


async def test_a_download_over_a_quota_is_refused_and_said(pool: db.Pool) -> None:
    await _queued(pool, "exec_quota")
    kept, refused = (
        _download("item_" + "3" * 20, DEFAULT, "k.csv"),
        _download("item_" + "4" * 20, DEFAULT, "r.csv"),
    )
    used = await _rows(pool, "SELECT COALESCE(sum(size), 0) AS n FROM cabinet_items")
    quotas = Quotas(cabinet=2**40, total=int(used[0]["n"]) + 3)  # room for one of the two
    event = _event("exec_quota", kept, refused)
    settled = await settle_files(pool, event, event.model_dump(mode="json"), quotas)
    assert settled.doomed == [refused.object]
    ok, bad = settled.event.result.downloads
    assert "error" not in (ok.model_extra or {})
    assert "CABINETS_MAX_TOTAL_BYTES" in (bad.model_extra or {})["error"]
    line = settled.event.result.logs[-1]
    assert line.startswith("[DOWNLOAD ERROR] r.csv not kept: the cabinets would pass")
    stored = await _rows(
        pool,
        "SELECT payload->>'line' AS line FROM execution_events WHERE execution_id = %s",
        "exec_quota",
    )
    assert [r["line"] for r in stored] == [line]
    names = await _rows(
        pool, "SELECT name FROM cabinet_items WHERE id = ANY(%s)", [kept.item_id, refused.item_id]
    )
    assert [r["name"] for r in names] == ["k.csv"]
