"""The official SDK's sync and async clients on every ``cabinets.*`` method and on
``captures.screenshots``, ``captures.delete`` and ``captures.clear``, against the shared
stack.

Items come from a run that clicks download links on local pages and from the multipart
upload route (``POST /api/cabinets/:id/items``). Each test runs once per client, in its own
cabinets, so that the default cabinet other tests use keeps its items.
"""

from __future__ import annotations

import hashlib
import io
import re
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.cabinet_helpers import upload
from tests.integration.cabinet_pages import (
    CSV2_BYTES,
    CSV_BYTES,
    HTML_BYTES,
    ZIP_BYTES,
    ZIP_MEMBERS,
    CabinetSite,
    serve_cabinet_pages,
)
from tests.integration.sdk_clients import CLIENTS, Sdk, open_sdk
from tests.integration.sdk_clients import answer as _answer
from tests.integration.sdk_clients import refused as _refused
from tests.integration.stack import wait_until

sdk = pytest.fixture(params=CLIENTS)(open_sdk)

CABINET_ID = re.compile(r"cab_[0-9a-f]{20}")
ITEM_ID = re.compile(r"item_[0-9a-f]{20}")
CABINET_FIELDS = {"id", "name", "createdAt", "isDefault", "itemCount", "unuploadedCount"}
ITEM_FIELDS = {
    "id",
    "name",
    "kind",
    "status",
    "size",
    "createdAt",
    "sourceTaskId",
    "sourceRunId",
    "sha256",
}


@pytest.fixture(scope="module")
def pages() -> Iterator[CabinetSite]:
    with serve_cabinet_pages() as site:
        yield site


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _new_cabinet(sdk: Sdk, label: str) -> dict[str, Any]:
    """A new cabinet named after ``label`` and a random suffix."""
    cabinet: dict[str, Any] = await _answer(sdk.cabinets.create(f"{label} {uuid.uuid4().hex[:8]}"))
    return cabinet


async def _items(sdk: Sdk, cabinet_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await _answer(sdk.cabinets.list_items(cabinet_id)))["items"]
    return items


async def _cabinet(sdk: Sdk, cabinet_id: str) -> dict[str, Any] | None:
    """The cabinet as ``cabinets.list`` shows it, or None."""
    listed = (await _answer(sdk.cabinets.list()))["cabinets"]
    return next((c for c in listed if c["id"] == cabinet_id), None)


def _upload(api: httpx.Client, cabinet_id: str, files: dict[str, bytes]) -> None:
    """``files`` (name to bytes) sent to the multipart upload route, one request each, in
    order (so the last is the newest item)."""
    for name, data in files.items():
        item = upload(api, cabinet_id, name, data).json()
        assert (item["kind"], item["size"], item["sha256"]) == ("file", len(data), _sha256(data))


def _fetch(api: httpx.Client, url: str) -> httpx.Response:
    """A download URL fetched with the API key, as an attachment that is never sniffed."""
    response = api.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"].startswith("attachment"), response.headers
    assert response.headers["x-content-type-options"] == "nosniff"
    return response


def _status(url: str, client: httpx.Client | None = None) -> int:
    """The status a GET of ``url`` answers, with ``client``'s API key or with none."""
    return (client.get(url) if client else httpx.get(url)).status_code


def _task_of(url: str, actions: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """A new agent task (random id) on ``url`` doing ``actions``, with ``fields`` added."""
    task_id = f"cab_sdk_{uuid.uuid4().hex[:10]}"
    return {
        "id": task_id,
        "name": task_id,
        "url": url,
        "mode": "agent",
        "actions": actions,
        **fields,
    }


async def _run(sdk: Sdk, task: dict[str, Any]) -> dict[str, Any]:
    """The result of saving ``task`` and running it once."""
    await _answer(sdk.tasks.save(task))
    run: dict[str, Any] = await _answer(sdk.run_task(task["id"], {"variables": {}}))
    return run


def _by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


async def test_cabinets_are_listed_created_and_renamed(sdk: Sdk) -> None:
    listed = await _answer(sdk.cabinets.list())
    default_id = listed["defaultCabinetId"]
    assert [c["id"] for c in listed["cabinets"] if c["isDefault"]] == [default_id]
    for cabinet in listed["cabinets"]:
        assert set(cabinet) >= CABINET_FIELDS, cabinet

    created = await _new_cabinet(sdk, "Invoices")
    assert CABINET_ID.fullmatch(created["id"]), created
    assert created["name"].startswith("Invoices ")
    assert (created["isDefault"], created["itemCount"], created["unuploadedCount"]) == (
        False,
        0,
        0,
    )
    assert isinstance(created["createdAt"], int)
    assert await _cabinet(sdk, created["id"]) == created

    taken = await _refused(lambda: sdk.cabinets.create(created["name"].upper()))
    assert (taken.status, taken.code) == (400, "CABINET_NAME_TAKEN")

    new_name = f"Renamed {uuid.uuid4().hex[:8]}"
    renamed = await _answer(sdk.cabinets.rename(created["id"], new_name))
    assert renamed == {**created, "name": new_name}
    assert (await _cabinet(sdk, created["id"]) or {})["name"] == new_name

    missing = await _refused(lambda: sdk.cabinets.rename("cab_" + "0" * 20, "x"))
    assert missing.status == 404
    blank = await _refused(lambda: sdk.cabinets.rename(created["id"], "  "))
    assert blank.status == 400
    unknown = await _refused(lambda: sdk.cabinets.list_items("cab_" + "0" * 20))
    assert unknown.status == 404


async def test_downloads_of_a_run_land_in_its_cabinet(
    sdk: Sdk, pages: CabinetSite, api: httpx.Client
) -> None:
    cabinet = await _new_cabinet(sdk, "Downloads")
    clicks = [{"type": "click", "selector": f"#{link}"} for link in ("csv", "csv2", "zip", "html")]
    actions: list[dict[str, Any]] = [*clicks, {"type": "wait_downloads", "value": 10}]
    task = _task_of(pages.downloads, actions, downloadCabinetId=cabinet["id"])
    task_id = task["id"]
    run = await _run(sdk, task)
    assert run["outcome"] == "success", run.get("logs")
    expected = {
        "report.csv": CSV_BYTES,
        "report (2).csv": CSV2_BYTES,
        "export.zip": ZIP_BYTES,
        "page.html": HTML_BYTES,
    }
    downloads = run["downloads"]
    assert sorted(d["size"] for d in downloads) == sorted(len(b) for b in expected.values())
    assert {d["cabinetId"] for d in downloads} == {cabinet["id"]}
    assert {d["kind"] for d in downloads} == {"file"}

    items = await _items(sdk, cabinet["id"])
    assert [i["createdAt"] for i in items] == sorted((i["createdAt"] for i in items), reverse=True)
    named = _by_name(items)
    assert set(named) == set(expected), items
    assert {d["itemId"] for d in downloads} == {i["id"] for i in items}
    for name, data in expected.items():
        item = named[name]
        assert set(item) >= ITEM_FIELDS, item
        assert ITEM_ID.fullmatch(item["id"]), item
        assert (item["kind"], item["status"], item["size"], item["sha256"]) == (
            "file",
            "unuploaded",
            len(data),
            _sha256(data),
        )
        assert (item["sourceTaskId"], item["sourceRunId"]) == (task_id, run["executionId"])
        url = sdk.cabinets.get_item_download_url(cabinet["id"], item["id"])
        assert url.startswith(str(api.base_url))
        assert _fetch(api, url).content == data
    assert _status(url) == 401, "a download needs the API key"
    listed = await _cabinet(sdk, cabinet["id"]) or {}
    assert (listed["itemCount"], listed["unuploadedCount"]) == (4, 4)


async def test_uploaded_items_change_status_and_are_removed(sdk: Sdk, api: httpx.Client) -> None:
    cabinet = await _new_cabinet(sdk, "Uploads")
    _upload(api, cabinet["id"], {"notes.txt": b"first\n", "report.csv": CSV_BYTES})
    _upload(api, cabinet["id"], {"report.csv": CSV2_BYTES})
    named = _by_name(await _items(sdk, cabinet["id"]))
    assert set(named) == {"notes.txt", "report.csv", "report (2).csv"}
    assert named["report (2).csv"]["sha256"] == _sha256(CSV2_BYTES)
    notes, csv = named["notes.txt"], named["report.csv"]

    changed = await _answer(
        sdk.cabinets.set_item_status(cabinet["id"], [notes["id"], csv["id"]], "uploaded")
    )
    assert {(i["id"], i["status"]) for i in changed["items"]} == {
        (notes["id"], "uploaded"),
        (csv["id"], "uploaded"),
    }
    listed = await _cabinet(sdk, cabinet["id"]) or {}
    assert (listed["itemCount"], listed["unuploadedCount"]) == (3, 1)
    back = await _answer(sdk.cabinets.set_item_status(cabinet["id"], [csv["id"]], "unuploaded"))
    assert [(i["id"], i["status"]) for i in back["items"]] == [(csv["id"], "unuploaded")]
    bad = await _refused(
        lambda: sdk.cabinets.set_item_status(cabinet["id"], [csv["id"]], "lost")  # type: ignore[arg-type]
    )
    assert bad.status == 400

    removed = await _answer(sdk.cabinets.remove_items(cabinet["id"], [notes["id"]]))
    assert removed == {"success": True}
    assert set(_by_name(await _items(sdk, cabinet["id"]))) == {"report.csv", "report (2).csv"}
    gone = sdk.cabinets.get_item_download_url(cabinet["id"], notes["id"])
    assert _status(gone, api) == 404

    cleared = await _answer(sdk.cabinets.clear(cabinet["id"]))
    assert cleared == {"success": True}
    assert await _items(sdk, cabinet["id"]) == []


async def test_zip_unzip_and_folder_download(sdk: Sdk, api: httpx.Client) -> None:
    cabinet = await _new_cabinet(sdk, "Archives")
    files = {"report.csv": CSV_BYTES, "page.html": HTML_BYTES, "export.zip": ZIP_BYTES}
    _upload(api, cabinet["id"], files)
    named = _by_name(await _items(sdk, cabinet["id"]))

    chosen = [named["report.csv"]["id"], named["page.html"]["id"]]
    bundle = await _answer(sdk.cabinets.zip_items(cabinet["id"], chosen, "bundle.zip"))
    assert (bundle["name"], bundle["kind"], bundle["status"]) == (
        "bundle.zip",
        "file",
        "unuploaded",
    )
    assert ITEM_ID.fullmatch(bundle["id"]), bundle
    assert set(_by_name(await _items(sdk, cabinet["id"]))) == {"bundle.zip", "export.zip"}
    zipped = _fetch(api, sdk.cabinets.get_item_download_url(cabinet["id"], bundle["id"]))
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
        assert {n: archive.read(n) for n in archive.namelist()} == {
            "report.csv": CSV_BYTES,
            "page.html": HTML_BYTES,
        }

    folder = await _answer(sdk.cabinets.unzip_item(cabinet["id"], named["export.zip"]["id"]))
    assert (folder["name"], folder["kind"]) == ("export", "folder")
    assert folder["size"] == sum(len(b) for b in ZIP_MEMBERS.values())
    assert set(_by_name(await _items(sdk, cabinet["id"]))) == {"bundle.zip", "export"}
    served = _fetch(api, sdk.cabinets.get_item_download_url(cabinet["id"], folder["id"]))
    assert "export.zip" in served.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(served.content)) as archive:
        files_in = {n: archive.read(n) for n in archive.namelist() if not n.endswith("/")}
    assert sorted(files_in.values()) == sorted(ZIP_MEMBERS.values())
    for member, data in ZIP_MEMBERS.items():
        assert any(n.endswith(member) and d == data for n, d in files_in.items()), files_in

    not_a_zip = await _refused(lambda: sdk.cabinets.unzip_item(cabinet["id"], folder["id"]))
    assert not_a_zip.status == 400
    nothing = await _refused(lambda: sdk.cabinets.zip_items(cabinet["id"], []))
    assert nothing.status == 400
    unknown = await _refused(lambda: sdk.cabinets.unzip_item(cabinet["id"], "item_" + "0" * 20))
    assert unknown.status == 404


async def _task(sdk: Sdk, task_id: str) -> dict[str, Any]:
    tasks = await _answer(sdk.tasks.list())
    task: dict[str, Any] = next(t for t in tasks if t["id"] == task_id)
    return task


async def test_delete_with_migrate_moves_items_and_rewrites_tasks(
    sdk: Sdk, api: httpx.Client, pages: CabinetSite
) -> None:
    old, new = await _new_cabinet(sdk, "Old"), await _new_cabinet(sdk, "New")
    _upload(api, old["id"], {"report.csv": CSV_BYTES, "notes.txt": b"moved\n"})
    _upload(api, new["id"], {"report.csv": CSV2_BYTES})
    moved = _by_name(await _items(sdk, old["id"]))
    action = {"type": "upload", "selector": "#file", "cabinetId": old["id"]}
    task = _task_of(pages.upload, [action], downloadCabinetId=old["id"])
    task_id = task["id"]
    await _answer(sdk.tasks.save(task))
    await _answer(sdk.tasks.save({**task, "name": "Second state"}, create_version=True))
    (version,) = (await _answer(sdk.tasks.versions(task_id)))["versions"]

    default_id = (await _answer(sdk.cabinets.list()))["defaultCabinetId"]
    no_target = await _refused(lambda: sdk.cabinets.delete(old["id"], migrate=True))
    assert no_target.status == 400
    itself = await _refused(lambda: sdk.cabinets.delete(old["id"], target_cabinet_id=old["id"]))
    assert itself.status == 400
    keep_default = await _refused(
        lambda: sdk.cabinets.delete(default_id, target_cabinet_id=new["id"], migrate=True)
    )
    assert keep_default.status == 400
    unknown = await _refused(
        lambda: sdk.cabinets.delete("cab_" + "0" * 20, target_cabinet_id=new["id"])
    )
    assert unknown.status == 404

    answer = await _answer(
        sdk.cabinets.delete(old["id"], target_cabinet_id=new["id"], migrate=True)
    )
    assert answer["defaultCabinetId"] == default_id
    ids = [c["id"] for c in answer["cabinets"]]
    assert old["id"] not in ids and new["id"] in ids
    assert (await _refused(lambda: sdk.cabinets.list_items(old["id"]))).status == 404

    now = _by_name(await _items(sdk, new["id"]))
    assert set(now) == {"report.csv", "report (2).csv", "notes.txt"}
    assert now["report (2).csv"]["id"] == moved["report.csv"]["id"]
    assert now["notes.txt"]["id"] == moved["notes.txt"]["id"]
    for name, data in (("report (2).csv", CSV_BYTES), ("notes.txt", b"moved\n")):
        url = sdk.cabinets.get_item_download_url(new["id"], now[name]["id"])
        assert _fetch(api, url).content == data

    rewritten = await _task(sdk, task_id)
    assert rewritten["downloadCabinetId"] == new["id"]
    assert rewritten["actions"][0]["cabinetId"] == new["id"]
    snapshot = (await _answer(sdk.tasks.version(task_id, version["id"])))["snapshot"]
    assert snapshot["downloadCabinetId"] == new["id"]
    assert snapshot["actions"][0]["cabinetId"] == new["id"]

    # Without "migrate" the items go with their cabinet.
    doomed = await _answer(sdk.cabinets.delete(new["id"], target_cabinet_id=default_id))
    assert new["id"] not in [c["id"] for c in doomed["cabinets"]]
    default_items = {i["id"] for i in await _items(sdk, default_id)}
    assert not default_items & {i["id"] for i in now.values()}
    for item in now.values():
        url = sdk.cabinets.get_item_download_url(new["id"], item["id"])
        assert _status(url, api) == 404
    assert (await _task(sdk, task_id))["downloadCabinetId"] == default_id


async def test_an_upload_run_fills_the_input_and_marks_the_item(
    sdk: Sdk, api: httpx.Client, pages: CabinetSite
) -> None:
    cabinet = await _new_cabinet(sdk, "To upload")
    _upload(api, cabinet["id"], {"older.csv": CSV2_BYTES})
    _upload(api, cabinet["id"], {"invoice.csv": CSV_BYTES})
    newest = _by_name(await _items(sdk, cabinet["id"]))["invoice.csv"]
    upload = {"type": "upload", "selector": "#file", "cabinetId": cabinet["id"]}
    received = "return document.getElementById('received').textContent"
    task = _task_of(pages.upload, [{**upload, "markAsUploaded": True}], extractionScript=received)
    run = await _run(sdk, task)
    assert run["data"] == f'[{{"name":"invoice.csv","size":{len(CSV_BYTES)}}}]', run["logs"]

    def statuses() -> dict[str, str]:
        answer = api.get(f"/api/cabinets/{cabinet['id']}/items").json()
        return {i["name"]: i["status"] for i in answer["items"]}

    wait_until(
        lambda: statuses() == {"invoice.csv": "uploaded", "older.csv": "unuploaded"},
        30,
        f"{newest['id']} marked uploaded",
    )


async def test_captures_screenshots_delete_and_clear(sdk: Sdk, pages: CabinetSite) -> None:
    task = _task_of(pages.upload, [{"type": "screenshot", "value": "upload-page"}])
    first = (await _run(sdk, task))["executionId"]
    second = (await _answer(sdk.run_task(task["id"], {"variables": {}})))["executionId"]

    async def shots_of(run_id: str) -> list[str]:
        shots = (await _answer(sdk.captures.screenshots()))["screenshots"]
        assert {s["type"] for s in shots} <= {"screenshot"}
        return [s["name"] for s in shots if s["name"].startswith(f"{run_id}_")]

    names = await shots_of(first)
    kept = await shots_of(second)
    assert any("upload-page" in n for n in names), names
    assert any("upload-page" in n for n in kept), kept
    assert await _answer(sdk.captures.delete(names[0])) == {"success": True}
    assert names[0] not in await shots_of(first)
    assert await shots_of(second) == kept
    again = await _refused(lambda: sdk.captures.delete(names[0]))
    assert (again.status, again.code) == (404, "CAPTURE_NOT_FOUND")

    cleared = await _answer(sdk.captures.clear())
    assert cleared["success"] is True
    assert cleared["removed"] >= len(names) - 1 + len(kept)
    assert await shots_of(first) == await shots_of(second) == []
