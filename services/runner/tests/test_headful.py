"""Headful runner parts on their own: tickets, the viewer's ticket check and pipe, the display."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from figranium_runner.headful.display import VirtualDisplay, missing_programs
from figranium_runner.headful.tickets import Grant, TicketBook
from figranium_runner.headful.viewer import Connections, viewer_app
from figranium_runner.metrics import RunnerMetrics

RUN = Grant("exec_a")


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_a_ticket_opens_one_connection() -> None:
    book = TicketBook(60, clock=Clock())
    ticket, expires_at = book.mint(RUN)
    assert len(ticket) >= 40
    assert abs(expires_at - (time.time() + 60) * 1000) < 5000
    assert book.redeem(ticket) == RUN
    assert book.redeem(ticket) == "the ticket is unknown or was already used"
    control, _ = book.mint(Grant("exec_a", control=True))
    assert book.redeem(control) == Grant("exec_a", control=True)


def test_unknown_and_missing_tickets() -> None:
    book = TicketBook(60, clock=Clock())
    ticket, _ = book.mint(RUN)
    assert book.redeem("") == "no ticket was given"
    assert book.redeem("bogus") == "the ticket is unknown or was already used"
    assert book.redeem(ticket[:-1]) == "the ticket is unknown or was already used"
    assert book.redeem(ticket) == RUN  # wrong guesses do not burn the real one


def test_checking_a_ticket_does_not_use_it() -> None:
    clock = Clock()
    book = TicketBook(60, clock=clock)
    ticket, _ = book.mint(RUN)
    assert book.check("") == "no ticket was given"
    assert book.check("bogus") == "the ticket is unknown or was already used"
    assert book.check(ticket) is None
    assert book.redeem(ticket) == RUN
    assert book.check(ticket) == "the ticket is unknown or was already used"
    expiring, _ = book.mint(RUN)
    clock.now += 60
    assert book.check(expiring) == "the ticket expired"


def test_tickets_expire_and_are_purged() -> None:
    clock = Clock()
    book = TicketBook(60, clock=clock)
    old, _ = book.mint(RUN)
    clock.now += 59.9
    kept, _ = book.mint(RUN)
    clock.now += 0.1
    assert book.redeem(old) == "the ticket expired"
    assert len(book) == 1
    clock.now += 60
    fresh, _ = book.mint(RUN)  # minting purges what expired
    assert len(book) == 1
    assert book.redeem(kept) == "the ticket is unknown or was already used"
    assert book.redeem(fresh) == RUN


@pytest.fixture
async def vnc() -> AsyncIterator[int]:
    """A stand-in for x11vnc: greets, then echoes."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"RFB 003.008\n")
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


def _web_dir(tmp_path: Path) -> Path:
    (tmp_path / "novnc" / "app").mkdir(parents=True)
    (tmp_path / "novnc" / "vnc.html").write_text("<title>noVNC</title>")
    (tmp_path / "novnc" / "app" / "ui.js").write_text("// ui")
    (tmp_path / "secret.txt").write_text("outside")
    return tmp_path / "novnc"


async def test_viewer_checks_the_ticket_before_the_upgrade(tmp_path: Path, vnc: int) -> None:
    book = TicketBook(60)
    metrics = RunnerMetrics()
    app = viewer_app(_web_dir(tmp_path), book, lambda control: vnc, metrics, lambda: "exec_a")
    async with TestClient(TestServer(app)) as client:
        ticket, _ = book.mint(RUN)
        # A plain GET is no websocket: refused, and the ticket is still good afterwards.
        plain = await client.get(f"/websockify?ticket={ticket}")
        assert plain.status == 400
        assert (await plain.json())["error"] == "NOT_A_WEBSOCKET"
        ws = await client.ws_connect(f"/websockify?ticket={ticket}", protocols=("binary",))
        assert ws.protocol == "binary"
        assert await ws.receive_bytes(timeout=5) == b"RFB 003.008\n"
        await ws.send_bytes(b"\x01\x02")
        assert await ws.receive_bytes(timeout=5) == b"\x01\x02"
        await ws.close()

        for query in ("", "?ticket=nope", f"?ticket={ticket}"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect(f"/websockify{query}")
            assert refused.value.status == 401
        answer = await client.get("/websockify?ticket=nope")
        assert answer.status == 401
        assert (await answer.json())["error"] == "INVALID_TICKET"

        counts = [
            metrics.registry.get_sample_value(
                "figranium_headful_viewer_connections_total", {"result": result}
            )
            for result in ("accepted", "refused")
        ]
        assert counts == [1, 4]


async def _greeter(greeting: bytes) -> asyncio.Server:
    """A stand-in for one x11vnc, telling which one it is."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        await writer.drain()
        await reader.read()  # until the relay hangs up
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def test_a_ticket_opens_its_own_session_only_and_only_as_granted(tmp_path: Path) -> None:
    book = TicketBook(60)
    connections = Connections()
    shown: list[str | None] = ["exec_b"]
    view, control = await _greeter(b"view-only"), await _greeter(b"control")
    ports = {False: view.sockets[0].getsockname()[1], True: control.sockets[0].getsockname()[1]}
    app = viewer_app(
        _web_dir(tmp_path),
        book,
        lambda wants_control: ports[wants_control],
        RunnerMetrics(),
        lambda: shown[0],
        connections,
    )
    async with view, control, TestClient(TestServer(app)) as client:
        # Minted for exec_a, while the display shows exec_b (or nothing): refused.
        for now_showing in ("exec_b", None):
            shown[0] = now_showing
            ticket, _ = book.mint(Grant("exec_a"))
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect(f"/websockify?ticket={ticket}")
            assert refused.value.status == 409

        # Its own session: a view-only ticket reaches the -viewonly server, and only it.
        shown[0] = "exec_a"
        watcher = await client.ws_connect(f"/websockify?ticket={book.mint(Grant('exec_a'))[0]}")
        assert await watcher.receive_bytes(timeout=5) == b"view-only"
        driver = await client.ws_connect(
            f"/websockify?ticket={book.mint(Grant('exec_a', control=True))[0]}"
        )
        assert await driver.receive_bytes(timeout=5) == b"control"

        # The session ends: its viewers are cut off, so none watches the next run.
        connections.end("exec_a")
        for ws in (watcher, driver):
            closing = await ws.receive(timeout=5)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_viewer_serves_the_client_files_only(tmp_path: Path) -> None:
    app = viewer_app(_web_dir(tmp_path), TicketBook(60), lambda control: 0, RunnerMetrics())
    async with TestClient(TestServer(app)) as client:
        index = await client.get("/", allow_redirects=False)
        assert index.status == 302 and index.headers["Location"] == "vnc.html"
        assert await (await client.get("/vnc.html")).text() == "<title>noVNC</title>"
        assert (await client.get("/app/ui.js")).status == 200
        for path in ("/app/", "/app", "/..%2Fsecret.txt", "/app/..%2F..%2Fsecret.txt"):
            assert (await client.get(path)).status in (403, 404), path


async def test_viewer_without_vnc_server_answers_503(tmp_path: Path) -> None:
    book = TicketBook(60)
    app = viewer_app(_web_dir(tmp_path), book, lambda control: 0, RunnerMetrics(), lambda: "exec_a")
    async with TestClient(TestServer(app)) as client:
        ticket, _ = book.mint(RUN)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(f"/websockify?ticket={ticket}")
        assert refused.value.status == 503


@pytest.mark.skipif(bool(missing_programs()), reason="Xvfb or x11vnc is not installed")
async def test_display_comes_back_after_its_processes_die() -> None:
    restarted = asyncio.Event()

    async def on_restart() -> None:
        restarted.set()

    display = VirtualDisplay("800x600", on_restart=on_restart)
    await display.start()
    try:
        assert display.problem() is None and display.size == (800, 600)
        assert display.display.startswith(":") and display.vnc_port > 0
        reader, writer = await asyncio.open_connection("127.0.0.1", display.vnc_port)
        assert (await reader.readexactly(4)) == b"RFB "
        writer.close()

        assert display._vnc is not None
        os.killpg(display._vnc.proc.pid, signal.SIGKILL)
        await asyncio.wait_for(restarted.wait(), 15)
        assert display.problem() is None
        restarted.clear()

        assert display._xvfb is not None
        xvfb = display._xvfb.proc.pid
        os.killpg(xvfb, signal.SIGKILL)
        await asyncio.sleep(0.2)
        assert display.problem() == "Xvfb is not running"
        await asyncio.wait_for(restarted.wait(), 15)
        assert display.problem() is None
    finally:
        await display.close()
    assert display.problem() is not None
    for child in (display._xvfb, display._vnc):
        assert child is not None and child.proc.returncode is not None
