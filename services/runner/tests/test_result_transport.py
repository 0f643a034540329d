"""How a result too large for one NATS message leaves the runner: through the results
bucket, or as a clear error when it cannot fit there; a transient failure still raises
(the run is then delivered again). Against a real NATS server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from figranium_common.models import ResultEvent, RunResult
from figranium_common.nats import (
    CAPTURES_BUCKET,
    EVENTS_STREAM,
    RESULTS_BUCKET,
    RunConsumerLimits,
    captures_store,
    declare_topology,
    event_subject,
    is_no_room,
    put_file_object,
    result_object_name,
    results_store,
)
from figranium_runner.events import EventPublisher

LIMITS = RunConsumerLimits(ack_wait_seconds=30, max_deliver=3)
BIG = 3 * 1024 * 1024


async def _declared(js: JetStreamContext, **sizes: int) -> None:
    await declare_topology(js, LIMITS, **sizes)
    for bucket in (RESULTS_BUCKET, CAPTURES_BUCKET):
        await js.purge_stream(f"OBJ_{bucket}")


@pytest.fixture
async def js(nats_client: NATS) -> JetStreamContext:
    """The run topology declared with its default sizes, both buckets empty."""
    declared = nats_client.jetstream()
    await _declared(declared)
    return declared


async def _published(js: JetStreamContext, execution_id: str) -> ResultEvent:
    stored = await js.get_last_msg(EVENTS_STREAM, event_subject(execution_id))
    return ResultEvent.model_validate_json(stored.data or b"")


def _publisher(nc: NATS, execution_id: str, max_result_bytes: int) -> EventPublisher:
    return EventPublisher(
        nc.jetstream(),
        execution_id,
        1,
        linger_seconds=0,
        max_payload=int(nc.max_payload),
        max_result_bytes=max_result_bytes,
    )


async def test_a_result_larger_than_a_message_goes_whole_through_the_results_bucket(
    nats_client: NATS, js: JetStreamContext
) -> None:
    events = _publisher(nats_client, "exec_big", max_result_bytes=10 * BIG)
    await events.log("a line said last")
    await events.result(RunResult(outcome="success", html="x" * BIG, data={"n": 1}), 5)

    stand_in = await _published(js, "exec_big")
    assert stand_in.result_object == result_object_name("exec_big", 1)
    assert stand_in.result.outcome == "success" and stand_in.result.html is None
    whole = await (await results_store(js)).get(stand_in.result_object)
    event = ResultEvent.model_validate_json(whole.data or b"")
    assert event.result.html == "x" * BIG and event.result.data == {"n": 1}
    assert (event.seq, event.lines) == (stand_in.seq, ["a line said last"])


async def test_a_result_over_max_result_bytes_ends_the_run_with_an_error_naming_it(
    nats_client: NATS, js: JetStreamContext
) -> None:
    events = _publisher(nats_client, "exec_huge", max_result_bytes=BIG)
    await events.log("a line said last")
    await events.result(RunResult(outcome="success", html="x" * (BIG + 1)), 5)

    event = await _published(js, "exec_huge")
    assert event.result_object is None
    assert event.result.outcome == "error"
    assert event.result.error is not None
    assert event.result.error.startswith("RESULT_TOO_LARGE") and "MAX_RESULT_BYTES" in (
        event.result.error
    )
    # The line that would have ridden in the result went out on its own, before it.
    assert event.lines == []
    assert (await (await results_store(js)).status()).size == 0


async def test_a_full_results_bucket_ends_the_run_with_an_error_naming_its_setting(
    nats_client: NATS,
) -> None:
    js = nats_client.jetstream()
    await _declared(js, results_max_bytes=BIG // 2)
    try:
        events = _publisher(nats_client, "exec_nofit", max_result_bytes=10 * BIG)
        await events.result(RunResult(outcome="success", html="x" * BIG), 5)
    finally:
        await _declared(js)
    event = await _published(js, "exec_nofit")
    assert event.result.outcome == "error" and event.result.error is not None
    assert "RESULTS_MAX_BYTES" in event.result.error


async def test_a_transient_failure_raises_so_the_run_is_delivered_again(
    nats_client: NATS, js: JetStreamContext
) -> None:
    events = _publisher(nats_client, "exec_away", max_result_bytes=10 * BIG)
    # The results bucket is not there (a NATS server that lost its store): not a reason to
    # give the run up.
    await js.delete_object_store(RESULTS_BUCKET)
    try:
        with pytest.raises(Exception) as raised:
            await events.result(RunResult(outcome="success", html="x" * BIG), 5)
        assert not is_no_room(raised.value)
    finally:
        await _declared(js)


@pytest.mark.parametrize("size", [0, 1000, 128 * 1024, 5 * 128 * 1024 * 4 + 3])
async def test_a_file_streams_into_the_bucket_and_reads_back_whole(
    js: JetStreamContext, tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    path = tmp_path / "download.bin"
    path.write_bytes(data)
    name = f"exec_file_{size}_download_x.bin"
    assert await put_file_object(js, CAPTURES_BUCKET, name, path) == size
    got = await (await captures_store(js)).get(name)  # nats-py checks size and digest
    assert got.data == data


async def test_a_file_that_does_not_fit_the_captures_bucket_is_refused_as_no_room(
    nats_client: NATS, tmp_path: Path
) -> None:
    js = nats_client.jetstream()
    await _declared(js, captures_max_bytes=512 * 1024)
    try:
        path = tmp_path / "download.bin"
        path.write_bytes(os.urandom(2 * 1024 * 1024))
        with pytest.raises(Exception) as raised:
            await put_file_object(js, CAPTURES_BUCKET, "exec_full_download_x.bin", path)
        assert is_no_room(raised.value)
        # What was stored of it is removed again.
        assert (await (await captures_store(js)).status()).size == 0
    finally:
        await _declared(js)


async def test_the_buckets_get_their_sizes_where_the_topology_is_declared(
    nats_client: NATS,
) -> None:
    js = nats_client.jetstream()
    await _declared(js, captures_max_bytes=10 * BIG, results_max_bytes=5 * BIG)
    captures = await js.stream_info(f"OBJ_{CAPTURES_BUCKET}")
    results = await js.stream_info(f"OBJ_{RESULTS_BUCKET}")
    assert isinstance(captures.config, StreamConfig)
    assert (captures.config.max_bytes, results.config.max_bytes) == (10 * BIG, 5 * BIG)
    await _declared(js)
    captures = await js.stream_info(f"OBJ_{CAPTURES_BUCKET}")
    assert captures.config.max_bytes == -1


async def test_a_bucket_size_the_server_cannot_reserve_stops_the_declaration_naming_it(
    nats_client: NATS,
) -> None:
    js = nats_client.jetstream()
    await js.delete_object_store(CAPTURES_BUCKET)
    try:
        with pytest.raises(RuntimeError, match="CAPTURES_MAX_BYTES"):
            await declare_topology(js, LIMITS, captures_max_bytes=10**18)
    finally:
        await _declared(js)
