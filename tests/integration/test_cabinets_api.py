"""The cabinet API (Figranium's routes plus our upload) on the shared stack: cabinets,
items, bytes in and out of the cabinets bucket, deletes that leave no objects behind,
retention, and quotas on a small stack of their own."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from figranium_common.cabinet_models import item_object
from figranium_devstack.postgres import LocalPostgres
from tests.integration.cabinet_helpers import (
    items,
    new_cabinet,
    object_names,
    put_object,
    retention_round,
    upload,
)
from tests.integration.stack import Stack, fetch_rows, own_stack

_ID = re.compile(r"^(cab|item)_[0-9a-f]{20}$")


def _env(stack: tuple[Stack, httpx.Client], name: str) -> str:
    return stack[0].env[name]


def _cabinet(api: httpx.Client, cabinet_id: str) -> dict[str, object]:
    listed = api.get("/api/cabinets").json()["cabinets"]
    return next(c for c in listed if c["id"] == cabinet_id)


def test_default_cabinet_exists_from_the_start(api: httpx.Client) -> None:
    answer = api.get("/api/cabinets")
    assert answer.status_code == 200
    body = answer.json()
    assert body["defaultCabinetId"] == "cab_basic"
    basic = next(c for c in body["cabinets"] if c["id"] == "cab_basic")
    assert basic["name"] == "Basic Cabinet"
    assert basic["isDefault"] is True
    assert [c["id"] for c in body["cabinets"] if c["isDefault"]] == ["cab_basic"]


def test_create_and_rename_with_unique_names(api: httpx.Client) -> None:
    name = f"Invoices {uuid.uuid4().hex[:8]}"
    created = api.post("/api/cabinets", json={"name": f"  {name}  "})
    assert created.status_code == 201
    cabinet = created.json()
    assert _ID.fullmatch(cabinet["id"]) and cabinet["id"].startswith("cab_")
    assert cabinet["name"] == name
    assert cabinet["isDefault"] is False
    assert (cabinet["itemCount"], cabinet["unuploadedCount"]) == (0, 0)
    assert isinstance(cabinet["createdAt"], int)

    taken = api.post("/api/cabinets", json={"name": name.upper()})
    assert (taken.status_code, taken.json()["error"]) == (400, "CABINET_NAME_TAKEN")
    for bad in ({"name": "   "}, {}, {"name": 5}):
        refused = api.post("/api/cabinets", json=bad)
        assert (refused.status_code, refused.json()["error"]) == (400, "INVALID_BODY"), bad
    long = api.post("/api/cabinets", json={"name": "L" * 79 + uuid.uuid4().hex})
    assert long.status_code == 201 and len(long.json()["name"]) == 80

    renamed = api.patch(f"/api/cabinets/{cabinet['id']}", json={"name": f"{name} 2024"})
    assert renamed.status_code == 200 and renamed.json()["name"] == f"{name} 2024"
    clash = api.patch(f"/api/cabinets/{cabinet['id']}", json={"name": "basic cabinet"})
    assert (clash.status_code, clash.json()["error"]) == (400, "CABINET_NAME_TAKEN")
    missing = api.patch("/api/cabinets/cab_00000000000000000000", json={"name": "x"})
    assert (missing.status_code, missing.json()["error"]) == (404, "CABINET_NOT_FOUND")


def test_upload_download_round_trip_and_unique_names(
    stack: tuple[Stack, httpx.Client], api: httpx.Client
) -> None:
    cabinet_id = new_cabinet(api)
    data = os.urandom(300_000)  # several object store chunks
    item = upload(api, cabinet_id, "report.csv", data).json()
    assert _ID.fullmatch(item["id"]) and item["id"].startswith("item_")
    assert item["name"] == "report.csv" and item["kind"] == "file"
    assert item["status"] == "unuploaded" and item["size"] == len(data)
    assert item["sha256"] == hashlib.sha256(data).hexdigest()
    assert item["sourceTaskId"] is None and item["sourceRunId"] is None
    assert item_object(item["id"]) in object_names(_env(stack, "NATS_URL"))

    download = api.get(f"/api/cabinets/{cabinet_id}/items/{item['id']}/download")
    assert download.status_code == 200
    assert download.content == data
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-disposition"].startswith('attachment; filename="report.csv"')
    assert download.headers["x-content-type-options"] == "nosniff"

    second = upload(api, cabinet_id, "report.csv", b"a,b\n").json()
    third = upload(api, cabinet_id, "REPORT.csv", b"c,d\n").json()
    odd = upload(api, cabinet_id, "../dir/a:b*c?|.html", b"<script>x</script>").json()
    empty = upload(api, cabinet_id, "empty.txt", b"").json()
    assert [second["name"], third["name"]] == ["report (2).csv", "REPORT (3).csv"]
    assert odd["name"] == "a_b_c__.html"
    page = api.get(f"/api/cabinets/{cabinet_id}/items/{odd['id']}/download")
    assert page.headers["content-type"] == "application/octet-stream"
    assert page.headers["content-disposition"].startswith("attachment;")
    assert api.get(f"/api/cabinets/{cabinet_id}/items/{empty['id']}/download").content == b""

    listed = items(api, cabinet_id)
    assert [i["id"] for i in listed] == [
        empty["id"],
        odd["id"],
        third["id"],
        second["id"],
        item["id"],
    ]
    assert _cabinet(api, cabinet_id)["itemCount"] == 5


def test_status_patch_answers_the_items_changed(api: httpx.Client) -> None:
    cabinet_id = new_cabinet(api)
    first = upload(api, cabinet_id, "one.txt", b"1").json()
    second = upload(api, cabinet_id, "two.txt", b"2").json()
    path = f"/api/cabinets/{cabinet_id}/items/status"
    changed = api.patch(path, json={"itemIds": [first["id"], "item_unknown"], "status": "uploaded"})
    assert changed.status_code == 200
    assert [(i["id"], i["status"]) for i in changed.json()["items"]] == [(first["id"], "uploaded")]
    statuses = {i["id"]: i["status"] for i in items(api, cabinet_id)}
    assert statuses == {first["id"]: "uploaded", second["id"]: "unuploaded"}
    assert _cabinet(api, cabinet_id)["unuploadedCount"] == 1

    back = api.patch(path, json={"itemIds": [first["id"]], "status": "unuploaded"})
    assert back.json()["items"][0]["status"] == "unuploaded"
    for bad in (
        {"itemIds": [first["id"]], "status": "done"},
        {"itemIds": first["id"], "status": "uploaded"},
        {"itemIds": [first["id"]]},
    ):
        refused = api.patch(path, json=bad)
        assert (refused.status_code, refused.json()["error"]) == (400, "INVALID_BODY"), bad


def test_delete_and_clear_remove_the_objects(
    stack: tuple[Stack, httpx.Client], api: httpx.Client
) -> None:
    nats_url = _env(stack, "NATS_URL")
    cabinet_id = new_cabinet(api)
    made = [upload(api, cabinet_id, f"f{n}.bin", os.urandom(1000)).json()["id"] for n in range(3)]
    assert {item_object(i) for i in made} <= object_names(nats_url)

    deleted = api.request(
        "DELETE", f"/api/cabinets/{cabinet_id}/items", json={"itemIds": [made[0]]}
    )
    assert deleted.status_code == 200 and deleted.json() == {"success": True}
    remaining = object_names(nats_url)
    assert item_object(made[0]) not in remaining
    assert {item_object(made[1]), item_object(made[2])} <= remaining
    assert [i["id"] for i in items(api, cabinet_id)] == [made[2], made[1]]

    cleared = api.post(f"/api/cabinets/{cabinet_id}/clear")
    assert cleared.status_code == 200 and cleared.json() == {"success": True}
    assert items(api, cabinet_id) == []
    assert not {item_object(i) for i in made} & object_names(nats_url)


def _task_naming(api: httpx.Client, cabinet_id: str) -> str:
    """A task whose downloads go to the cabinet and whose upload takes from it, with a
    version that names it too."""
    task_id = f"task_cab_{uuid.uuid4().hex[:8]}"
    body = {
        "id": task_id,
        "name": "moves files",
        "mode": "agent",
        "url": "http://127.0.0.1:9/",
        "downloadCabinetId": cabinet_id,
        "actions": [
            {"type": "upload", "selector": "#file", "cabinetId": cabinet_id},
            {"type": "upload", "selector": "#other", "cabinetId": "cab_basic"},
        ],
    }
    assert api.post("/api/tasks", json=body).status_code == 200
    assert api.post("/api/tasks?version=true", json={**body, "name": "v2"}).status_code == 200
    return task_id


def _references(database_url: str, task_id: str) -> list[tuple[object, ...]]:
    return fetch_rows(
        database_url,
        "SELECT body->>'downloadCabinetId', body #>> '{actions,0,cabinetId}',"
        " body #>> '{actions,1,cabinetId}' FROM tasks WHERE id = %s"
        " UNION ALL SELECT snapshot->>'downloadCabinetId', snapshot #>> '{actions,0,cabinetId}',"
        " snapshot #>> '{actions,1,cabinetId}' FROM task_versions WHERE task_id = %s",
        (task_id, task_id),
    )


def test_delete_with_migrate_moves_items_and_rewrites_tasks(
    stack: tuple[Stack, httpx.Client], api: httpx.Client
) -> None:
    database_url, nats_url = _env(stack, "DATABASE_URL"), _env(stack, "NATS_URL")
    doomed, target = new_cabinet(api), new_cabinet(api)
    moved = upload(api, doomed, "x.csv", b"from doomed").json()
    kept = upload(api, target, "X.csv", b"already there").json()
    task_id = _task_naming(api, doomed)
    assert len(_references(database_url, task_id)) == 2  # the task and its version

    answer = api.request(
        "DELETE", f"/api/cabinets/{doomed}", json={"targetCabinetId": target, "mode": "migrate"}
    )
    assert answer.status_code == 200
    assert doomed not in {c["id"] for c in answer.json()["cabinets"]}
    assert {(i["id"], i["name"]) for i in items(api, target)} == {
        (kept["id"], "X.csv"),
        (moved["id"], "x (2).csv"),
    }
    download = api.get(f"/api/cabinets/{target}/items/{moved['id']}/download")
    assert download.content == b"from doomed"
    assert item_object(moved["id"]) in object_names(nats_url)
    assert _references(database_url, task_id) == [(target, target, "cab_basic")] * 2
    assert api.get(f"/api/cabinets/{doomed}/items").status_code == 404


def test_delete_without_migrate_deletes_items_and_rewrites_tasks(
    stack: tuple[Stack, httpx.Client], api: httpx.Client
) -> None:
    database_url, nats_url = _env(stack, "DATABASE_URL"), _env(stack, "NATS_URL")
    doomed = new_cabinet(api)
    gone = upload(api, doomed, "gone.txt", b"bye").json()
    task_id = _task_naming(api, doomed)
    answer = api.request("DELETE", f"/api/cabinets/{doomed}", json={"targetCabinetId": "cab_basic"})
    assert answer.status_code == 200
    assert item_object(gone["id"]) not in object_names(nats_url)
    assert (
        fetch_rows(database_url, "SELECT 1 FROM cabinet_items WHERE id = %s", (gone["id"],)) == []
    )
    assert _references(database_url, task_id) == [("cab_basic", "cab_basic", "cab_basic")] * 2


def test_cabinet_deletes_refused(api: httpx.Client) -> None:
    cabinet_id = new_cabinet(api)
    cases = [
        ("cab_basic", {"targetCabinetId": cabinet_id}, 400),
        (cabinet_id, {}, 400),
        (cabinet_id, {"targetCabinetId": cabinet_id}, 400),
        (cabinet_id, {"targetCabinetId": "cab_00000000000000000000"}, 400),
        (cabinet_id, {"targetCabinetId": "cab_basic", "mode": 3}, 400),
        ("cab_00000000000000000000", {"targetCabinetId": "cab_basic"}, 404),
    ]
    for deleted, body, status in cases:
        answer = api.request("DELETE", f"/api/cabinets/{deleted}", json=body)
        assert answer.status_code == status, (deleted, body, answer.text)
        assert set(answer.json()) == {"error", "details"}
    assert cabinet_id in {c["id"] for c in api.get("/api/cabinets").json()["cabinets"]}


def test_unknown_ids_get_404(api: httpx.Client) -> None:
    cabinet_id = new_cabinet(api)
    nobody = "cab_00000000000000000000"
    cases = [
        ("GET", f"/api/cabinets/{nobody}/items", None),
        ("PATCH", f"/api/cabinets/{nobody}/items/status", {"itemIds": [], "status": "uploaded"}),
        ("DELETE", f"/api/cabinets/{nobody}/items", {"itemIds": ["item_x"]}),
        ("POST", f"/api/cabinets/{nobody}/clear", None),
        ("GET", f"/api/cabinets/{cabinet_id}/items/item_00000000000000000000/download", None),
        ("GET", f"/api/cabinets/{nobody}/items/item_00000000000000000000/download", None),
    ]
    for method, path, body in cases:
        answer = api.request(method, path, json=body)
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["error"] in ("CABINET_NOT_FOUND", "ITEM_NOT_FOUND")
    refused = api.post(f"/api/cabinets/{nobody}/items", files={"file": ("a.txt", b"a")})
    assert (refused.status_code, refused.json()["error"]) == (404, "CABINET_NOT_FOUND")


def test_upload_needs_a_multipart_file(api: httpx.Client) -> None:
    cabinet_id = new_cabinet(api)
    path = f"/api/cabinets/{cabinet_id}/items"
    for answer in (
        api.post(path, json={"name": "a.txt"}),
        api.post(path, data={"name": "not a file"}, files={}),
        api.post(path, data={"note": "x"}, files={"file": (None, b"no filename")}),
        api.post(path, content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data"}),
    ):
        assert (answer.status_code, answer.json()["error"]) == (400, "INVALID_BODY"), answer.text
    assert items(api, cabinet_id) == []


def test_unauthenticated_upload_is_refused_before_its_body_is_read(api: httpx.Client) -> None:
    """A 401 arrives while nearly all of a declared 10 GB body is still unsent."""
    cabinet_id = new_cabinet(api)
    port = httpx.URL(str(api.base_url)).port
    head = (
        f"POST /api/cabinets/{cabinet_id}/items HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {10 * 1024**3}\r\n\r\n"
        '--x\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
    )
    with socket.create_connection(("127.0.0.1", port or 80), timeout=10) as sock:
        sock.sendall(head.encode() + b"\0" * 65536)
        status_line = sock.makefile("rb").readline()
    assert status_line.startswith(b"HTTP/1.1 401"), status_line
    assert items(api, cabinet_id) == []


def test_retention_deletes_old_items_and_orphaned_objects(
    stack: tuple[Stack, httpx.Client], api: httpx.Client
) -> None:
    database_url, nats_url = _env(stack, "DATABASE_URL"), _env(stack, "NATS_URL")
    cabinet_id = new_cabinet(api)
    old = upload(api, cabinet_id, "old.txt", b"old").json()
    young = upload(api, cabinet_id, "young.txt", b"young").json()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE cabinet_items SET created_at = now() - interval '3 days' WHERE id = %s",
            (old["id"],),
        )
    orphan = f"items/item_{uuid.uuid4().hex[:20]}"
    put_object(nats_url, orphan, b"no row names me")

    kept = retention_round(database_url, nats_url, days=0, grace=timedelta(hours=1))
    assert (kept.items, kept.orphans) == (0, 0)  # nothing old enough, the orphan is new
    assert orphan in object_names(nats_url)
    assert len(items(api, cabinet_id)) == 2

    done = retention_round(database_url, nats_url, days=2, grace=timedelta(0))
    assert done.items >= 1 and done.orphans >= 1
    names = object_names(nats_url)
    assert orphan not in names and item_object(old["id"]) not in names
    assert item_object(young["id"]) in names
    assert [i["id"] for i in items(api, cabinet_id)] == [young["id"]]


# --- quotas, on a stack of their own with small ones ----------------------------------------

CABINET_MAX = 300_000
TOTAL_MAX = 350_000


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, postgres: LocalPostgres) -> Iterator[Stack]:
    env = {"CABINET_MAX_BYTES": str(CABINET_MAX), "CABINETS_MAX_TOTAL_BYTES": str(TOTAL_MAX)}
    with own_stack(Path(tmp_path_factory.mktemp("cabinet-quotas")), postgres, **env) as stack:
        stack.start_gateway()
        yield stack


def test_quotas_refuse_uploads_and_keep_what_is_there(small: Stack) -> None:
    api = small.clients[0]
    nats_url = small.env["NATS_URL"]
    first, second = new_cabinet(api), new_cabinet(api)
    kept = upload(api, first, "a.bin", os.urandom(200_000)).json()

    refused = upload(api, first, "b.bin", os.urandom(150_000), expect=413).json()
    assert refused["error"] == "CABINET_QUOTA_EXCEEDED"
    assert "CABINET_MAX_BYTES" in refused["details"]
    assert [i["id"] for i in items(api, first)] == [kept["id"]]
    assert object_names(nats_url) == {item_object(kept["id"])}

    upload(api, second, "c.bin", os.urandom(100_000))
    over_total = upload(api, second, "d.bin", os.urandom(100_000), expect=413).json()
    assert over_total["error"] == "CABINET_QUOTA_EXCEEDED"
    assert "CABINETS_MAX_TOTAL_BYTES" in over_total["details"]
    assert len(items(api, second)) == 1 and len(object_names(nats_url)) == 2
    gateway_log = small.services[0].log_text()
    assert gateway_log.count('"cabinets.upload_refused"') == 2
    download = api.get(f"/api/cabinets/{first}/items/{kept['id']}/download")
    assert hashlib.sha256(download.content).hexdigest() == kept["sha256"]
