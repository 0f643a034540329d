"""Settings export, import (and its preview) and reset: Figranium's ZIP, secrets sealed.

A stack of its own: reset and import change every task and setting, which the shared
stack's other tests rely on.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from figranium_common.redact import SECRET_MASK
from figranium_devstack.postgres import LocalPostgres
from tests.integration.stack import API_KEY, Stack, count_rows, fetch_rows, own_stack

PASSPHRASE = "correct horse battery staple"
SECRET = "hunter2-task-secret"
PROXY_PASSWORD = "proxy-pass-secret-1"


@pytest.fixture(scope="module")
def backup_stack(
    tmp_path_factory: pytest.TempPathFactory, postgres: LocalPostgres
) -> Iterator[tuple[Stack, httpx.Client]]:
    with own_stack(tmp_path_factory.mktemp("backup"), postgres) as stack:
        _, client = stack.start_gateway()
        yield stack, client


@pytest.fixture
def client(backup_stack: tuple[Stack, httpx.Client]) -> httpx.Client:
    """The gateway, emptied by a reset first."""
    api = backup_stack[1]
    answer = api.post("/api/settings/reset", json={"confirm": "RESET"})
    assert answer.status_code == 200, answer.text
    return api


@pytest.fixture
def db(backup_stack: tuple[Stack, httpx.Client]) -> str:
    return backup_stack[0].env["DATABASE_URL"]


def _zip(files: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, value in files.items():
            zf.writestr(name, value if isinstance(value, bytes) else json.dumps(value))
    return buffer.getvalue()


def _entries(archive: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _import(api: httpx.Client, archive: bytes, path: str = "", **headers: str) -> httpx.Response:
    return api.post(
        f"/api/settings/import{path}",
        content=archive,
        headers={"content-type": "application/zip", **headers},
    )


def _populate(api: httpx.Client) -> str:
    """A task with a secret, a version and a schedule; a proxy with a password; a setting."""
    task = {
        "id": "backup-task",
        "name": "v1",
        "url": "http://127.0.0.1:9/form",
        "variables": {
            "token": {"type": "secret", "value": SECRET},
            "who": {"type": "string", "value": "visible"},
        },
        "actions": [{"type": "type", "selector": "#q", "value": "{$token}"}],
    }
    assert api.post("/api/tasks", json=task).status_code == 200
    assert api.patch("/api/tasks/backup-task", json={"name": "v2"}).status_code == 200
    schedule = {"enabled": True, "cron": "0 5 * * *"}
    assert api.post("/api/schedules/backup-task", json=schedule).status_code == 200
    proxy = {"server": "http://127.0.0.1:3128", "username": "user", "password": PROXY_PASSWORD}
    proxies = api.post("/api/settings/proxies", json=proxy)
    assert proxies.status_code == 200, proxies.text
    finder = api.post("/api/settings/selector-finder", json={"selectorFinder": "ai"})
    assert finder.status_code == 200, finder.text
    return next(str(p["id"]) for p in proxies.json()["proxies"] if p["server"] == proxy["server"])


ALL = {"include": ["tasks", "schedules", "proxies", "settings"]}


def _stored_proxy_password(stack: Stack, db: str) -> str:
    ((value,),) = fetch_rows(db, "SELECT value FROM settings WHERE key = 'proxies'")
    return stack.master_box().open(value[0]["password"], "proxy-password")


def test_sealed_export_leaves_no_secret_in_clear_and_restores_them_exactly(
    backup_stack: tuple[Stack, httpx.Client], client: httpx.Client, db: str
) -> None:
    proxy_id = _populate(client)
    answer = client.post("/api/settings/export", json={**ALL, "passphrase": PASSPHRASE})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/zip"
    assert "figranium-export-" in answer.headers["content-disposition"]
    archive = answer.content
    entries = _entries(archive)
    assert set(entries) == {"manifest.json", "tasks.json", "proxies.json", "settings.json"}
    for raw in entries.values():
        assert SECRET.encode() not in raw and PROXY_PASSWORD.encode() not in raw
    manifest = json.loads(entries["manifest.json"])
    assert manifest["included"] == ALL["include"] and manifest["exportedAt"]
    assert manifest["secrets"]["sealing"] == "passphrase"
    (task,) = json.loads(entries["tasks.json"])
    assert task["schedule"]["cron"] == "0 5 * * *"
    assert [v["snapshot"]["name"] for v in task["versions"]] == ["v1"]
    assert task["variables"]["token"]["value"].startswith("enc:export:v1:")

    client.post("/api/settings/reset", json={"confirm": "RESET"})
    assert count_rows(db, "SELECT count(*) FROM tasks") == 0
    preview = client.post(
        "/api/settings/import/inspect",
        content=archive,
        headers={"X-Figranium-Passphrase": PASSPHRASE},
    )
    assert preview.status_code == 200, preview.text
    changes = preview.json()["changes"]
    assert changes["tasks"]["created"] == ["backup-task"]
    assert changes["schedules"]["created"] == ["backup-task"]
    assert changes["proxies"]["created"] == [proxy_id]
    assert "selector_finder" in changes["settings"]["created"]
    assert count_rows(db, "SELECT count(*) FROM tasks") == 0  # a preview writes nothing

    done = _import(client, archive, **{"X-Figranium-Passphrase": PASSPHRASE})
    assert done.status_code == 200, done.text
    assert done.json()["success"] is True
    ((body,),) = fetch_rows(db, "SELECT body FROM tasks WHERE id = 'backup-task'")
    assert body["variables"]["token"]["value"] == SECRET and body["name"] == "v2"
    assert _stored_proxy_password(backup_stack[0], db) == PROXY_PASSWORD
    assert fetch_rows(db, "SELECT cron, enabled FROM schedules") == [("0 5 * * *", True)]
    versions = client.get("/api/tasks/backup-task/versions").json()["versions"]
    assert [v["name"] for v in versions] == ["v1"]
    assert client.get("/api/settings/selector-finder").json()["selectorFinder"] == "ai"

    again = client.post(
        "/api/settings/import/inspect",
        content=archive,
        headers={"X-Figranium-Passphrase": PASSPHRASE},
    ).json()["changes"]
    for kind in ("tasks", "schedules", "proxies", "settings"):
        assert again[kind]["created"] == again[kind]["updated"] == [], kind


def test_sealed_archive_needs_the_right_passphrase(client: httpx.Client, db: str) -> None:
    _populate(client)
    archive = client.post("/api/settings/export", json={**ALL, "passphrase": PASSPHRASE}).content
    client.post("/api/settings/reset", json={"confirm": "RESET"})
    missing = _import(client, archive)
    assert (missing.status_code, missing.json()["error"]) == (400, "PASSPHRASE_REQUIRED")
    wrong = _import(client, archive, **{"X-Figranium-Passphrase": "not the passphrase!"})
    assert (wrong.status_code, wrong.json()["error"]) == (400, "WRONG_PASSPHRASE")
    assert count_rows(db, "SELECT count(*) FROM tasks") == 0
    short = client.post("/api/settings/export", json={**ALL, "passphrase": "short"})
    assert (short.status_code, short.json()["error"]) == (400, "INVALID_PASSPHRASE")


def test_masked_export_keeps_the_stored_secrets_on_import(
    backup_stack: tuple[Stack, httpx.Client], client: httpx.Client, db: str
) -> None:
    _populate(client)
    archive = client.post("/api/settings/export", json=ALL).content
    entries = _entries(archive)
    assert json.loads(entries["manifest.json"])["secrets"] == {"sealing": "masked"}
    (task,) = json.loads(entries["tasks.json"])
    assert task["variables"]["token"]["value"] == SECRET_MASK
    assert json.loads(entries["proxies.json"])["proxies"][0]["password"] == SECRET_MASK
    client.patch("/api/tasks/backup-task", json={"name": "changed"})

    preview = client.post("/api/settings/import/inspect", content=archive).json()["changes"]
    assert preview["tasks"]["updated"] == ["backup-task"]
    assert preview["proxies"]["created"] == [] and preview["proxies"]["updated"] == []
    assert _import(client, archive).status_code == 200
    ((body,),) = fetch_rows(db, "SELECT body FROM tasks WHERE id = 'backup-task'")
    assert body["name"] == "v2" and body["variables"]["token"]["value"] == SECRET
    assert _stored_proxy_password(backup_stack[0], db) == PROXY_PASSWORD

    # Into an empty server a mask restores nothing: the value is left out, never the mask.
    client.post("/api/settings/reset", json={"confirm": "RESET"})
    assert _import(client, archive).status_code == 200
    ((body,),) = fetch_rows(db, "SELECT body FROM tasks WHERE id = 'backup-task'")
    assert "value" not in body["variables"]["token"]
    ((proxies,),) = fetch_rows(db, "SELECT value FROM settings WHERE key = 'proxies'")
    assert "password" not in proxies[0]


FIGRANIUM_TASK = {
    "id": "task_1700000000000",
    "name": "From Figranium",
    "mode": "agent",
    "url": "http://127.0.0.1:9/",
    "actions": [{"id": "act_1", "type": "wait", "value": "1"}],
    "variables": {"pw": {"type": "secret", "value": "clear-in-figranium"}},
    "schedule": {"enabled": True, "frequency": "daily", "hour": 7, "minute": 30},
    "versions": [
        {
            "id": "ver_1700000000001",
            "timestamp": 1700000000001,
            "snapshot": {"name": "Older", "mode": "agent", "url": "http://127.0.0.1:9/"},
        }
    ],
}


def _figranium_archive(*tasks: dict[str, Any]) -> bytes:
    """An archive as Figranium's POST /api/settings/export writes it."""
    manifest = {
        "exportedAt": "2025-01-02T03:04:05.000Z",
        "included": ["tasks", "executions", "apiKeys"],
    }
    return _zip(
        {
            "tasks.json": list(tasks),
            "executions.json": [],
            "api-keys.json": {"apiKey": "figranium-key-0123456789abcdef"},
            "manifest.json": manifest,
        }
    )


def test_figranium_export_imports_tasks_versions_and_schedules(
    client: httpx.Client, db: str
) -> None:
    archive = _figranium_archive(FIGRANIUM_TASK)
    preview = client.post("/api/settings/import/inspect", content=archive)
    assert preview.status_code == 200, preview.text
    seen = preview.json()
    assert seen["available"] == ["tasks", "schedules"]
    assert seen["unsupported"] == ["executions", "apiKeys"]
    assert seen["exportedAt"] == "2025-01-02T03:04:05.000Z" and seen["sealed"] is False
    assert seen["changes"]["tasks"]["created"] == ["task_1700000000000"]

    done = _import(client, archive)
    assert done.status_code == 200, done.text
    assert done.json()["imported"] == ["tasks", "schedules"]
    task = client.get("/api/tasks/task_1700000000000").json()
    assert task["name"] == "From Figranium" and task["schedule"]["enabled"] is True
    assert fetch_rows(db, "SELECT cron FROM schedules") == [("30 7 * * *",)]
    versions = client.get("/api/tasks/task_1700000000000/versions").json()["versions"]
    assert [(v["id"], v["timestamp"]) for v in versions] == [("ver_1700000000001", 1700000000001)]
    # Figranium's API key is not taken: this server's key still opens every route.
    assert client.get("/api/tasks").status_code == 200

    only_tasks = _import(client, archive, "?include=tasks")
    assert only_tasks.json()["imported"] == ["tasks"]


def _many_entries() -> bytes:
    manifest = {"exportedAt": None, "included": []}
    return _zip({"manifest.json": manifest, **{f"captures/{i}.png": b"x" for i in range(2001)}})


def _bomb() -> bytes:
    manifest = {"exportedAt": None, "included": ["tasks"]}
    return _zip({"manifest.json": manifest, "tasks.json": b" " * (8 * 1024 * 1024)})


BAD_ARCHIVES = {
    "not a zip": (b"PK\x03\x04 but not really a zip", "INVALID_FIGRANIUM_EXPORT"),
    "empty": (b"", "IMPORT_FILE_REQUIRED"),
    "no manifest": (_zip({"tasks.json": []}), "INVALID_FIGRANIUM_EXPORT"),
    "unsafe name": (
        _zip({"manifest.json": {"included": []}, "../evil.json": {}}),
        "ARCHIVE_UNSAFE_NAME",
    ),
    "absolute name": (
        _zip({"manifest.json": {"included": []}, "/etc/evil": {}}),
        "ARCHIVE_UNSAFE_NAME",
    ),
    "zip bomb": (_bomb(), "ARCHIVE_BOMB"),
    "too many entries": (_many_entries(), "ARCHIVE_TOO_MANY_ENTRIES"),
    "too large": (b"PK" + b"\0" * (32 * 1024 * 1024 + 1), "ARCHIVE_TOO_LARGE"),
    "tasks.json missing": (
        _zip({"manifest.json": {"included": ["tasks"]}}),
        "INVALID_FIGRANIUM_EXPORT",
    ),
    "not JSON": (
        _zip({"manifest.json": {"included": ["tasks"]}, "tasks.json": b"[{"}),
        "INVALID_FIGRANIUM_EXPORT",
    ),
    "invalid task": (
        _figranium_archive({"id": "ok-task", "name": "fine"}, {"id": "bad", "actions": 5}),
        "INVALID_ARCHIVE_TASK",
    ),
    "invalid schedule": (
        _figranium_archive({"id": "ok-task", "schedule": {"enabled": True, "cron": "nope"}}),
        "INVALID_SCHEDULE",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ARCHIVES))
def test_bad_archives_are_refused_and_change_nothing(
    client: httpx.Client, db: str, case: str
) -> None:
    archive, code = BAD_ARCHIVES[case]
    for path in ("/inspect", ""):
        answer = _import(client, archive, path)
        assert (answer.status_code, answer.json()["error"]) == (400, code), answer.text
        assert answer.json()["details"]
    assert count_rows(db, "SELECT count(*) FROM tasks") == 0


def test_export_needs_a_selection(client: httpx.Client) -> None:
    for body in ({}, {"include": []}, {"include": ["executions", "cookies"]}):
        answer = client.post("/api/settings/export", json=body)
        assert (answer.status_code, answer.json()["error"]) == (400, "EXPORT_SELECTION_REQUIRED")
    alone = client.post("/api/settings/export", json={"include": ["schedules"]})
    assert (alone.status_code, alone.json()["error"]) == (400, "EXPORT_SELECTION_INVALID")


def test_reset_needs_a_confirmation_and_keeps_the_api_key(client: httpx.Client, db: str) -> None:
    _populate(client)
    for body, status, code in (
        ({}, 400, "CONFIRMATION_REQUIRED"),
        ({"confirm": "yes"}, 400, "CONFIRMATION_REQUIRED"),
        ({"currentPassword": "not-the-key"}, 401, "INVALID_CURRENT_PASSWORD"),
    ):
        answer = client.post("/api/settings/reset", json=body)
        assert (answer.status_code, answer.json()["error"]) == (status, code)
    assert count_rows(db, "SELECT count(*) FROM tasks") == 1

    answer = client.post("/api/settings/reset", json={"currentPassword": API_KEY})
    assert answer.status_code == 200, answer.text
    assert answer.json()["removed"]["tasks"] == 1
    assert "proxies" in answer.json()["removed"]["settings"]
    assert count_rows(db, "SELECT count(*) FROM tasks") == 0
    assert count_rows(db, "SELECT count(*) FROM schedules") == 0
    assert count_rows(db, "SELECT count(*) FROM task_versions") == 0
    left = client.get("/api/settings/proxies").json()["proxies"]
    assert [p["id"] for p in left] == ["host"]  # Figranium's "no proxy" entry, not stored
    assert client.get("/api/settings/selector-finder").json()["selectorFinder"] == "highlight"
    assert client.get("/api/tasks").status_code == 200  # the API key still works
    webhook_secret = "SELECT count(*) FROM settings WHERE key = 'webhook_secret'"
    assert count_rows(db, webhook_secret) == 1


def test_the_archive_format_needs_no_web_server() -> None:
    """A command-line client reads and writes archives without aiohttp."""
    code = (
        "import sys, figranium_gateway.backup.archive, figranium_gateway.backup.sealing;"
        "sys.exit('aiohttp' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
