"""Runs and cabinets on the whole stack: downloads land in the task's cabinet (or the
default one) with their bytes, ``upload`` puts cabinet items into a page's file inputs and
marks them, and a download over a quota is refused at ingest, its object deleted."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Iterator
from typing import Any, LiteralString

import httpx
import nats
import psycopg
import pytest
from nats.js.errors import ObjectNotFoundError

from figranium_common.nats import CABINETS_BUCKET
from tests.integration.cabinet_pages import (
    CSV2_BYTES,
    CSV_BYTES,
    HTML_BYTES,
    CabinetSite,
    serve_cabinet_pages,
)
from tests.integration.stack import Stack, fetch_rows, wait_until

DEFAULT_CABINET = "cab_basic"
ONE_GIB = 1024**3  # CABINET_MAX_BYTES's default


@pytest.fixture(scope="module")
def pages() -> Iterator[CabinetSite]:
    with serve_cabinet_pages() as site:
        yield site


@pytest.fixture
def cabinet(stack: tuple[Stack, httpx.Client]) -> Iterator[str]:
    """A cabinet of the test's own (removed afterwards, with its items' rows)."""
    database = stack[0].env["DATABASE_URL"]
    cabinet_id = f"cab_{secrets.token_hex(10)}"
    _sql(database, "INSERT INTO cabinets (id, name) VALUES (%s, %s)", cabinet_id, cabinet_id)
    yield cabinet_id
    _sql(database, "DELETE FROM cabinet_items WHERE cabinet_id = %s", cabinet_id)
    _sql(database, "DELETE FROM cabinets WHERE id = %s", cabinet_id)


def _sql(database: str, query: LiteralString, *params: object) -> None:
    with psycopg.connect(database) as conn:
        conn.execute(query, params)


def _items(database: str, cabinet_id: str) -> list[dict[str, Any]]:
    rows = fetch_rows(
        database,
        "SELECT id, name, status, size, sha256, object, source_run_id, source_url"
        " FROM cabinet_items WHERE cabinet_id = %s ORDER BY created_at DESC, id DESC",
        (cabinet_id,),
    )
    keys = ("id", "name", "status", "size", "sha256", "object", "source_run_id", "source_url")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def _object(nats_url: str, name: str) -> bytes | None:
    """An object of the cabinets bucket, None when there is none."""

    async def read() -> bytes | None:
        nc = await nats.connect(nats_url)
        try:
            bucket = await nc.jetstream().object_store(CABINETS_BUCKET)
            try:
                return (await bucket.get(name)).data or b""
            except ObjectNotFoundError:
                return None
        finally:
            await nc.close()

    return asyncio.run(read())


def _run(api: httpx.Client, task: dict[str, Any]) -> dict[str, Any]:
    answer = api.post("/agent", json=task, timeout=90)
    assert answer.status_code == 200, answer.text[:2000]
    body: dict[str, Any] = answer.json()
    return body


def _download(pages: CabinetSite, links: list[str], **task: Any) -> dict[str, Any]:
    clicks: list[dict[str, Any]] = [{"type": "click", "selector": link} for link in links]
    return {
        "url": pages.downloads,
        "actions": [*clicks, {"type": "wait_downloads", "value": 20}],
        **task,
    }


def test_downloads_land_in_the_task_cabinet_with_their_bytes_named_uniquely(
    stack: tuple[Stack, httpx.Client], api: httpx.Client, pages: CabinetSite, cabinet: str
) -> None:
    database, nats_url = stack[0].env["DATABASE_URL"], stack[0].env["NATS_URL"]
    body = _run(api, _download(pages, ["#csv", "#csv2"], downloadCabinetId=cabinet))
    assert body["outcome"] == "success", body
    items = _items(database, cabinet)
    # The same suggested name twice: the second is made unique, as Figranium does.
    assert sorted(item["name"] for item in items) == ["report (2).csv", "report.csv"]
    expected = {hashlib.sha256(data).hexdigest() for data in (CSV_BYTES, CSV2_BYTES)}
    assert {item["sha256"] for item in items} == expected
    for item in items:
        data = _object(nats_url, item["object"])
        assert data is not None and hashlib.sha256(data).hexdigest() == item["sha256"]
        assert (item["status"], item["size"]) == ("unuploaded", len(data))
        assert item["source_run_id"] == body["executionId"]
        assert item["source_url"].startswith(pages.base + "/files/report.csv")
    # The run's downloads name their items, as Figranium lists them.
    entries = sorted(body["downloads"], key=lambda d: d["itemId"])
    assert [d["name"] for d in entries] == ["report.csv", "report.csv"]
    for entry, item in zip(entries, sorted(items, key=lambda i: i["id"]), strict=True):
        assert entry["itemId"] == item["id"] and entry["cabinetId"] == cabinet
        assert entry["path"] == f"/api/cabinets/{cabinet}/items/{item['id']}/download"
        assert entry["kind"] == "file" and "error" not in entry
    # Items outlive the execution that made them.
    assert api.delete(f"/api/executions/{body['executionId']}").status_code == 200
    assert [i["id"] for i in _items(database, cabinet)] == [i["id"] for i in items]
    assert all(_object(nats_url, item["object"]) is not None for item in items)

    # Without a downloadCabinetId (or with one naming no cabinet), the default cabinet.
    before = {item["id"] for item in _items(database, DEFAULT_CABINET)}
    body = _run(api, _download(pages, ["#html"], downloadCabinetId="cab_gone"))
    [entry] = body["downloads"]
    assert entry["cabinetId"] == DEFAULT_CABINET
    [item] = [i for i in _items(database, DEFAULT_CABINET) if i["id"] not in before]
    assert item["id"] == entry["itemId"] and item["name"].startswith("page")
    assert _object(nats_url, item["object"]) == HTML_BYTES
    _sql(database, "DELETE FROM cabinet_items WHERE id = %s", item["id"])


def _received(body: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    data = body["data"]
    return {key: json.loads(value or "[]") for key, value in data.items()}


RECEIVED = (
    "return {file: document.querySelector('#received-file').textContent,"
    " files: document.querySelector('#received-files').textContent}"
)


def test_upload_puts_the_latest_item_into_the_input_and_marks_it(
    stack: tuple[Stack, httpx.Client], api: httpx.Client, pages: CabinetSite, cabinet: str
) -> None:
    database = stack[0].env["DATABASE_URL"]
    seeded = _run(api, _download(pages, ["#csv", "#zip", "#csv2"], downloadCabinetId=cabinet))
    assert len(seeded["downloads"]) == 3, seeded
    latest = _items(database, cabinet)[0]  # newest first, as the upload takes them

    body = _run(
        api,
        {
            "url": pages.upload,
            "actions": [
                {
                    "type": "upload",
                    "selector": "#file",
                    "cabinetId": cabinet,
                    "markAsUploaded": True,
                }
            ],
            "extractionScript": RECEIVED,
        },
    )
    assert body["outcome"] == "success", body
    assert _received(body)["file"] == [{"name": latest["name"], "size": latest["size"]}]
    status = {item["id"]: item["status"] for item in _items(database, cabinet)}
    assert status.pop(latest["id"]) == "uploaded"
    assert set(status.values()) == {"unuploaded"}

    # Extensions: a glob on the name, and every match into an input taking several; not
    # marked by the upload itself, but by finalize_uploads.
    csvs = [i for i in _items(database, cabinet) if i["status"] == "unuploaded"]
    csvs = [i for i in csvs if i["name"].endswith(".csv")]
    body = _run(
        api,
        {
            "url": pages.upload,
            "actions": [
                {
                    "type": "upload",
                    "selector": "#files",
                    "cabinetId": cabinet,
                    "value": "*.CSV",
                    "count": "all",
                },
                {"type": "finalize_uploads"},
            ],
            "extractionScript": RECEIVED,
        },
    )
    assert body["outcome"] == "success", body
    received = _received(body)["files"]
    assert received == [{"name": i["name"], "size": i["size"]} for i in csvs]
    assert any("Finalized" in line for line in body["logs"]), body["logs"]
    marked = {latest["id"], *(i["id"] for i in csvs)}
    after = {item["id"]: item["status"] for item in _items(database, cabinet)}
    assert after == {i: "uploaded" if i in marked else "unuploaded" for i in after}


def test_a_download_over_the_cabinet_quota_is_refused_and_its_object_deleted(
    stack: tuple[Stack, httpx.Client], api: httpx.Client, pages: CabinetSite, cabinet: str
) -> None:
    database, nats_url = stack[0].env["DATABASE_URL"], stack[0].env["NATS_URL"]
    # An item that fills the cabinet to CABINET_MAX_BYTES (its bytes need not exist).
    _sql(
        database,
        "INSERT INTO cabinet_items (id, cabinet_id, name, kind, size, object)"
        " VALUES (%s, %s, 'full.bin', 'file', %s, 'items/none')",
        f"item_{secrets.token_hex(10)}",
        cabinet,
        ONE_GIB,
    )
    body = _run(api, _download(pages, ["#csv"], downloadCabinetId=cabinet))
    [entry] = body["downloads"]
    assert "CABINET_MAX_BYTES" in entry["error"], entry
    assert [i["name"] for i in _items(database, cabinet)] == ["full.bin"]  # kept intact
    logs = api.get(f"/api/executions/{body['executionId']}").json()["execution"]["logs"]
    refused = [line for line in logs if line.startswith("[DOWNLOAD ERROR] report.csv not kept")]
    assert len(refused) == 1, logs
    object_name = f"items/{entry['itemId']}"
    wait_until(lambda: _object(nats_url, object_name) is None, 30, "the refused object's deletion")
