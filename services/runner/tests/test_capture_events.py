"""EventPublisher.captured: a capture stored mid-run goes out at once, after the lines said
before it and before those said after; the result lists every capture stored."""

from __future__ import annotations

import asyncio
from typing import Any

from figranium_common.capture_models import StoredCapture
from figranium_common.models import CaptureEvent, ResultEvent, RunResult, StartedEvent
from figranium_runner.events import EventPublisher
from services.runner.tests.test_events import Recorder

SHOT = StoredCapture(name="exec_1_agent_1_first.png", kind="screenshot", size=12, at=1)


class Watched(Recorder):
    """A Recorder that tells when it has published more."""

    def __init__(self) -> None:
        super().__init__()
        self.grew = asyncio.Event()

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str], timeout: float
    ) -> None:
        await super().publish(subject, payload, headers, timeout)
        self.grew.set()


async def _started(linger: float) -> tuple[Watched, EventPublisher]:
    recorder = Watched()
    events = EventPublisher(recorder, "exec_1", 1, linger_seconds=linger)  # type: ignore[arg-type]
    await events.started("runner-1")
    return recorder, events


async def _published(recorder: Watched, count: int) -> list[dict[str, Any]]:
    """The first ``count`` events published, once they are."""
    async with asyncio.timeout(5):
        while len(recorder.published) < count:
            recorder.grew.clear()
            await recorder.grew.wait()
    return [event for _, event, _ in recorder.published]


async def test_a_capture_goes_out_without_the_linger_after_the_lines_before_it() -> None:
    recorder, events = await _started(linger=30)  # lines alone would wait 30 s
    await events.log("before")
    events.captured([SHOT])
    await events.log("after")
    published = await _published(recorder, 2)
    started = StartedEvent.model_validate(published[0])
    assert started.lines == ["before"]
    notice = CaptureEvent.model_validate(published[1])
    # The next line's sequence, which that line keeps: its id is told apart.
    assert notice.seq == 2 and notice.captures == [SHOT]
    assert [msg_id for _, _, msg_id in recorder.published] == ["exec_1:1:0", "exec_1:1:2:capture1"]
    await events.result(RunResult(outcome="success"), 10, stored_captures=[SHOT])
    published = await _published(recorder, 3)
    result = ResultEvent.model_validate(published[2])
    assert result.lines == ["after"] and result.seq == 3
    assert result.stored_captures == [SHOT]


async def test_captures_and_lines_keep_their_order_and_ids_stay_unique() -> None:
    recorder, events = await _started(linger=0)
    await _published(recorder, 1)
    events.captured([SHOT])
    second = SHOT.model_copy(update={"name": "exec_1_agent_2.png"})
    events.captured([second])
    await events.log("line")
    await events.flush()
    published = await _published(recorder, 4)
    assert [(event["type"], event["seq"]) for event in published] == [
        ("started", 0),
        ("capture", 1),
        ("capture", 1),
        ("log", 1),
    ]
    ids = [msg_id for _, _, msg_id in recorder.published]
    assert len(set(ids)) == len(ids)


async def test_a_capture_said_once_the_result_is_on_its_way_is_left_to_the_result() -> None:
    recorder, events = await _started(linger=30)
    await events.result(RunResult(outcome="success"), 10, stored_captures=[SHOT])
    events.captured([SHOT])
    await events.flush()
    published = [event for _, event, _ in recorder.published]
    assert [event["type"] for event in published] == ["result"]


async def test_a_result_too_large_still_lists_the_captures_stored() -> None:
    recorder = Recorder()
    events = EventPublisher(
        recorder,  # type: ignore[arg-type]
        "exec_1",
        1,
        linger_seconds=0,
        max_payload=8 * 1024,
        max_result_bytes=8 * 1024,
    )
    await events.result(RunResult(outcome="success", data="x" * 20_000), 10, stored_captures=[SHOT])
    [(_, event, _)] = recorder.published
    result = ResultEvent.model_validate(event)
    assert result.result.outcome == "error" and result.result.data is None
    assert result.stored_captures == [SHOT]
