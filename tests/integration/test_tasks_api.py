"""Task routes beyond save/list: partial updates, deletion, touch, versions and rollback."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.test_bad_input import assert_error


@pytest.fixture
def task_id(api: httpx.Client, site: str) -> str:
    body = {"id": "edited", "name": "v1", "url": f"{site}/form", "custom": 1}
    assert api.post("/api/tasks", json=body).status_code == 200
    api.post("/api/tasks/edited/versions/clear")
    return "edited"


def test_patch_changes_only_the_given_fields_and_keeps_a_version(
    api: httpx.Client, task_id: str
) -> None:
    answer = api.patch(f"/api/tasks/{task_id}", json={"name": "v2", "id": "hijack"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "success" and body["id"] == task_id
    assert body["task"]["name"] == "v2" and body["task"]["custom"] == 1
    assert body["task"]["id"] == task_id and body["task"]["last_opened"] > 0
    versions = api.get(f"/api/tasks/{task_id}/versions").json()["versions"]
    assert [v["name"] for v in versions] == ["v1"]
    assert versions[0]["id"].startswith("ver_") and versions[0]["mode"] == "agent"


def test_patch_refuses_bad_fields_and_changes_nothing(api: httpx.Client, task_id: str) -> None:
    response = api.patch(f"/api/tasks/{task_id}", json={"actions": [{"type": "warp"}]})
    assert_error(response, 400, "INVALID_BODY")
    assert response.json()["details"].startswith("actions[0].type:")
    assert api.get(f"/api/tasks/{task_id}").json()["name"] == "v1"
    assert api.get(f"/api/tasks/{task_id}/versions").json()["versions"] == []
    assert_error(api.patch("/api/tasks/nope", json={"name": "x"}), 404, "TASK_NOT_FOUND")
    assert_error(api.patch(f"/api/tasks/{task_id}", content=b"[1]"), 400, "INVALID_BODY")


def test_touch_sets_last_opened_without_a_version(api: httpx.Client, task_id: str) -> None:
    before = int(time.time() * 1000)
    touched = api.post(f"/api/tasks/{task_id}/touch").json()
    assert touched["last_opened"] >= before
    assert api.get(f"/api/tasks/{task_id}/versions").json()["versions"] == []
    assert_error(api.post("/api/tasks/nope/touch"), 404, "TASK_NOT_FOUND")


def test_versions_get_delete_clear_and_rollback(api: httpx.Client, task_id: str) -> None:
    for name in ("v2", "v3"):
        time.sleep(0.01)  # version ids are per millisecond
        api.patch(f"/api/tasks/{task_id}", json={"name": name})
    versions = api.get(f"/api/tasks/{task_id}/versions").json()["versions"]
    assert [v["name"] for v in versions] == ["v2", "v1"]  # newest first
    oldest = versions[-1]["id"]
    detail = api.get(f"/api/tasks/{task_id}/versions/{oldest}").json()
    assert detail["snapshot"]["name"] == "v1"
    assert detail["metadata"]["id"] == oldest

    restored = api.post(f"/api/tasks/{task_id}/rollback", json={"versionId": oldest})
    assert restored.status_code == 200
    assert restored.json()["name"] == "v1" and restored.json()["id"] == task_id
    names = [v["name"] for v in api.get(f"/api/tasks/{task_id}/versions").json()["versions"]]
    assert names[0] == "v3"  # the state before the rollback was kept

    assert_error(api.post(f"/api/tasks/{task_id}/rollback", json={}), 400, "MISSING_VERSION_ID")
    assert_error(
        api.post(f"/api/tasks/{task_id}/rollback", json={"versionId": "ver_0"}),
        404,
        "VERSION_NOT_FOUND",
    )
    assert_error(api.get(f"/api/tasks/{task_id}/versions/ver_0"), 404, "VERSION_NOT_FOUND")
    deleted = api.delete(f"/api/tasks/{task_id}/versions/{oldest}")
    assert deleted.json() == {"success": True, "versionId": oldest}
    assert_error(api.delete(f"/api/tasks/{task_id}/versions/{oldest}"), 404, "VERSION_NOT_FOUND")
    cleared = api.post(f"/api/tasks/{task_id}/versions/clear").json()
    assert cleared["success"] is True and cleared["removed"] >= 1
    assert api.get(f"/api/tasks/{task_id}/versions").json()["versions"] == []
    assert_error(api.get("/api/tasks/nope/versions"), 404, "TASK_NOT_FOUND")


def test_at_most_thirty_versions(api: httpx.Client, task_id: str) -> None:
    for n in range(33):
        api.post("/api/tasks?version=true", json={"id": task_id, "name": f"n{n}"})
        time.sleep(0.002)
    versions = api.get(f"/api/tasks/{task_id}/versions").json()["versions"]
    assert len(versions) == 30
    assert versions[0]["name"] == "n31"


def test_update_flag_and_delete(api: httpx.Client, task_id: str) -> None:
    missing = api.post("/api/tasks?update=true", json={"id": "not-there"})
    assert_error(missing, 404, "TASK_NOT_FOUND")
    assert api.get("/api/tasks/not-there").status_code == 404
    gone = api.delete(f"/api/tasks/{task_id}")
    assert gone.json()["deleted"] is True and gone.json()["id"] == task_id
    assert_error(api.delete(f"/api/tasks/{task_id}"), 404, "TASK_NOT_FOUND")
    assert api.get(f"/api/tasks/{task_id}").status_code == 404
