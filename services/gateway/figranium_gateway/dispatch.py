"""Turning a run call into an execution row, a published run request, and an answer."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import structlog
from nats.js import JetStreamContext

from figranium_common.models import ProxyConfig, RunRequest
from figranium_common.nats import RUNS_DEFAULT_SUBJECT
from figranium_common.runs import PROXIES_SETTING, reachable_tasks, usable_proxies
from figranium_gateway import store, task_store
from figranium_gateway.waiters import Waiters

log = structlog.get_logger(__name__)

POLL_SECONDS = 2.0


def new_execution_id() -> str:
    return f"exec_{int(time.time() * 1000)}_{secrets.token_hex(4)}"


async def build_run_request(
    pool: store.Pool,
    *,
    execution_id: str,
    task: dict[str, Any],
    variables: dict[str, Any],
    source: str,
    timeout_seconds: float,
) -> RunRequest:
    """Everything the runner needs, gathered here because runners never read the database."""
    return RunRequest(
        execution_id=execution_id,
        task=task,
        variables=variables,
        source=source,
        timeout_seconds=timeout_seconds,
        storage_state=await _storage_state(pool, task),
        proxies=await _proxies(pool, task),
        subtasks=await _subtasks(pool, task),
    )


async def _storage_state(pool: store.Pool, task: dict[str, Any]) -> dict[str, Any] | None:
    """The task's saved cookies and local storage, unless the run is to start clean."""
    task_id = task.get("id")
    if task.get("statelessExecution") or not isinstance(task_id, str):
        return None
    return await task_store.get_browser_state(pool, task_id)


async def _proxies(pool: store.Pool, task: dict[str, Any]) -> list[ProxyConfig]:
    if not task.get("rotateProxies"):
        return []
    return usable_proxies(task, await store.get_setting(pool, PROXIES_SETTING))


async def _subtasks(pool: store.Pool, task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    async def fetch(task_id: str) -> dict[str, Any] | None:
        return await task_store.get_task(pool, task_id)

    return await reachable_tasks(task, fetch)


async def publish_run(js: JetStreamContext, request: RunRequest) -> None:
    # The execution id is the message id: a repeated publish is dropped by JetStream.
    await js.publish(
        RUNS_DEFAULT_SUBJECT,
        request.model_dump_json().encode(),
        headers={"Nats-Msg-Id": request.execution_id},
        timeout=5,
    )


async def wait_finished(
    pool: store.Pool, waiters: Waiters, execution_id: str, timeout: float
) -> dict[str, Any] | None:
    """The finished execution, or None when it did not finish within ``timeout``."""
    event = waiters.register(execution_id)
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while True:
            execution = await store.get_execution(pool, execution_id)
            if execution is None or execution["phase"] == "finished":
                return execution
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(event.wait(), timeout=min(POLL_SECONDS, remaining))
            except TimeoutError:
                continue
    finally:
        waiters.unregister(execution_id, event)
