"""EventPublisher: log lines said together go out as one event, in order, before the result."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from figranium_common.models import ResultEvent, RunResult, StartedEvent
from figranium_runner.events import EventPublisher


class Recorder:
    """Stands in for the JetStream context: keeps what was published, and when."""

    def __init__(self, failures: int = 0) -> None:
        self.published: list[tuple[float, dict[str, Any], str]] = []
        self.failures = failures  # how many publishes fail before they work again

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str], timeout: float
    ) -> None:
        await asyncio.sleep(0.001)
        if self.failures:
            self.failures -= 1
            raise TimeoutError
        self.published.append((time.monotonic(), json.loads(payload), headers["Nats-Msg-Id"]))


def _publisher(recorder: Recorder, linger: float) -> EventPublisher:
    return EventPublisher(recorder, "exec_1", 1, linger_seconds=linger)  # type: ignore[arg-type]


async def _started(linger: float, failures: int = 0) -> tuple[Recorder, EventPublisher]:
    """A publisher that has been told runner-1 started the run; the first ``failures``
    publishes fail."""
    recorder = Recorder(failures)
    events = _publisher(recorder, linger)
    await events.started("runner-1")
    return recorder, events


async def test_lines_said_last_ride_in_the_result_which_does_not_wait() -> None:
    recorder, events = await _started(linger=30)
    for i in range(5):
        await events.log(f"line {i}")
    started = time.monotonic()
    await events.result(RunResult(outcome="success"), 10)
    assert time.monotonic() - started < 5  # the result cut the 30 s linger short
    # One event: the start, which had not gone out yet, rides along too.
    kinds = [(event["type"], event["seq"]) for _, event, _ in recorder.published]
    assert kinds == [("result", 6)]
    result = ResultEvent.model_validate(recorder.published[0][1])
    assert result.started is not None and result.started.runner_id == "runner-1"
    assert result.started.seq == 0
    assert result.lines == [f"line {i}" for i in range(5)]
    assert [(line["seq"], line["line"]) for line in result.log_lines()] == [
        (i + 1, f"line {i}") for i in range(5)
    ]
    assert [msg_id for _, _, msg_id in recorder.published] == ["exec_1:1:6"]


async def test_the_start_goes_out_after_the_linger_with_the_first_lines() -> None:
    recorder, events = await _started(linger=0.05)
    await events.log("first")
    await asyncio.sleep(0.3)
    await events.log("second")
    await events.result(RunResult(outcome="success"), 10)
    published = [event for _, event, _ in recorder.published]
    assert [(event["type"], event["seq"]) for event in published] == [
        ("started", 0),
        ("result", 3),
    ]
    started = StartedEvent.model_validate(published[0])
    assert [(line["seq"], line["line"]) for line in started.log_lines()] == [(1, "first")]
    result = ResultEvent.model_validate(published[1])
    assert result.started is None and result.lines == ["second"]
    # Message ids stay unique per attempt.
    assert [msg_id for _, _, msg_id in recorder.published] == ["exec_1:1:0", "exec_1:1:3"]


async def test_a_start_that_cannot_be_published_keeps_its_lines_for_the_result() -> None:
    recorder, events = await _started(linger=0.01, failures=1)
    await events.log("first")
    await asyncio.sleep(0.2)  # the announcement failed meanwhile
    assert recorder.published == []
    await events.log("second")  # tried again with the next line
    await asyncio.sleep(0.2)
    await events.log("third")
    recorder.failures = 1
    await asyncio.sleep(0.2)  # the lines have gone out, and then a line was lost
    await events.result(RunResult(outcome="success"), 10)
    published = [event for _, event, _ in recorder.published]
    assert [event["type"] for event in published] == ["started", "result"]
    assert StartedEvent.model_validate(published[0]).lines == ["first", "second"]
    assert ResultEvent.model_validate(published[1]).seq == 4


async def test_a_run_that_ends_before_its_start_could_go_out_announces_it_in_its_result() -> None:
    recorder, events = await _started(linger=0.01, failures=1)
    await events.log("first")
    await asyncio.sleep(0.2)  # the announcement failed meanwhile
    await events.result(RunResult(outcome="success"), 10)
    published = [event for _, event, _ in recorder.published]
    assert [event["type"] for event in published] == ["result"]
    result = ResultEvent.model_validate(published[0])
    assert result.started is not None and result.lines == ["first"]


async def test_a_start_still_waiting_goes_out_before_lines_too_many_to_ride() -> None:
    recorder, events = await _started(linger=30)
    for i in range(120):
        await events.log(f"line {i}")
    await events.result(RunResult(outcome="success"), 10)
    published = [event for _, event, _ in recorder.published]
    assert [(event["type"], event["seq"]) for event in published] == [
        ("started", 0),
        ("result", 121),
    ]
    assert len(published[0]["lines"]) == 120
    assert published[1]["lines"] == [] and published[1]["started"] is None


async def test_lines_on_their_way_go_first_and_many_lines_do_not_ride_along() -> None:
    recorder = Recorder()
    events = _publisher(recorder, linger=0.01)
    await events.log("early")
    await asyncio.sleep(0.2)  # sent on its own after the linger
    for i in range(120):
        await events.log(f"late {i}")
    await events.result(RunResult(outcome="success"), 10)
    published = [event for _, event, _ in recorder.published]
    assert [event["type"] for event in published] == ["log", "log", "result"]
    assert published[0]["lines"] == ["early"]
    assert published[1]["lines"] == [f"late {i}" for i in range(120)]
    assert published[2]["lines"] == [] and published[2]["seq"] == 121


async def test_lines_apart_are_separate_events_sent_within_the_linger() -> None:
    recorder = Recorder()
    events = _publisher(recorder, linger=0.05)
    await events.log("first")
    await asyncio.sleep(0.4)
    await events.log("second")
    await events.flush()
    assert [event["lines"] for _, event, _ in recorder.published] == [["first"], ["second"]]
    assert [event["seq"] for _, event, _ in recorder.published] == [0, 1]


async def test_many_lines_are_split_into_events_of_consecutive_seqs() -> None:
    recorder = Recorder()
    events = _publisher(recorder, linger=30)
    for i in range(450):
        await events.log(f"line {i}")
    await events.flush()
    sizes = [len(event["lines"]) for _, event, _ in recorder.published]
    assert sizes == [200, 200, 50]
    assert [event["seq"] for _, event, _ in recorder.published] == [0, 200, 400]


async def test_a_note_joins_the_lines_until_the_result_is_on_its_way() -> None:
    recorder, events = await _started(linger=30)
    await events.log("action 1")
    events.note("[BLOCKED] Connection to 169.254.169.254:80 refused: metadata")
    await events.result(RunResult(outcome="success"), 10)
    events.note("[BLOCKED] after the result")  # a connection refused while closing
    await asyncio.sleep(0.05)
    (result,) = [ResultEvent.model_validate(event) for _, event, _ in recorder.published]
    assert result.lines == [
        "action 1",
        "[BLOCKED] Connection to 169.254.169.254:80 refused: metadata",
    ]
