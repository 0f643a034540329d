"""Screenshots reach the captures bucket, and the run's event subject, as they are taken:
a whole run through a Worker, against a real NATS server and Chromium."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from pydantic import BaseModel

from figranium_common.config import Config
from figranium_common.models import (
    CaptureEvent,
    ResultEvent,
    RunEvent,
    RunEventEnvelope,
    RunRequest,
    Task,
)
from figranium_common.nats import (
    RunConsumerLimits,
    captures_store,
    declare_topology,
    event_subject,
    run_subject,
)
from figranium_common.secretbox import new_key_text
from figranium_devstack.natsserver import LocalNats
from figranium_runner.browser import BrowserHost
from figranium_runner.worker import Worker
from tests.integration.pages import QuietHandler, serve_http

pytestmark = pytest.mark.asyncio(loop_scope="module")

WAIT = 20.0  # seconds: the longest any step of the run may take here
E = TypeVar("E", bound=BaseModel)
RELEASED = threading.Event()  # set by the test: the held page answers


class HeldSite(QuietHandler):
    """``/page``: a page; ``/hold``: a page that answers once the test releases it."""

    def do_GET(self) -> None:
        if self.path == "/hold":
            RELEASED.wait(WAIT)
        self.send_body(b"<!doctype html><html><body><p>page</p></body></html>", "text/html")


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serve_http(HeldSite) as url:
        yield url


class Events:
    """The events published on one execution's subject, as they come."""

    def __init__(self) -> None:
        self.seen: list[RunEvent] = []
        self._queue: asyncio.Queue[RunEvent] = asyncio.Queue()

    async def on_message(self, msg: Msg) -> None:
        event = RunEventEnvelope.model_validate_json(b'{"event":' + msg.data + b"}").event
        self.seen.append(event)
        await self._queue.put(event)

    async def next_of(self, kind: type[E]) -> E:
        """The next event of ``kind`` (waited for, at most WAIT seconds)."""
        async with asyncio.timeout(WAIT):
            while True:
                event = await self._queue.get()
                if isinstance(event, kind):
                    return event


@pytest_asyncio.fixture(loop_scope="module")
async def worker(module_nats: LocalNats, host: BrowserHost) -> AsyncIterator[NATS]:
    """A Worker taking runs from the module's NATS server; answers its connection."""
    nc = await nats.connect(module_nats.url)
    js = nc.jetstream()
    await declare_topology(js, RunConsumerLimits(ack_wait_seconds=60, max_deliver=1))
    config = Config.model_validate(
        {
            "NATS_URL": module_nats.url,
            "ALLOW_PRIVATE_NETWORKS": True,
            "FIGRANIUM_TRANSIT_KEY": new_key_text(),
            # Lines wait longer than the test does: a capture must not wait with them.
            "RUN_LOG_LINGER_SECONDS": 30,
        }
    )
    stopping = asyncio.Event()
    running = asyncio.create_task(Worker(config, nc, js, host, slots=1).run(stopping))
    try:
        yield nc
    finally:
        RELEASED.set()
        stopping.set()
        await asyncio.wait_for(running, WAIT)
        await nc.close()


async def test_a_screenshot_is_stored_and_announced_before_the_run_ends(
    worker: NATS, base: str
) -> None:
    execution_id = "exec_live_1"
    events = Events()
    await worker.subscribe(event_subject(execution_id), cb=events.on_message)
    task = Task(
        url=f"{base}/page",
        actions=[
            {"type": "screenshot", "label": "first"},
            {"type": "navigate", "value": f"{base}/hold"},
            {"type": "screenshot", "label": "second"},
        ],
    )
    request = RunRequest(execution_id=execution_id, task=task, timeout_seconds=WAIT)
    js = worker.jetstream()
    await js.publish(run_subject("agent"), request.model_dump_json().encode(), timeout=WAIT)
    bucket = await captures_store(js, create=False)

    # The run is held on the page the test controls: the first screenshot is out already.
    announced = await events.next_of(CaptureEvent)
    assert not any(isinstance(event, ResultEvent) for event in events.seen)
    [first] = announced.captures
    assert first.name.startswith(f"{execution_id}_agent_")
    assert first.name.endswith("_first.png")
    assert first.kind == "screenshot"
    assert (await bucket.get_info(first.name)).size == first.size > 0

    RELEASED.set()
    result = await events.next_of(ResultEvent)
    assert result.result.outcome == "success", result.result.error
    stored = {capture.name: capture for capture in result.stored_captures}
    in_bucket = {
        info.name: info.size
        for info in await bucket.list()
        if info.name and info.name.startswith(f"{execution_id}_") and not info.deleted
    }
    assert {name: capture.size for name, capture in stored.items()} == in_bucket
    assert first.name in stored
    kinds = sorted(capture.kind for capture in stored.values())
    # Both screenshots, the one taken at the end, and the video.
    assert kinds == ["recording", "screenshot", "screenshot", "screenshot"]
    assert any(name.endswith("_second.png") for name in stored)
