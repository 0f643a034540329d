"""Deleting one capture, clearing screenshots, and names that try to escape."""

from __future__ import annotations

import http.client
import uuid

import httpx
import pytest

from tests.integration.captures_helpers import capture_names, put_captures, put_objects
from tests.integration.stack import API_KEY, Stack


def _raw_delete(client: httpx.Client, raw_path: str) -> tuple[int, str]:
    """DELETE with the path exactly as written: httpx would normalise some of these."""
    url = client.base_url
    conn = http.client.HTTPConnection(url.host, url.port, timeout=30)
    try:
        conn.request("DELETE", raw_path, headers={"x-api-key": API_KEY})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def test_delete_one_capture(api: httpx.Client, stack: tuple[Stack, httpx.Client]) -> None:
    run_id = f"exec_cap_{uuid.uuid4().hex[:8]}"
    doomed, kept = f"{run_id}_agent_1_a.png", f"{run_id}_agent_2_b.png"
    put_captures(stack[0], [doomed, kept])

    response = api.delete(f"/api/data/captures/{doomed}")
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    assert api.get(f"/captures/{doomed}").status_code == 404
    assert api.get(f"/captures/{kept}").status_code == 200
    listed = {
        c["name"]
        for c in api.get("/api/data/captures", params={"runId": run_id}).json()["captures"]
    }
    assert listed == {kept}

    again = api.delete(f"/api/data/captures/{doomed}")
    assert again.status_code == 404
    assert again.json()["error"] == "CAPTURE_NOT_FOUND"


@pytest.mark.parametrize(
    "raw_name",
    [
        "a%2Fb",
        "a/b",
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2fsentinel.png",
        "a..b.png",
        "..sentinel.png",
        "a%00b",
        "sentinel.png%0A",
        "a%252Fb",
        "a%5Cb",
        "a%20b",
        "x" * 256,
    ],
)
def test_tricky_names_are_refused(
    api: httpx.Client, stack: tuple[Stack, httpx.Client], raw_name: str
) -> None:
    nats_url = stack[0].env["NATS_URL"]
    put_objects(nats_url, ["sentinel.png"])
    status, body = _raw_delete(api, f"/api/data/captures/{raw_name}")
    assert status == 400, body
    # A NUL is refused before any route looks at the name.
    assert ('"INVALID_REQUEST"' if "%00" in raw_name else '"INVALID_NAME"') in body
    assert "sentinel.png" in capture_names(nats_url)


@pytest.mark.parametrize("raw_path", ["/api/data/captures/..", "/api/data/captures/%2e%2e"])
def test_dot_segments_never_reach_a_capture(
    api: httpx.Client, stack: tuple[Stack, httpx.Client], raw_path: str
) -> None:
    # Whether the server treats these as the parent path (404) or as a name (400), nothing
    # may be deleted.
    nats_url = stack[0].env["NATS_URL"]
    put_objects(nats_url, ["sentinel.png"])
    status, body = _raw_delete(api, raw_path)
    assert status in (400, 404, 405), body
    assert "sentinel.png" in capture_names(nats_url)


def test_delete_capture_needs_the_key(api: httpx.Client, stack: tuple[Stack, httpx.Client]) -> None:
    nats_url = stack[0].env["NATS_URL"]
    put_objects(nats_url, ["guarded.png"])
    response = httpx.delete(f"{api.base_url}/api/data/captures/guarded.png")
    assert response.status_code == 401
    assert "guarded.png" in capture_names(nats_url)


@pytest.mark.stack
def test_clear_screenshots_keeps_videos_and_downloads(isolated: Stack) -> None:
    _, client = isolated.start_gateway()
    nats_url = isolated.env["NATS_URL"]
    assert client.post("/api/data/clear-screenshots").json() == {"success": True, "removed": 0}
    put_captures(
        isolated,
        [
            "exec_1_agent_1.png",
            "exec_1_agent_2_label.png",
            "exec_1_agent_3.webm",
            "exec_1_download_report.csv",
        ],
    )
    response = client.post("/api/data/clear-screenshots", json={})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "removed": 2}
    assert capture_names(nats_url) == {"exec_1_agent_3.webm", "exec_1_download_report.csv"}
    assert client.get("/api/data/screenshots").json() == {"screenshots": []}


def test_only_images_and_videos_are_served_inline(
    api: httpx.Client, stack: tuple[Stack, httpx.Client]
) -> None:
    """A page's download served from the API's origin must never run as a page or script."""
    run_id = f"exec_inert_{uuid.uuid4().hex[:8]}"
    inline = {
        f"{run_id}_agent_1.png": "image/png",
        f"{run_id}_agent_2.JPG": "image/jpeg",
        f"{run_id}_agent_3.jpeg": "image/jpeg",
        f"{run_id}_agent_4.webm": "video/webm",
    }
    attached = [
        f"{run_id}_download_r.html",
        f"{run_id}_download_r.htm",
        f"{run_id}_download_r.svg",
        f"{run_id}_download_r.xhtml",
        f"{run_id}_download_r.xml",
        f"{run_id}_download_x.js",
        f"{run_id}_download_report.csv",
        f"{run_id}_download_no-suffix",
    ]
    put_captures(stack[0], [*inline, *attached])
    for name, content_type in inline.items():
        response = api.get(f"/captures/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"] == content_type, name
        assert response.headers["x-content-type-options"] == "nosniff", name
        assert "content-disposition" not in response.headers, name
    for name in attached:
        response = api.get(f"/captures/{name}")
        assert response.status_code == 200, name
        assert response.content == b"capture bytes"
        assert response.headers["content-type"] == "application/octet-stream", name
        assert response.headers["x-content-type-options"] == "nosniff", name
        assert response.headers["content-disposition"] == (
            f"attachment; filename=\"{name}\"; filename*=UTF-8''{name}"
        )
