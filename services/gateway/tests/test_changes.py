"""The change stream's pure parts: event framing, resume ids, the replica's feed."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import make_mocked_request

from figranium_gateway.changes import ChangeFeed, log_extra
from figranium_gateway.errors import ApiError
from figranium_gateway.routes.stream import format_event, start_after


def test_event_framing_keeps_one_data_line() -> None:
    row = {"id": 7, "kind": "log", "payload": {"executionId": "e", "line": "a\nb"}}
    assert format_event(row) == (b'id: 7\nevent: log\ndata: {"executionId":"e","line":"a\\nb"}\n\n')


def test_resume_id_header_wins_and_bad_ids_are_refused() -> None:
    assert start_after(make_mocked_request("GET", "/api/executions/stream")) is None
    request = make_mocked_request(
        "GET", "/api/executions/stream?lastEventId=3", headers={"Last-Event-ID": "9"}
    )
    assert start_after(request) == 9
    assert start_after(make_mocked_request("GET", "/s?lastEventId=4")) == 4
    for bad in ("x", "-1", "1.5", "+3", "9" * 19):
        with pytest.raises(ApiError):
            start_after(make_mocked_request("GET", "/s", headers={"Last-Event-ID": bad}))


def test_long_log_lines_are_cut() -> None:
    extra = log_extra({"line": "x" * 5000}, attempt=1, seq=2)
    assert len(extra["line"]) == 2001 and extra["attempt"] == 1 and extra["seq"] == 2


async def test_feed_wakes_waiters_on_news_and_at_close() -> None:
    feed = ChangeFeed()
    feed.latest = 5
    await asyncio.wait_for(feed.wait(4, timeout=10), 1)  # already past: no wait

    waiter = asyncio.create_task(feed.wait(5, timeout=10))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    feed.latest = 6
    feed._wake()
    await asyncio.wait_for(waiter, 1)

    waiter = asyncio.create_task(feed.wait(6, timeout=10))
    await asyncio.sleep(0.05)
    feed.close()
    await asyncio.wait_for(waiter, 1)
    assert feed.closed
    await asyncio.wait_for(feed.wait(6, timeout=10), 1)


async def test_feed_wait_times_out() -> None:
    feed = ChangeFeed()
    started = asyncio.get_running_loop().time()
    await feed.wait(0, timeout=0.1)
    assert asyncio.get_running_loop().time() - started < 1
