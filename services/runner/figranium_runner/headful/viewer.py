"""The viewer a headful runner serves: noVNC's client files and its ticket-checked websocket.

noVNC, in a browser, speaks RFB over a websocket; x11vnc speaks it over TCP on 127.0.0.1.
websockify usually sits between the two. Here the runner's own aiohttp server does that
job: the ticket in the websocket URL is checked before the upgrade and consumed in the
same process that minted it, so no state is shared between processes and there is one
process fewer to supervise. A connection without a valid ticket gets a 401 and never
reaches x11vnc.

A ticket is for one execution: it opens nothing while the display shows another (or
none), and its connection is closed when that execution's session ends, so a viewer of
one run never sees the next. A view-only ticket is piped to an x11vnc started with
``-viewonly``, which ignores keyboard, mouse and clipboard input; only a control ticket
reaches the x11vnc that takes input.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import structlog
from aiohttp import WSMsgType, web

from figranium_common.probes import start_site
from figranium_runner.headful.display import HeadfulError
from figranium_runner.headful.tickets import Grant, TicketBook
from figranium_runner.metrics import RunnerMetrics

log = structlog.get_logger(__name__)

CHUNK_BYTES = 64 * 1024
# Pings find viewers that vanished without closing (a laptop lid shut), so their
# connections to x11vnc do not stay open for good.
HEARTBEAT_SECONDS = 30.0


def _refusal(status: int, code: str, details: str) -> web.Response:
    return web.json_response({"error": code, "details": details}, status=status)


class Connections:
    """The open viewer connections, by the execution their ticket was for."""

    def __init__(self) -> None:
        self._ended: dict[str, set[asyncio.Event]] = {}

    @contextlib.contextmanager
    def opened(self, execution_id: str) -> Iterator[asyncio.Event]:
        """An event set when ``execution_id``'s session ends, while the connection lasts."""
        ended = asyncio.Event()
        self._ended.setdefault(execution_id, set()).add(ended)
        try:
            yield ended
        finally:
            events = self._ended.get(execution_id, set())
            events.discard(ended)
            if not events:
                self._ended.pop(execution_id, None)

    def end(self, execution_id: str) -> None:
        for ended in self._ended.pop(execution_id, set()):
            ended.set()


def viewer_app(
    web_dir: Path,
    tickets: TicketBook,
    vnc_port: Callable[[bool], int],
    metrics: RunnerMetrics,
    session: Callable[[], str | None] = lambda: None,
    connections: Connections | None = None,
) -> web.Application:
    """``vnc_port(control)`` gives the port of the x11vnc taking input (control) or of the
    view-only one (0 while it is down); ``session`` the execution on the screen, which a
    ticket must be for; ``connections`` lets the session's end close its viewers."""
    live = connections if connections is not None else Connections()

    async def index(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("vnc.html")

    async def websockify(request: web.Request) -> web.StreamResponse:
        with structlog.contextvars.bound_contextvars(execution_id=session(), peer=request.remote):
            return await _websockify(request)

    async def _websockify(request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        ws = web.WebSocketResponse(protocols=("binary",), heartbeat=HEARTBEAT_SECONDS)
        # A request that cannot become a websocket is refused without spending its ticket.
        refused = tickets.check(ticket)
        if refused is None and not ws.can_prepare(request).ok:
            return _refusal(400, "NOT_A_WEBSOCKET", "connect with a websocket, as noVNC does")
        grant: Grant | str = refused or tickets.redeem(ticket)
        if isinstance(grant, str):
            metrics.viewer_connections.labels(result="refused").inc()
            log.warning("headful.viewer_refused", reason=grant)
            return _refusal(401, "INVALID_TICKET", grant)
        if session() != grant.execution_id:
            metrics.viewer_connections.labels(result="refused").inc()
            log.warning(
                "headful.viewer_refused", reason="session ended", ticket_for=grant.execution_id
            )
            return _refusal(
                409,
                "HEADFUL_SESSION_ENDED",
                "the ticket was for an execution the display no longer shows",
            )
        # Registered before anything is awaited: a session ending from here on closes it.
        with live.opened(grant.execution_id) as ended:
            return await _relay(request, ws, grant, ended)

    async def _relay(
        request: web.Request, ws: web.WebSocketResponse, grant: Grant, ended: asyncio.Event
    ) -> web.StreamResponse:
        port = vnc_port(grant.control)
        try:
            if not port:
                raise ConnectionRefusedError("x11vnc is not running")
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as exc:
            metrics.viewer_connections.labels(result="refused").inc()
            log.error("headful.viewer_refused", reason=f"VNC server unreachable: {exc}")
            return _refusal(503, "HEADFUL_UNAVAILABLE", "the display is restarting; try again")
        metrics.viewer_connections.labels(result="accepted").inc()
        try:
            await ws.prepare(request)
            log.info("headful.viewer_connected", control=grant.control)
            await _pipe(ws, reader, writer, ended)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            if ws.prepared:
                await ws.close()
            log.info("headful.viewer_closed")
        return ws

    app = web.Application()
    # Before the static files: the static resource would claim every path under "/".
    app.router.add_get("/", index)
    app.router.add_get("/websockify", websockify)
    app.router.add_static("/", web_dir, show_index=False, follow_symlinks=False)
    return app


async def _pipe(
    ws: web.WebSocketResponse,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    ended: asyncio.Event,
) -> None:
    """Bytes both ways until either side closes or the session ends."""

    async def to_vnc() -> None:
        async for message in ws:
            if message.type is WSMsgType.BINARY:
                writer.write(message.data)
                await writer.drain()

    async def to_browser() -> None:
        while data := await reader.read(CHUNK_BYTES):
            await ws.send_bytes(data)

    directions = [
        asyncio.create_task(to_vnc(), name="viewer-to-vnc"),
        asyncio.create_task(to_browser(), name="viewer-to-browser"),
        asyncio.create_task(ended.wait(), name="viewer-session-end"),
    ]
    try:
        await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for direction in directions:
            direction.cancel()
        # Errors of a side that went away (a reset connection) end the pipe and no more.
        await asyncio.gather(*directions, return_exceptions=True)


class ViewerServer:
    """Serves :func:`viewer_app` while started; port 0 takes a free port."""

    def __init__(self, app: web.Application, *, host: str, port: int) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        try:
            runner = await start_site(self._app, self._host, self._port)
        except OSError as exc:
            raise HeadfulError(f"the viewer cannot listen on port {self._port}: {exc}") from exc
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
