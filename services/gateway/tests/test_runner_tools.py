"""The gateway's client of the runners' tools services, against a real NATS and fake runners."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from figranium_common.errors import FigraniumError
from figranium_common.models import (
    PageCaptureReply,
    PageCaptureRequest,
    ScriptCheckReply,
    ScriptCheckRequest,
)
from figranium_common.nats import TOOLS_PAGE_SUBJECT, TOOLS_QUEUE, TOOLS_SCRIPT_SUBJECT
from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port
from figranium_gateway.runner_tools import RunnerUnavailable, capture_page, check_script

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with LocalNats(tmp_path_factory.mktemp("tools-client") / "nats", free_port()) as server:
        yield server.url


@pytest_asyncio.fixture(loop_scope="module")
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def test_no_runner_subscribed(nc: NATS) -> None:
    request = PageCaptureRequest(task={"url": "https://example.com"}, action_index=0)
    with pytest.raises(RunnerUnavailable) as caught:
        await capture_page(nc, request, timeout=5)
    assert caught.value.code == "NO_RUNNER"
    assert "is one running?" in caught.value.details
    with pytest.raises(RunnerUnavailable):
        await check_script(nc, "return 1")


async def test_no_runner_answering_in_time(nc: NATS) -> None:
    async def silent(msg: Msg) -> None:
        pass

    sub = await nc.subscribe(TOOLS_SCRIPT_SUBJECT, queue=TOOLS_QUEUE, cb=silent)
    try:
        with pytest.raises(RunnerUnavailable) as caught:
            await check_script(nc, "return 1", timeout=0.3)
        assert caught.value.details == "no runner answered within 0.3 s; is one running?"
    finally:
        await sub.unsubscribe()


async def test_round_trip_with_a_runner(nc: NATS) -> None:
    seen: list[PageCaptureRequest] = []

    async def page(msg: Msg) -> None:
        request = PageCaptureRequest.model_validate_json(msg.data)
        seen.append(request)
        reply = PageCaptureReply(html="<html></html>", url=request.task.url)
        await msg.respond(reply.model_dump_json().encode())

    async def script(msg: Msg) -> None:
        body = ScriptCheckRequest.model_validate_json(msg.data).script
        error = None if body.startswith("return") else "SyntaxError: Unexpected token"
        await msg.respond(ScriptCheckReply(error=error).model_dump_json().encode())

    subs = [
        await nc.subscribe(TOOLS_PAGE_SUBJECT, queue=TOOLS_QUEUE, cb=page),
        await nc.subscribe(TOOLS_SCRIPT_SUBJECT, queue=TOOLS_QUEUE, cb=script),
    ]
    try:
        request = PageCaptureRequest(
            task={"url": "https://example.com/a"}, action_index=2, timeout_seconds=5
        )
        reply = await capture_page(nc, request, timeout=10)
        assert reply == PageCaptureReply(html="<html></html>", url="https://example.com/a")
        assert seen == [request]
        assert await check_script(nc, "return 1") is None
        assert await check_script(nc, "x(") == "SyntaxError: Unexpected token"
    finally:
        for sub in subs:
            await sub.unsubscribe()


async def test_unreadable_reply(nc: NATS) -> None:
    async def broken(msg: Msg) -> None:
        await msg.respond(b"<html>")

    sub = await nc.subscribe(TOOLS_SCRIPT_SUBJECT, queue=TOOLS_QUEUE, cb=broken)
    try:
        with pytest.raises(FigraniumError, match="unreadable"):
            await check_script(nc, "return 1")
    finally:
        await sub.unsubscribe()
