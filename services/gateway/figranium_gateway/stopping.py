"""Stopping a queued or running execution, for every route that stops one.

A runner that already runs it is told over core NATS; a key in the stops bucket makes a
runner that picks it up later skip it; a run still queued is finished here at once
(outcome ``stopped``), since no runner may ever report on it.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from figranium_common.models import RunResult, now_ms
from figranium_common.nats import stop_subject, stops_store
from figranium_gateway import changes
from figranium_gateway.errors import ApiError
from figranium_gateway.ingest import notify_finished
from figranium_gateway.state import JS, NC, POOL, WAITERS
from figranium_gateway.store import executions as execution_store
from figranium_gateway.store import recording

log = structlog.get_logger(__name__)


async def request_stop(app: web.Application, run_id: str) -> str:
    """Stop the execution ``run_id``; its phase afterwards. 404 when there is none."""
    execution = await execution_store.get_execution(app[POOL], run_id)
    if execution is None:
        raise ApiError(404, "EXECUTION_NOT_FOUND", f"no execution {run_id!r}")
    if execution["phase"] != "finished":
        # Remembered for a runner that picks the run up later, and told to one running it.
        await (await stops_store(app[JS])).put(run_id, b"stop")
        await app[NC].publish(stop_subject(run_id), b"stop")
        if execution["phase"] == "queued":
            result = RunResult(outcome="stopped", error="stopped before it started")
            stop = recording.gateway_result(run_id, result, duration_ms=0, at=now_ms())
            await recording.record_result(app[POOL], stop, {"type": "result", "stopped": True})
            await notify_finished(app[NC], run_id, app[WAITERS].finished)
            await changes.notify(app[NC])
        log.info("run.stop_requested", execution_id=run_id, phase=execution["phase"])
    current = await execution_store.get_execution(app[POOL], run_id)
    return str(current["phase"]) if current else "finished"
