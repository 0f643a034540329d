"""``RUNNER_ENGINE=null``: runs that complete without a browser, for benchmarks only.

Everything around the run is as usual (the worker's pull, the stop requests, the started,
log and result events, the ack), so the control plane (gateways, PostgreSQL, NATS,
webhooks) can be pushed to its ceiling without Chromium taking the machine's CPU. Each run
succeeds after ``RUNNER_NULL_DELAY_MS`` with a small result naming its execution.
"""

from __future__ import annotations

import asyncio

from figranium_common.models import RunResult
from figranium_runner.run import Run

WARNING = "RUNNER_ENGINE=null: runs complete without a browser; for benchmarks only"


class NullRun(Run):
    """One attempt that opens no browser: announce, wait the configured delay (a stop
    request ends it as ``stopped``), then publish a success result and ack."""

    async def run(self) -> None:
        await self._announce()
        execution_id = self.request.execution_id
        try:
            delay_ms = self._res.config.runner_null_delay_ms
            if delay_ms:
                await asyncio.sleep(delay_ms / 1000)
            await self.events.log(f"Null engine: execution {execution_id} completed")
            result = RunResult(outcome="success", data={"executionId": execution_id})
        except asyncio.CancelledError:
            if not self.stop_requested:
                raise  # a shutdown drain: handed back by the worker
            self._task.uncancel()
            await self.events.log("Execution stopped by request")
            result = RunResult(outcome="stopped", error="stopped by request")
        await self._finish_despite_cancel(result)
