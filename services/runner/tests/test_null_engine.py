"""RUNNER_ENGINE=null: runs taken from the RUNS stream as usual complete without a browser,
with a success result naming the execution; a stop still ends one as stopped. Against a
real NATS server, with a BrowserHost that is never started (a run that touched it would
fail)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from figranium_common.config import Config
from figranium_common.models import ResultEvent, RunRequest
from figranium_common.nats import (
    EVENTS_STREAM,
    RUNNERS_CONSUMER,
    RUNS_DEFAULT_SUBJECT,
    RUNS_STREAM,
    RunConsumerLimits,
    declare_topology,
    event_subject,
    stop_subject,
)
from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port
from figranium_runner.__main__ import serve
from figranium_runner.browser import BrowserHost
from figranium_runner.metrics import RunnerMetrics
from figranium_runner.worker import Worker


@pytest.fixture
async def js(nats_client: NATS) -> JetStreamContext:
    declared = nats_client.jetstream()
    await declare_topology(declared, RunConsumerLimits(ack_wait_seconds=30, max_deliver=3))
    return declared


def _config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, delay_ms: int) -> Config:
    monkeypatch.setenv("RUNNER_ENGINE", "null")
    monkeypatch.setenv("RUNNER_NULL_DELAY_MS", str(delay_ms))
    monkeypatch.setenv("RUN_LOG_LINGER_SECONDS", "0")
    monkeypatch.setenv("FIGRANIUM_DATA_DIR", str(tmp_path))  # the transit key's master key
    return Config()


@contextlib.asynccontextmanager
async def _worker(config: Config, nc: NATS, js: JetStreamContext) -> AsyncIterator[Worker]:
    browser = BrowserHost("/nonexistent/chromium")  # never started: no browser at all
    worker = Worker(config, nc, js, browser, RunnerMetrics(), slots=4)
    stopping = asyncio.Event()
    running = asyncio.create_task(worker.run(stopping))
    try:
        yield worker
    finally:
        stopping.set()
        await asyncio.wait_for(running, 30)
        await worker.drain(5)
    assert not browser.connected


async def _publish(js: JetStreamContext, execution_id: str) -> None:
    request = RunRequest(execution_id=execution_id, task={"id": "t_null", "url": "about:blank"})
    await js.publish(RUNS_DEFAULT_SUBJECT, request.model_dump_json().encode())


async def _result(js: JetStreamContext, execution_id: str, timeout: float = 20) -> ResultEvent:
    """The execution's result event, once it is in the events stream."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            stored = await js.get_last_msg(EVENTS_STREAM, event_subject(execution_id))
            if b'"type":"result"' in (stored.data or b""):
                return ResultEvent.model_validate_json(stored.data or b"")
        assert time.monotonic() < deadline, f"no result for {execution_id}"
        await asyncio.sleep(0.05)


async def _acked_all(js: JetStreamContext, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        info = await js.consumer_info(RUNS_STREAM, RUNNERS_CONSUMER)
        if info.num_ack_pending == 0 and info.num_pending == 0:
            return
        assert time.monotonic() < deadline, "runs left unacknowledged"
        await asyncio.sleep(0.05)


async def test_null_runs_succeed_at_once_without_a_browser(
    nats_client: NATS, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = _config(monkeypatch, tmp_path, delay_ms=0)
    async with _worker(config, nats_client, js):
        ids = [f"exec_null_{i}" for i in range(5)]
        for execution_id in ids:
            await _publish(js, execution_id)
        for execution_id in ids:
            event = await _result(js, execution_id)
            assert event.result.outcome == "success"
            assert event.result.data == {"executionId": execution_id}
            assert event.lines == [f"Null engine: execution {execution_id} completed"]
            assert event.started is not None  # the start rode in the result
        await _acked_all(js)


async def test_a_stop_ends_a_null_run_in_flight_as_stopped(
    nats_client: NATS, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = _config(monkeypatch, tmp_path, delay_ms=600_000)
    async with _worker(config, nats_client, js) as worker:
        await _publish(js, "exec_null_stop")
        deadline = time.monotonic() + 20
        while worker.busy == 0:  # taken and waiting out its delay
            assert time.monotonic() < deadline, "the run was never taken"
            await asyncio.sleep(0.05)
        await nats_client.publish(stop_subject("exec_null_stop"), b"")
        event = await _result(js, "exec_null_stop")
        assert event.result.outcome == "stopped"
        await _acked_all(js)


async def test_a_null_runner_is_ready_without_chromium_and_says_so(
    module_nats: LocalNats,
    js: JetStreamContext,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    monkeypatch.setenv("NATS_URL", module_nats.url)
    monkeypatch.setenv("RUNNER_METRICS_PORT", str(port))
    monkeypatch.setenv("HOST", "127.0.0.1")
    monkeypatch.setenv("CHROMIUM_PATH", "/nonexistent/chromium")  # launching it would fail
    config = _config(monkeypatch, tmp_path, delay_ms=0)
    serving = asyncio.create_task(serve(config))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            deadline = time.monotonic() + 30
            while True:
                assert not serving.done(), serving.result()
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                assert time.monotonic() < deadline, "the null runner never became ready"
                await asyncio.sleep(0.1)
            metrics = (await client.get("/metrics")).text
        assert 'figranium_runner_engine{engine="null"} 1.0' in metrics
        await _publish(js, "exec_null_served")
        assert (await _result(js, "exec_null_served")).result.outcome == "success"
    finally:
        os.kill(os.getpid(), signal.SIGTERM)  # serve's own handler: a clean drain
        await asyncio.wait_for(serving, 30)
    assert "RUNNER_ENGINE=null: runs complete without a browser" in capsys.readouterr().out
