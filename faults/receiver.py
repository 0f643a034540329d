"""A webhook receiver on 127.0.0.1 that records every delivery: its delivery id (the
``X-Figranium-Delivery`` header) and the execution it is about. Deliveries are at least
once, so the same delivery id may arrive more than once; :meth:`Receiver.duplicates`
counts those."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Self

from aiohttp import web

from figranium_devstack.ports import free_port

DELIVERY_HEADER = "X-Figranium-Delivery"


class Receiver:
    """An aiohttp server on its own thread and loop; answers every delivery 200."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._lock = threading.Lock()
        self._seen: list[tuple[str, str]] = []  # (execution id, delivery id) per delivery
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        execution_id = str(body.get("executionId")) if isinstance(body, dict) else ""
        with self._lock:
            self._seen.append((execution_id, request.headers.get(DELIVERY_HEADER, "")))
        return web.json_response({"ok": True})

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def deliveries(self) -> dict[str, Counter[str]]:
        """Per execution id: how often each delivery id arrived."""
        found: dict[str, Counter[str]] = {}
        with self._lock:
            for execution_id, delivery_id in self._seen:
                found.setdefault(execution_id, Counter())[delivery_id] += 1
        return found

    def duplicates(self, execution_ids: set[str]) -> int:
        """Deliveries of ``execution_ids`` beyond the first of each delivery id."""
        return sum(
            count - 1
            for execution_id, ids in self.deliveries().items()
            if execution_id in execution_ids
            for count in ids.values()
        )
