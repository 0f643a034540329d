"""The runners' tools services, asked over NATS with the gateway's client, answered by the
real runner process."""

from __future__ import annotations

import httpx
import nats

from figranium_common.models import PageCaptureRequest
from figranium_gateway.runner_tools import capture_page, check_script
from tests.integration.pages import add_item
from tests.integration.stack import Stack


async def test_page_capture_and_script_check_through_a_runner(
    stack: tuple[Stack, httpx.Client], site: str
) -> None:
    shared, _ = stack
    nc = await nats.connect(shared.env["NATS_URL"])
    try:
        task = {
            "url": f"{site}/form",
            "actions": add_item("cherry"),
        }
        before = await capture_page(
            nc, PageCaptureRequest(task=task, action_index=0, timeout_seconds=30), timeout=40
        )
        assert before.error is None and before.url == f"{site}/form"
        assert "<li>banana</li>" in before.html and "cherry" not in before.html
        assert "onclick" not in before.html
        after = await capture_page(
            nc, PageCaptureRequest(task=task, action_index=2, timeout_seconds=30), timeout=40
        )
        assert after.error is None and "<li>cherry</li>" in after.html

        assert await check_script(nc, "return document.title") is None
        error = await check_script(nc, "return (")
        assert error is not None and error.startswith("SyntaxError: ")
    finally:
        await nc.close()
    runner = next(service for service in shared.services if service.name == "runner")
    assert "tools.page_captured" in runner.log_text()
