"""Baserow credentials (sealed at rest, never answered) and the output step pushing rows."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.baserow_fake import BaserowFake, Database
from tests.integration.stack import Stack
from tests.integration.test_bad_input import assert_error

REDACTED = "••••••••"
ROWS_SCRIPT = (
    "return Array.from(document.querySelectorAll('#items li')).map((li, i) =>"
    " ({fruit: li.textContent, position: i + 1, meta: {tag: li.tagName}}))"
)


@pytest.fixture
def baserow() -> Iterator[BaserowFake]:
    with BaserowFake(f"tok-{uuid.uuid4().hex}") as fake:
        yield fake


def _create(api: httpx.Client, fake: BaserowFake, **changes: Any) -> dict[str, Any]:
    body = {
        "name": "  My Baserow  ",
        "provider": "baserow",
        "config": {"baseUrl": f"  {fake.url}/  ", "token": fake.token},
        **changes,
    }
    answer = api.post("/api/credentials", json=body)
    assert answer.status_code == 200, answer.text
    created: dict[str, Any] = answer.json()
    return created


def _databases(api: httpx.Client, credential_id: str) -> httpx.Response:
    return api.get(f"/api/credentials/{credential_id}/proxy/baserow/databases")


def _database_url(stack: tuple[Stack, httpx.Client]) -> str:
    return stack[0].env["DATABASE_URL"]


def _service_logs(stack: tuple[Stack, httpx.Client]) -> str:
    return "".join(service.log_text() for service in stack[0].services)


def test_crud_answers_tokens_redacted(api: httpx.Client, baserow: BaserowFake) -> None:
    created = _create(api, baserow)
    assert re.fullmatch(r"cred_[0-9a-f]{16}", created["id"])
    assert created == {
        "id": created["id"],
        "name": "My Baserow",
        "provider": "baserow",
        "config": {"baseUrl": baserow.url, "token": REDACTED},
    }
    listing = api.get("/api/credentials")
    assert listing.status_code == 200
    assert created in listing.json()
    assert baserow.token not in listing.text

    # The redacted value sent back (as the editor does) keeps the stored token: Baserow,
    # which checks it, still lets the credential in.
    renamed = api.put(
        f"/api/credentials/{created['id']}",
        json={"name": " Renamed ", "config": {"baseUrl": baserow.url, "token": REDACTED}},
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json() == {**created, "name": "Renamed"}
    assert _databases(api, created["id"]).status_code == 200
    assert baserow.requests_to("/all-tables/")[-1].authorization == f"Token {baserow.token}"
    # A new token replaces it (here a wrong one: Baserow's 401 comes back as such) ...
    wrong = api.put(f"/api/credentials/{created['id']}", json={"config": {"token": "nope-123"}})
    assert wrong.json()["config"]["token"] == REDACTED and wrong.json()["name"] == "Renamed"
    assert_error(_databases(api, created["id"]), 401, "BASEROW_ERROR")
    # ... and an empty name or token keeps what is stored.
    api.put(f"/api/credentials/{created['id']}", json={"config": {"token": baserow.token}})
    kept = api.put(f"/api/credentials/{created['id']}", json={"name": " ", "config": {"token": ""}})
    assert kept.status_code == 200 and kept.json()["name"] == "Renamed"
    assert _databases(api, created["id"]).status_code == 200

    assert api.delete(f"/api/credentials/{created['id']}").json() == {"success": True}
    assert created["id"] not in [c["id"] for c in api.get("/api/credentials").json()]
    assert_error(api.delete(f"/api/credentials/{created['id']}"), 404, "CREDENTIAL_NOT_FOUND")
    assert_error(api.put(f"/api/credentials/{created['id']}", json={}), 404, "CREDENTIAL_NOT_FOUND")
    assert_error(_databases(api, created["id"]), 404, "CREDENTIAL_NOT_FOUND")
    assert_error(
        api.get("/api/credentials/cred_%00/proxy/baserow/databases"), 400, "INVALID_REQUEST"
    )


def test_tokens_are_sealed_at_rest_and_never_logged(
    api: httpx.Client, baserow: BaserowFake, stack: tuple[Stack, httpx.Client]
) -> None:
    created = _create(api, baserow)
    api.put(f"/api/credentials/{created['id']}", json={"config": {"token": baserow.token}})
    assert _databases(api, created["id"]).status_code == 200
    with psycopg.connect(_database_url(stack)) as conn:
        row = conn.execute(
            "SELECT config->>'token', row_to_json(c)::text FROM credentials c WHERE id = %s",
            (created["id"],),
        ).fetchone()
    assert row is not None
    sealed, whole_row = row
    assert sealed.startswith("enc:v1:")
    assert baserow.token not in whole_row
    assert baserow.token not in _service_logs(stack)


def _body(name: Any = "n", provider: Any = "baserow", **config: Any) -> dict[str, Any]:
    body = {"name": name, "provider": provider, "config": config or None}
    return {key: value for key, value in body.items() if value is not None}


GOOD = {"baseUrl": "https://baserow.example", "token": "t"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (_body(name=None, **GOOD), "MISSING_FIELDS"),
        (_body(name="  ", **GOOD), "MISSING_FIELDS"),
        (_body(provider=None, **GOOD), "MISSING_FIELDS"),
        (_body(), "MISSING_FIELDS"),
        (_body(provider="airtable", **GOOD), "UNSUPPORTED_PROVIDER"),
        (_body(baseUrl="https://baserow.example"), "MISSING_CONFIG_FIELDS"),
        (_body(token="t", baseUrl=" "), "MISSING_CONFIG_FIELDS"),
        (_body(name=5, **GOOD), "INVALID_BODY"),
        ({**_body(), "config": "baserow"}, "INVALID_BODY"),
        (_body(name="n\u0000", **GOOD), "INVALID_BODY"),
        (_body(**{**GOOD, "token": "a\r\nX-Evil: 1"}), "INVALID_BODY"),
        (_body(**{**GOOD, "token": "a" * 5000}), "INVALID_BODY"),
        (_body(token="t", baseUrl="http://169.254.169.254"), "INVALID_BASE_URL"),
        (_body(token="t", baseUrl="ftp://x"), "INVALID_BASE_URL"),
        (_body(token="t", baseUrl="not a url"), "INVALID_BASE_URL"),
        (_body(token="t", baseUrl="http://u:p@127.0.0.1"), "INVALID_BASE_URL"),
        (_body(token="t", baseUrl="http://127.0.0.1:99999"), "INVALID_BASE_URL"),
    ],
)
def test_bad_credentials_are_refused(api: httpx.Client, body: dict[str, Any], code: str) -> None:
    before = api.get("/api/credentials").json()
    assert_error(api.post("/api/credentials", json=body), 400, code)
    assert api.get("/api/credentials").json() == before


def test_bad_updates_and_ids_are_refused(api: httpx.Client, baserow: BaserowFake) -> None:
    created = _create(api, baserow)
    path = f"/api/credentials/{created['id']}"
    metadata = api.put(path, json={"config": {"baseUrl": "http://169.254.169.254/"}})
    assert_error(metadata, 400, "INVALID_BASE_URL")
    assert "169.254.169.254" in metadata.json()["details"]
    assert_error(api.put(path, json={"config": {"baseUrl": "ftp://x"}}), 400, "INVALID_BASE_URL")
    assert_error(api.put(path, content=b"{nope"), 400, "INVALID_JSON")
    assert_error(api.put(path, json={"config": {"token": 12}}), 400, "INVALID_BODY")
    assert api.get("/api/credentials").json().count(created) == 1  # unchanged
    for database_id in ("abc", "1.5", "-1", "12a"):
        tables = f"{path}/proxy/baserow/databases/{database_id}/tables"
        assert_error(api.get(tables), 400, "INVALID_DATABASE_ID")
    # Checked before the credential is even looked up.
    unknown = "/api/credentials/cred_missing/proxy/baserow/databases/x/tables"
    assert_error(api.get(unknown), 400, "INVALID_DATABASE_ID")
    assert baserow.received == []


def test_a_new_origin_needs_the_token_again(api: httpx.Client, baserow: BaserowFake) -> None:
    """A stored token never follows a changed base URL to another server by itself."""
    created = _create(api, baserow)
    path = f"/api/credentials/{created['id']}"
    port = baserow.url.rsplit(":", 1)[1]
    with BaserowFake(f"tok-{uuid.uuid4().hex}") as elsewhere:
        for moved in (elsewhere.url, f"http://localhost:{port}", f"https://127.0.0.1:{port}"):
            for token in (None, "", REDACTED):
                config = {"baseUrl": moved} if token is None else {"baseUrl": moved, "token": token}
                refused = api.put(path, json={"name": "moved", "config": config})
                assert_error(refused, 400, "TOKEN_REQUIRED")
        assert api.get("/api/credentials").json().count(created) == 1  # unchanged
        assert _databases(api, created["id"]).status_code == 200
        assert elsewhere.received == []

        # The same origin (another path, a trailing slash) keeps the stored token.
        for same in (f"{baserow.url}/base", f"{baserow.url}/"):
            kept = api.put(path, json={"config": {"baseUrl": same, "token": REDACTED}})
            assert kept.status_code == 200, kept.text
        assert _databases(api, created["id"]).status_code == 200
        assert baserow.requests_to("/all-tables/")[-1].authorization == f"Token {baserow.token}"

        # With the token sent again, the move is made.
        config = {"baseUrl": elsewhere.url, "token": elsewhere.token}
        moved_answer = api.put(path, json={"config": config})
        assert moved_answer.status_code == 200, moved_answer.text
        assert moved_answer.json()["config"] == {"baseUrl": elsewhere.url, "token": REDACTED}
        assert _databases(api, created["id"]).status_code == 200
        assert {seen.authorization for seen in elsewhere.received} == {f"Token {elsewhere.token}"}


def test_proxy_lists_databases_and_tables_as_a_database_token_may(api: httpx.Client) -> None:
    with BaserowFake(f"tok-{uuid.uuid4().hex}") as fake:
        created = _create(api, fake)
        # Baserow refuses a database token its workspace listing, as the fake does ...
        refused = httpx.get(
            f"{fake.url}/api/applications/", headers={"Authorization": f"Token {fake.token}"}
        )
        assert refused.status_code == 401
        # ... so databases and tables come from the listing a token may read: numeric ids.
        databases = _databases(api, created["id"])
        assert databases.status_code == 200, databases.text
        assert databases.json() == [
            {"id": 101, "name": "Database 101", "workspaceName": ""},
            {"id": 102, "name": "Database 102", "workspaceName": ""},
        ]
        tables = api.get(f"/api/credentials/{created['id']}/proxy/baserow/databases/101/tables")
        assert tables.status_code == 200, tables.text
        assert tables.json() == [{"id": 12, "name": "Products"}, {"id": 13, "name": "Orders"}]
        assert {seen.path for seen in fake.received} == {
            "/api/applications/",
            "/api/database/tables/all-tables/",
        }
        assert all(seen.authorization == f"Token {fake.token}" for seen in fake.received)
        missing = api.get(f"/api/credentials/{created['id']}/proxy/baserow/databases/7/tables")
        assert_error(missing, 404, "DATABASE_NOT_FOUND")
    # The fake is gone: nothing listens there any more.
    assert_error(_databases(api, created["id"]), 502, "BASEROW_UNREACHABLE")


def test_a_token_seeing_one_database_names_it_after_the_credential(api: httpx.Client) -> None:
    with BaserowFake(f"tok-{uuid.uuid4().hex}", databases=(Database(7, {70: "T"}),)) as fake:
        created = _create(api, fake)
        assert _databases(api, created["id"]).json() == [
            {"id": 7, "name": "My Baserow", "workspaceName": ""}
        ]


def test_task_output_is_checked_and_kept(api: httpx.Client) -> None:
    output = {
        "provider": "baserow",
        "credentialId": "cred_0123456789abcdef",
        "databaseId": 101,
        "tableId": "12",
        "onError": "ignore",
        "fieldMap": {"a": "b"},
    }
    saved = api.post("/api/tasks", json={"id": "with-output", "output": output})
    assert saved.status_code == 200, saved.text
    assert api.get("/api/tasks/with-output").json()["output"] == output
    # Figranium's editor saves the output half set up while the user picks a table.
    draft = {"provider": "baserow", "credentialId": "", "tableId": "", "onError": "ignore"}
    assert api.post("/api/tasks", json={"id": "with-output", "output": draft}).status_code == 200
    assert api.post("/api/tasks", json={"id": "with-output", "output": None}).status_code == 200
    for bad, where in [
        ({**output, "tableId": "twelve"}, "output.tableId"),
        ({**output, "tableId": True}, "output.tableId"),
        ({**output, "databaseId": "x"}, "output.databaseId"),
        ({**output, "provider": "airtable"}, "output.provider"),
        ({**output, "onError": "explode"}, "output.onError"),
        ({**output, "credentialId": 3}, "output.credentialId"),
        ({"provider": "baserow", "credentialId": "c"}, "output.tableId"),
        ("baserow", "output"),
    ]:
        refused = api.post("/api/tasks", json={"id": "with-output", "output": bad})
        assert_error(refused, 400, "INVALID_BODY")
        assert refused.json()["details"].startswith(where), refused.text
        patched = api.patch("/api/tasks/with-output", json={"output": bad})
        assert_error(patched, 400, "INVALID_BODY")
    assert api.get("/api/tasks/with-output").json()["output"] is None


def _save_pushing_task(
    api: httpx.Client, site: str, task_id: str, credential_id: str, on_error: str
) -> None:
    task = {
        "id": task_id,
        "url": f"{site}/form",
        "extractionScript": ROWS_SCRIPT,
        "output": {
            "provider": "baserow",
            "credentialId": credential_id,
            "databaseId": "101",
            "tableId": "12",
            "onError": on_error,
        },
    }
    saved = api.post("/api/tasks", json=task)
    assert saved.status_code == 200, saved.text


def _logs(api: httpx.Client, execution_id: str) -> list[str]:
    execution = api.get(f"/api/executions/{execution_id}").json()["execution"]
    return list(execution["logs"])


def _wait_for_line(api: httpx.Client, execution_id: str, needle: str) -> list[str]:
    # Log events and the result travel separately: give the last line a moment.
    deadline = time.monotonic() + 10
    while True:
        logs = _logs(api, execution_id)
        if any(needle in line for line in logs) or time.monotonic() > deadline:
            return logs
        time.sleep(0.2)


def test_a_run_pushes_its_rows_to_baserow(
    api: httpx.Client, site: str, baserow: BaserowFake, stack: tuple[Stack, httpx.Client]
) -> None:
    credential = _create(api, baserow)
    _save_pushing_task(api, site, "push-rows", credential["id"], "fail")
    run = api.post("/api/tasks/push-rows/api", json={})
    assert run.status_code == 200, run.text
    assert run.json()["outcome"] == "success"
    assert baserow.rows_request_body("/api/database/rows/table/12/batch/") == {
        "items": [
            {"fruit": "apple", "position": 1, "meta": '{"tag": "LI"}'},
            {"fruit": "banana", "position": 2, "meta": '{"tag": "LI"}'},
        ]
    }
    assert [row["fruit"] for row in baserow.rows_in(12)] == ["apple", "banana"]
    execution_id = run.json()["executionId"]
    logs = _wait_for_line(api, execution_id, "Pushed 2 rows")
    assert "Pushed 2 rows to Baserow table 12" in logs
    # The token went to Baserow only: not into the execution's record, nor any log.
    with psycopg.connect(_database_url(stack)) as conn:
        stored = conn.execute(
            "SELECT row_to_json(e)::text || coalesce((SELECT string_agg(payload::text, '')"
            " FROM execution_events WHERE execution_id = e.id), '')"
            " FROM executions e WHERE id = %s",
            (execution_id,),
        ).fetchone()
    assert stored is not None and "apple" in stored[0]
    assert baserow.token not in stored[0]
    assert baserow.token not in _service_logs(stack)


def test_a_failed_push_fails_the_run_unless_ignored(
    api: httpx.Client, site: str, baserow: BaserowFake
) -> None:
    credential = _create(api, baserow)
    baserow.fail_rows_with = 500

    _save_pushing_task(api, site, "push-fails", credential["id"], "fail")
    failed = api.post("/api/tasks/push-fails/api", json={})
    assert failed.status_code == 422, failed.text
    body = failed.json()
    assert body["outcome"] == "error" and body["error"] == "RUN_FAILED"
    assert "Output to Baserow failed" in body["details"] and "HTTP 500" in body["details"]
    assert [row["fruit"] for row in body["data"]] == ["apple", "banana"]  # data is kept
    execution = api.get(f"/api/executions/{body['executionId']}").json()["execution"]
    assert execution["outcome"] == "error"

    _save_pushing_task(api, site, "push-ignored", credential["id"], "ignore")
    ignored = api.post("/api/tasks/push-ignored/api", json={})
    assert ignored.status_code == 200, ignored.text
    assert ignored.json()["outcome"] == "success"
    logs = _wait_for_line(api, ignored.json()["executionId"], "Output to Baserow failed")
    assert any("Output to Baserow failed" in line and "ignored" in line for line in logs), logs
    assert len(baserow.requests_to("/batch/")) == 2  # one attempt per run, no rows created
    assert baserow.rows_in(12) == []


def test_a_deleted_credential_fails_the_push(
    api: httpx.Client, site: str, baserow: BaserowFake
) -> None:
    credential = _create(api, baserow)
    _save_pushing_task(api, site, "push-orphan", credential["id"], "fail")
    api.delete(f"/api/credentials/{credential['id']}")
    run = api.post("/api/tasks/push-orphan/api", json={})
    assert run.status_code == 422, run.text
    assert "no Baserow credential" in run.json()["details"]
    assert baserow.received == []
