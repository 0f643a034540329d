"""The virtual display of a headful runner: Xvfb, and x11vnc sharing it on 127.0.0.1.

Xvfb picks a free display number itself (``-displayfd``). Two x11vnc share it, each on a
free loopback port that only the runner's viewer connects to: one with ``-viewonly``,
for view-only tickets, which drops every keyboard, mouse and clipboard message of its
clients in the server itself, and one that takes input, for control tickets. Separate
servers rather than filtering RFB in the relay: there is no protocol parser to get
wrong, and whatever extension a client speaks, the view-only server takes no input.

All run in process groups of their own, so stopping them leaves nothing behind. A
process that dies is logged and started again (Xvfb first: x11vnc cannot outlive its
display); until then :meth:`VirtualDisplay.problem` says what is down, for readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
from collections import deque
from collections.abc import Awaitable, Callable

import structlog

from figranium_common.errors import FigraniumError, describe

log = structlog.get_logger(__name__)

PROGRAMS = ("Xvfb", "x11vnc")
START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 3.0
RESTART_DELAY_SECONDS = 1.0
_TAIL_LINES = 20


class HeadfulError(FigraniumError):
    """The headful runner cannot serve: its display, VNC server or viewer is down."""

    code = "HEADFUL_UNAVAILABLE"


def watch(task: asyncio.Task[None]) -> asyncio.Task[None]:
    """A background task of the headful runner must not die quietly: if it does, stop the
    runner (a graceful SIGTERM), so that an orchestrator starts a whole one again."""

    def died(done: asyncio.Task[None]) -> None:
        if not done.cancelled() and done.exception() is not None:
            log.error("headful.task_died", task=done.get_name(), error=repr(done.exception()))
            signal.raise_signal(signal.SIGTERM)

    task.add_done_callback(died)
    return task


def missing_programs() -> list[str]:
    return [program for program in PROGRAMS if shutil.which(program) is None]


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Child:
    """One supervised program, its output kept (last lines) for the log when it dies."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self.tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self._reader: asyncio.Task[None] | None = None

    def keep_output(self) -> None:
        self._reader = asyncio.create_task(self._read(), name=f"{self.name}-output")

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.tail.append(line.decode(errors="replace").rstrip())

    async def readline(self) -> str | None:
        """The next line of output; None at its end (the program exited)."""
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        return line.decode(errors="replace").strip() if line else None

    async def stop(self) -> None:
        if self.proc.returncode is None:
            for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_SECONDS), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, sig)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.proc.wait(), wait)
                    break
        else:
            # The leader is gone; anything it left in its group goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


async def _spawn(*argv: str, pass_fds: tuple[int, ...] = ()) -> _Child:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        pass_fds=pass_fds,
        start_new_session=True,  # a process group of its own: killpg takes all of it
    )
    return _Child(argv[0], proc)


class VirtualDisplay:
    """Xvfb plus x11vnc, started by :meth:`start` and kept up until :meth:`close`."""

    def __init__(
        self,
        screen: str,
        *,
        on_restart: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``screen`` is ``WIDTHxHEIGHT``; ``on_restart`` runs after the display came back."""
        width, height = (int(part) for part in screen.split("x"))
        self._size = (width, height)
        self._on_restart = on_restart
        self._xvfb: _Child | None = None
        self._vnc: _Child | None = None  # -viewonly
        self._vnc_control: _Child | None = None
        self._display = ""
        self._vnc_port = 0
        self._control_port = 0
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def display(self) -> str:
        return self._display

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    @property
    def vnc_port(self) -> int:
        """The view-only x11vnc's port on 127.0.0.1 (0 while the display is down)."""
        return self._vnc_port if self.problem() is None else 0

    @property
    def control_port(self) -> int:
        """The port of the x11vnc that takes input (0 while the display is down)."""
        return self._control_port if self.problem() is None else 0

    def port(self, control: bool) -> int:
        return self.control_port if control else self.vnc_port

    def problem(self) -> str | None:
        """What is down, for readiness; None when all run."""
        children = (("Xvfb", self._xvfb), ("x11vnc", self._vnc), ("x11vnc", self._vnc_control))
        for name, child in children:
            if child is None or child.proc.returncode is not None:
                return f"{name} is not running"
        return None

    async def start(self) -> None:
        try:
            await self._start_both()
        except BaseException:
            await self._stop_children()
            raise
        self._supervisor = watch(asyncio.create_task(self._supervise(), name="display-supervisor"))

    async def _start_both(self) -> None:
        try:
            async with asyncio.timeout(START_TIMEOUT_SECONDS):
                await self._start_xvfb()
                await self._start_vncs()
        except TimeoutError:
            raise HeadfulError("the virtual display did not start in time") from None
        log.info(
            "headful.display_started",
            display=self._display,
            screen="x".join(map(str, self._size)),
            vnc_port=self._vnc_port,
            control_port=self._control_port,
        )

    async def _start_xvfb(self) -> None:
        width, height = self._size
        read_end, write_end = os.pipe()
        try:
            child = await _spawn(
                "Xvfb",
                "-displayfd",
                str(write_end),
                "-screen",
                "0",
                f"{width}x{height}x24",
                "-nolisten",
                "tcp",
                pass_fds=(write_end,),
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        self._xvfb = child
        child.keep_output()
        # Xvfb writes the display number it took once it accepts connections; if it
        # fails, the pipe closes with nothing written.
        pipe = asyncio.StreamReader()
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(pipe), os.fdopen(read_end, "rb", buffering=0)
        )
        try:
            number = (await pipe.readline()).decode().strip()
        finally:
            transport.close()
        if not number.isdigit():
            await child.stop()
            raise HeadfulError(f"Xvfb did not start: {' | '.join(child.tail) or 'no output'}")
        self._display = f":{number}"

    async def _start_vncs(self) -> None:
        self._vnc, self._vnc_port = await self._start_vnc(viewonly=True)
        self._vnc_control, self._control_port = await self._start_vnc(viewonly=False)

    async def _start_vnc(self, *, viewonly: bool) -> tuple[_Child, int]:
        port = _free_loopback_port()
        child = await _spawn(
            "x11vnc",
            "-display",
            self._display,
            "-rfbport",
            str(port),
            "-localhost",
            "-no6",
            "-nopw",
            "-forever",
            "-shared",
            "-quiet",
            *(["-viewonly"] if viewonly else []),
        )
        # x11vnc prints PORT=<port> once it listens.
        while (line := await child.readline()) is not None and not line.startswith("PORT="):
            child.tail.append(line)
        if line is None:
            await child.stop()
            raise HeadfulError(f"x11vnc did not start: {' | '.join(child.tail) or 'it exited'}")
        child.keep_output()
        return child, port

    async def _supervise(self) -> None:
        while not self._closing:
            children = [c for c in (self._xvfb, *self._vncs()) if c is not None]
            waits = {asyncio.ensure_future(c.proc.wait()): c for c in children}
            try:
                done, _ = await asyncio.wait(set(waits), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
            if self._closing:
                return
            for finished in done:
                child = waits[finished]
                log.error(
                    "headful.process_died",
                    process=child.name,
                    returncode=child.proc.returncode,
                    output=list(child.tail)[-5:],
                )
            await self._restart(xvfb_died=any(waits[f] is self._xvfb for f in done))

    async def _restart(self, *, xvfb_died: bool) -> None:
        while not self._closing:
            await asyncio.sleep(RESTART_DELAY_SECONDS)
            try:
                if xvfb_died:
                    await self._stop_children()
                    await self._start_both()
                else:
                    for vnc in self._vncs():
                        await vnc.stop()
                    async with asyncio.timeout(START_TIMEOUT_SECONDS):
                        await self._start_vncs()
                    log.info(
                        "headful.vnc_restarted",
                        vnc_port=self._vnc_port,
                        control_port=self._control_port,
                    )
            except (HeadfulError, OSError, TimeoutError) as exc:
                log.error("headful.restart_failed", error=describe(exc))
                xvfb_died = True  # start over from the display
                continue
            if self._on_restart is not None:
                await self._on_restart()
            return

    def _vncs(self) -> list[_Child]:
        return [c for c in (self._vnc, self._vnc_control) if c is not None]

    async def _stop_children(self) -> None:
        for child in (*self._vncs(), self._xvfb):
            if child is not None:
                await child.stop()

    async def close(self) -> None:
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await self._stop_children()
        log.info("headful.display_stopped")
