"""Getting runs to the runners: the run request of a saved execution, publishing again
those whose publish may have failed, and waiting for a run to finish.

Queuing itself (the execution id, row, request and publish) is ``figranium_common.queue``,
shared with the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from nats.js import JetStreamContext
from pydantic import ValidationError

from figranium_common import queue
from figranium_common.db import Pool
from figranium_common.jsontypes import JsonObject
from figranium_common.models import RunRequest
from figranium_common.secretbox import SecretBox
from figranium_gateway.store import executions
from figranium_gateway.waiters import Waiter

log = structlog.get_logger(__name__)

POLL_SECONDS = 2.0
SWEEP_EVERY_SECONDS = 15.0


async def build_run_request(
    pool: Pool,
    box: SecretBox,
    *,
    execution_id: str,
    task: JsonObject,
    variables: JsonObject,
    source: str,
    timeout_seconds: float,
) -> RunRequest:
    """Everything the runner needs, gathered here because runners never read the database."""
    async with pool.connection() as conn:
        new = queue.NewExecution(execution_id, task, source, variables)
        return await queue.gather_run_request(conn, box, new, timeout_seconds=timeout_seconds)


async def sweep_queued(
    pool: Pool,
    js: JetStreamContext,
    box: SecretBox,
    transit_box: SecretBox,
    *,
    timeout_seconds: float,
) -> None:
    """Publish again runs saved as queued whose publish may have failed.

    Only inside JetStream's duplicate window, so a run that did reach the queue is never
    queued twice.
    """
    while True:
        await asyncio.sleep(SWEEP_EVERY_SECONDS)
        try:
            stale = await executions.stale_queued(pool, older_than_s=20, younger_than_s=240)
            for row in stale:
                try:
                    request = await build_run_request(
                        pool,
                        box,
                        execution_id=row["id"],
                        task=row["task_snapshot"],
                        variables=row["variables"],
                        source=row["source"],
                        timeout_seconds=timeout_seconds,
                    )
                except ValidationError as exc:  # queued before a rule it breaks was made
                    log.warning("sweeper.invalid_task", execution_id=row["id"], error=str(exc))
                    continue
                await queue.publish_run(js, request, transit_box)
        except Exception as exc:
            log.warning("sweeper.failed", error=str(exc))


async def wait_finished(
    pool: Pool, waiter: Waiter, execution_id: str, timeout: float
) -> executions.RunOutcome | None:
    """The finished run's ``executions.run_outcome``, or None when it did not finish within
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
        execution = await executions.run_outcome(pool, execution_id)
        if execution is None or execution["phase"] == "finished":
            return execution
        if loop.time() >= deadline:
            return None
