"""Turning a run call into an execution row, a published run request, and an answer."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import Any

import structlog
from nats.js import JetStreamContext

from figranium_common import queue, transit
from figranium_common.models import RunRequest
from figranium_common.nats import run_subject
from figranium_common.secretbox import SecretBox
from figranium_gateway import store
from figranium_gateway.waiters import Waiter

log = structlog.get_logger(__name__)

POLL_SECONDS = 2.0


def new_execution_id() -> str:
    return f"exec_{int(time.time() * 1000)}_{secrets.token_hex(4)}"


async def build_run_request(
    pool: store.Pool,
    box: SecretBox,
    *,
    execution_id: str,
    task: dict[str, Any],
    variables: dict[str, Any],
    source: str,
    timeout_seconds: float,
) -> RunRequest:
    """Everything the runner needs, gathered here because runners never read the database."""
    async with pool.connection() as conn:
        new = queue.NewExecution(execution_id, task, source, variables)
        return await queue.gather_run_request(conn, box, new, timeout_seconds=timeout_seconds)


async def publish_run(js: JetStreamContext, request: RunRequest, box: SecretBox) -> None:
    """Publish ``request`` with its secrets sealed under the transit key (derived from
    ``box``'s master key), so the RUNS stream on disk holds none in clear."""
    sealed = transit.seal_run_request(transit.derived_transit_box(box), request)
    # The execution id is the message id: a repeated publish is dropped by JetStream.
    await js.publish(
        run_subject(request.task),
        sealed.model_dump_json().encode(),
        headers={"Nats-Msg-Id": request.execution_id},
        timeout=5,
    )


async def wait_finished(
    pool: store.Pool, waiter: Waiter, execution_id: str, timeout: float
) -> dict[str, Any] | None:
    """The finished run's ``store.run_outcome``, or None when it did not finish within
    ``timeout`` (or was deleted meanwhile). ``waiter`` was entered before the publish: until
    it is woken, the database is only asked every ``POLL_SECONDS``, for a missed notice."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                waiter.done.wait(), timeout=max(0.0, min(POLL_SECONDS, remaining))
            )
        if waiter.outcome is not None:
            return waiter.outcome
        waiter.done.clear()
        execution = await store.run_outcome(pool, execution_id)
        if execution is None or execution["phase"] == "finished":
            return execution
        if loop.time() >= deadline:
            return None
