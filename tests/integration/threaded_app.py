"""An aiohttp application served from its own thread and event loop, on a free loopback
port: stand-ins for third parties that synchronous and asynchronous tests can both use."""

from __future__ import annotations

import asyncio
import threading
from typing import Self

from aiohttp import web


class ThreadedApp:
    """Subclasses build the application in ``_app``; ``url`` is set once started."""

    name = "fake"

    def __init__(self) -> None:
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _app(self) -> web.Application:
        raise NotImplementedError

    def _on_loop_started(self) -> None:
        """Runs in the server's loop before it serves (for loop-bound state)."""

    def _on_stop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Runs before the loop is stopped (to end long-running answers at once)."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            runner = web.AppRunner(self._app(), access_log=None)
            try:
                self._on_loop_started()
                loop.run_until_complete(runner.setup())
                site = web.TCPSite(runner, "127.0.0.1", 0)
                loop.run_until_complete(site.start())
                self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
                self._loop = loop
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.run_until_complete(runner.cleanup())
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(runner.cleanup())
                loop.close()

        self._thread = threading.Thread(target=serve, name=self.name, daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        if not self.url:
            raise RuntimeError(f"the {self.name} did not start")

    def stop(self) -> None:
        loop = self._loop
        if loop is not None:
            self._on_stop(loop)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None
        self._thread = None
