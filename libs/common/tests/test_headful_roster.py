"""The headful roster: who is live, expiry on silence, goodbyes, waiting right after start."""

from __future__ import annotations

import asyncio
from typing import Any

from figranium_common.headful import (
    EXPIRY_SECONDS,
    HeadfulPresence,
    HeadfulRoster,
)
from figranium_common.nats import (
    HEADFUL_PING_SUBJECT,
    HEADFUL_PRESENCE_SUBJECT,
    RUNS_DEFAULT_SUBJECT,
    RUNS_HEADFUL_SUBJECT,
    headful_ticket_subject,
    run_subject,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeSubscription:
    async def unsubscribe(self) -> None:
        pass


class FakeNats:
    """Records subscriptions and publishes, as much of the client as the roster uses."""

    def __init__(self) -> None:
        self.subscribed: list[str] = []
        self.published: list[tuple[str, bytes]] = []

    async def subscribe(self, subject: str, cb: Any) -> FakeSubscription:
        self.subscribed.append(subject)
        return FakeSubscription()

    async def publish(self, subject: str, payload: bytes) -> None:
        self.published.append((subject, payload))


def _presence(runner_id: str, **fields: Any) -> HeadfulPresence:
    return HeadfulPresence(
        runner_id=runner_id,
        novnc_port=54311,
        viewer_url=f"http://{runner_id}:54311",
        **fields,
    )


def test_run_subjects() -> None:
    assert run_subject("headful") == RUNS_HEADFUL_SUBJECT
    assert run_subject("agent") == RUNS_DEFAULT_SUBJECT
    assert run_subject("scrape") == RUNS_DEFAULT_SUBJECT
    assert headful_ticket_subject("r-1") == "figranium.headful.v1.ticket.r-1"


async def test_start_listens_then_pings() -> None:
    nc = FakeNats()
    roster = HeadfulRoster()
    await roster.start(nc)  # type: ignore[arg-type]
    assert nc.subscribed == [HEADFUL_PRESENCE_SUBJECT]
    assert nc.published == [(HEADFUL_PING_SUBJECT, b"")]
    await roster.stop()


def test_latest_presence_per_runner_until_silence() -> None:
    clock = Clock()
    roster = HeadfulRoster(clock=clock)
    assert roster.runners() == [] and not roster.available()
    roster.observe(_presence("b"))
    roster.observe(_presence("a"))
    roster.observe(_presence("b", is_running=True, execution_id="exec_1", started_at=5))
    assert [(p.runner_id, p.execution_id) for p in roster.runners()] == [
        ("a", None),
        ("b", "exec_1"),
    ]
    clock.now += EXPIRY_SECONDS - 1
    roster.observe(_presence("a"))  # a heartbeat keeps "a"; "b" goes silent
    clock.now += 2
    assert [p.runner_id for p in roster.runners()] == ["a"]
    clock.now += EXPIRY_SECONDS + 0.1
    assert not roster.available()


def test_a_goodbye_forgets_at_once() -> None:
    roster = HeadfulRoster(clock=Clock())
    roster.observe(_presence("a"))
    roster.observe(_presence("a", leaving=True))
    assert roster.runners() == []
    roster.observe(_presence("z", leaving=True))  # a runner never seen: nothing to forget
    assert roster.runners() == []


async def test_wait_available() -> None:
    roster = HeadfulRoster()
    assert not await roster.wait_available(0.05)
    later = asyncio.get_running_loop().call_later(0.05, roster.observe, _presence("a"))
    try:
        assert await roster.wait_available(5)
    finally:
        later.cancel()
    assert await roster.wait_available(0)


async def test_check_available_waits_only_right_after_start() -> None:
    clock = Clock()
    roster = HeadfulRoster(clock=clock)
    assert not await roster.check_available()  # never started: nobody to wait for
    await roster.start(FakeNats())  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, roster.observe, _presence("a"))
    assert await roster.check_available()  # the answer to the ping arrives
    roster.observe(_presence("a", leaving=True))
    clock.now += 10  # long after start: "none" is believed at once
    started = loop.time()
    assert not await roster.check_available()
    assert loop.time() - started < 0.5


def test_presence_round_trips_as_json() -> None:
    presence = _presence("r", is_running=True, execution_id="exec_2", started_at=7)
    assert HeadfulPresence.model_validate_json(presence.model_dump_json()) == presence
