"""Every run is recorded as a WebM in the captures store, unless the task says not to."""

from __future__ import annotations

import asyncio
import re

import httpx
import nats
from nats.js.errors import NotFoundError

from figranium_common.nats import captures_store
from tests.integration.pages import add_item
from tests.integration.stack import Stack

WEBM_MAGIC = bytes.fromhex("1A45DFA3")  # EBML header, which every WebM starts with


def recorded_task(site: str, task_id: str, **extra: object) -> dict[str, object]:
    return {
        "id": task_id,
        "name": "Recorded",
        "url": f"{site}/form",
        "actions": add_item("cherry"),
        "extractionScript": "return document.querySelectorAll('#items li').length",
        **extra,
    }


async def _capture_names(nats_url: str) -> list[str]:
    nc = await nats.connect(nats_url)
    try:
        bucket = await captures_store(nc.jetstream())
        try:
            return [info.name for info in await bucket.list(ignore_deletes=True)]
        except NotFoundError:  # an empty bucket
            return []
    finally:
        await nc.close()


def capture_names(stack: Stack, execution_id: str) -> list[str]:
    names = asyncio.run(_capture_names(stack.env["NATS_URL"]))
    return sorted(name for name in names if name.startswith(f"{execution_id}_"))


def test_run_is_recorded(api: httpx.Client, site: str, stack: tuple[Stack, httpx.Client]) -> None:
    api.post("/api/tasks", json=recorded_task(site, "recorded"))
    response = api.post("/api/tasks/recorded/api", json={})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["data"] == 3
    execution_id = result["executionId"]

    videos = [n for n in capture_names(stack[0], execution_id) if n.endswith(".webm")]
    assert len(videos) == 1
    assert re.fullmatch(rf"{re.escape(execution_id)}_agent_\d+\.webm", videos[0])
    video = api.get(f"/captures/{videos[0]}")
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/webm"
    assert video.content.startswith(WEBM_MAGIC)
    assert len(video.content) > 1000

    # The result still points at the final screenshot, not at the video.
    assert result["screenshot_url"].endswith(".png")
    assert api.get(result["screenshot_url"]).content.startswith(b"\x89PNG")


def test_disable_recording(api: httpx.Client, site: str, stack: tuple[Stack, httpx.Client]) -> None:
    api.post("/api/tasks", json=recorded_task(site, "unrecorded", disableRecording=True))
    response = api.post("/api/tasks/unrecorded/api", json={})
    assert response.status_code == 200, response.text
    names = capture_names(stack[0], response.json()["executionId"])
    assert names, "the final screenshot should be there"
    assert all(name.endswith(".png") for name in names)
