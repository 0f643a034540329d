"""Bad bodies and unknown ids get a 4xx with {"error", "details"} and change nothing."""

from __future__ import annotations

import httpx
import pytest


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "details"}
    assert body["details"]
    if code is not None:
        assert body["error"] == code
    assert "Traceback" not in response.text


@pytest.fixture
def saved(api: httpx.Client, site: str) -> dict[str, object]:
    task = {"id": "precious", "name": "keep me", "url": f"{site}/form", "actions": []}
    assert api.post("/api/tasks", json=task).status_code == 200
    return api.get("/api/tasks/precious").json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"{not json", "INVALID_JSON"),
        (b"[1, 2]", "INVALID_BODY"),
        (b'"text"', "INVALID_BODY"),
        (b'{"id": "precious", "actions": "click"}', "INVALID_BODY"),
        (b'{"id": "precious", "actions": [{"type": "teleport"}]}', "INVALID_BODY"),
        (b'{"id": "precious", "actions": [{"selector": "#a"}]}', "INVALID_BODY"),
        (b'{"id": "precious", "wait": "soon"}', "INVALID_BODY"),
        (b'{"id": "precious", "mode": "warp"}', "INVALID_BODY"),
        (b'{"id": "../etc/passwd"}', "INVALID_BODY"),
        (b'{"id": "precious", "variables": {"a": {"type": "date"}}}', "INVALID_BODY"),
        (b'{"id": "precious", "actions": [{"type": "click", "timeout": -5}]}', "INVALID_BODY"),
    ],
)
def test_bad_task_bodies_are_refused_and_the_saved_task_is_intact(
    api: httpx.Client, saved: dict[str, object], content: bytes, code: str
) -> None:
    response = api.post("/api/tasks", content=content, headers={"content-type": "application/json"})
    assert_error(response, 400, code)
    assert api.get("/api/tasks/precious").json() == saved


@pytest.mark.parametrize(
    "body",
    [{"variables": "x=1"}, {"variables": [1]}, {"runId": "../../x"}, {"runId": 5}],
)
def test_bad_run_bodies_are_refused(
    api: httpx.Client, saved: dict[str, object], body: dict[str, object]
) -> None:
    before = len(api.get("/api/executions", params={"limit": 1000}).json()["executions"])
    assert_error(api.post("/api/tasks/precious/api", json=body), 400, "INVALID_BODY")
    after = len(api.get("/api/executions", params={"limit": 1000}).json()["executions"])
    assert after == before


def test_malformed_run_json(api: httpx.Client, saved: dict[str, object]) -> None:
    response = api.post(
        "/api/tasks/precious/api", content=b"{", headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "INVALID_JSON")


def test_unknown_ids(api: httpx.Client) -> None:
    assert_error(api.post("/api/tasks/nope/api", json={}), 404, "TASK_NOT_FOUND")
    assert_error(api.post("/tasks/nope/api", json={}), 404, "TASK_NOT_FOUND")
    assert_error(api.get("/api/tasks/nope"), 404, "TASK_NOT_FOUND")
    assert_error(api.get("/api/executions/exec_nope"), 404, "EXECUTION_NOT_FOUND")
    assert_error(api.delete("/api/executions/exec_nope"), 404, "EXECUTION_NOT_FOUND")
    assert_error(api.get("/api/no/such/route"), 404)
    assert_error(api.get("/captures/nope.png"), 404, "CAPTURE_NOT_FOUND")


def test_bad_query_and_names(api: httpx.Client) -> None:
    assert_error(api.get("/api/executions", params={"limit": "lots"}), 400, "INVALID_QUERY")
    assert_error(api.get("/api/executions", params={"limit": "0"}), 400, "INVALID_QUERY")
    assert_error(api.get("/captures/..%2Fsecret"), 400)
    # A NUL character reaches no query: PostgreSQL cannot hold one in text.
    assert_error(api.get("/", params={"q": "a\x00b"}), 400, "INVALID_REQUEST")
    assert_error(api.get("/api/cookies", params={"taskId": "\x00"}), 400, "INVALID_REQUEST")
    assert_error(api.get("/api/tasks/a%00b"), 400, "INVALID_REQUEST")


def test_wrong_method(api: httpx.Client) -> None:
    assert_error(api.put("/api/tasks", json={}), 405)


def test_run_id_reuse_is_a_conflict(api: httpx.Client, site: str) -> None:
    api.post("/api/tasks", json={"id": "quick", "url": f"{site}/form"})
    first = api.post("/api/tasks/quick/api", json={"runId": "exec_fixed_1"})
    assert first.status_code == 200, first.text
    assert first.json()["executionId"] == "exec_fixed_1"
    assert_error(api.post("/api/tasks/quick/api", json={"runId": "exec_fixed_1"}), 409)


@pytest.mark.parametrize(
    "content",
    [
        b'{"id": "nul", "name": "a\\u0000b"}',
        b'{"id": "nul", "k\\u0000ey": "v"}',
        b'{"id": "nul", "actions": [{"type": "noop", "value": "\\u0000"}]}',
    ],
)
def test_nul_characters_are_refused(api: httpx.Client, content: bytes) -> None:
    response = api.post("/api/tasks", content=content, headers={"content-type": "application/json"})
    assert_error(response, 400, "INVALID_BODY")
    assert api.get("/api/tasks/nul").status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # blocked even with private networks on
        "http://[::ffff:169.254.169.254]/",
        "file:///etc/passwd",
        "gopher://example.com/",
        "http://127.0.0.1\\@example.com/",
    ],
)
def test_runs_to_refused_urls_are_400_and_queue_nothing(api: httpx.Client, url: str) -> None:
    api.post("/api/tasks", json={"id": "outbound", "name": "o", "url": url})
    assert_error(api.post("/api/tasks/outbound/api", json={}), 400, "INVALID_URL")
    assert_error(api.post("/agent", json={"url": url}), 400, "INVALID_URL")
    assert_error(api.post("/scrape", json={"url": url}), 400, "INVALID_URL")
    executions = api.get("/api/executions", params={"limit": 1000}).json()["executions"]
    assert [e for e in executions if e["url"] == url] == []
