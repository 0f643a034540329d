"""Headful mode through the whole stack: a visible run on a headful runner, watched through
the runner's noVNC viewer by a real Chromium, and the viewer's ticket check."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import nats
import pytest
from playwright.sync_api import sync_playwright

from figranium_common.headful import HeadfulPresence
from figranium_common.nats import (
    DEAD_STREAM,
    DEAD_SUBJECTS,
    HEADFUL_CONSUMER,
    HEADFUL_PRESENCE_SUBJECT,
    RUNS_HEADFUL_SUBJECT,
    RUNS_STREAM,
)
from figranium_devstack.postgres import LocalPostgres
from figranium_runner.browser import find_chromium
from tests.integration.console_browser import signed_in
from tests.integration.pages import QuietHandler, serve_http
from tests.integration.stack import API_KEY, Service, Stack, own_stack, wait_until
from tests.integration.test_bad_input import assert_error

pytestmark = pytest.mark.stack  # every test here starts services of its own

MAGENTA = "#ff00ff"

# The page stays up until the test releases it: the run lasts as long as the test watches.
_PAGE = f"""<!doctype html><html><head><title>Headful</title>
<style>html, body {{ margin: 0; height: 100%; background: {MAGENTA}; }}</style></head>
<body><script>
setInterval(async () => {{
  const answer = await fetch('/released');
  if ((await answer.text()) === 'yes' && !document.getElementById('release')) {{
    const mark = document.createElement('p');
    mark.id = 'release';
    mark.textContent = 'released';
    document.body.appendChild(mark);
  }}
}}, 200);
</script></body></html>"""

# The share of pixels of (near) the page's colour, in a PNG given as base64, decoded by
# the browser itself.
_MAGENTA_SHARE_JS = """
async (png) => {
  const image = new Image();
  image.src = 'data:image/png;base64,' + png;
  await image.decode();
  const canvas = document.createElement('canvas');
  canvas.width = image.width;
  canvas.height = image.height;
  const context = canvas.getContext('2d');
  context.drawImage(image, 0, 0);
  const pixels = context.getImageData(0, 0, image.width, image.height).data;
  let hits = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    if (pixels[i] > 200 && pixels[i + 1] < 60 && pixels[i + 2] > 200) hits++;
  }
  return hits / (pixels.length / 4);
}
"""


# Reports that it is listening, then every key and click it gets; the run ends once it
# got a "b".
_KEYS_PAGE = """<!doctype html><html><head><title>Keys</title></head>
<body style="margin: 0; height: 100vh"><script>
fetch('/typed?key=ready');
document.addEventListener('mousedown', () => fetch('/typed?key=click'));
document.addEventListener('keydown', async (event) => {
  await fetch('/typed?key=' + encodeURIComponent(event.key));
  if (event.key === 'b') {
    const mark = document.createElement('p');
    mark.id = 'typed-b';
    mark.textContent = 'typed b';
    document.body.appendChild(mark);
  }
});
</script></body></html>"""


class _Page(QuietHandler):
    released: threading.Event
    typed: list[str]

    def do_GET(self) -> None:
        if self.path == "/released":
            self.send_body(b"yes" if self.released.is_set() else b"no", "text/plain")
        elif self.path.startswith("/typed?key="):
            self.typed.append(self.path.removeprefix("/typed?key="))
            self.send_body(b"", "text/plain")
        elif self.path == "/keys":
            self.send_body(_KEYS_PAGE.encode(), "text/html; charset=utf-8")
        else:
            self.send_body(_PAGE.encode(), "text/html; charset=utf-8")


class _Site:
    def __init__(self) -> None:
        self.released = threading.Event()
        self.typed: list[str] = []
        self.url = ""


@pytest.fixture(scope="module")
def site() -> Iterator[_Site]:
    served = _Site()
    handler = type("Handler", (_Page,), {"released": served.released, "typed": served.typed})
    with serve_http(handler) as url:
        served.url = f"{url}/"
        yield served


class _Headful:
    def __init__(self, stack: Stack, api: httpx.Client, runner: Service) -> None:
        self.stack, self.api, self.runner = stack, api, runner


@pytest.fixture(scope="module")
def headful(
    tmp_path_factory: pytest.TempPathFactory, postgres: LocalPostgres
) -> Iterator[_Headful]:
    """A gateway and one headful runner, on their own NATS and database; no other runner."""
    with own_stack(tmp_path_factory.mktemp("headful"), postgres) as stack:
        _, api = stack.start_gateway()
        runner = stack.start_headful_runner()
        wait_until(lambda: _status(api)["useNovnc"], 90, "the headful runner to be seen")
        yield _Headful(stack, api, runner)


def _status(api: httpx.Client) -> dict[str, Any]:
    response = api.get("/api/headful/status")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _execution(api: httpx.Client, execution_id: str) -> dict[str, Any]:
    execution: dict[str, Any] = api.get(f"/api/executions/{execution_id}").json()["execution"]
    return execution


def _ticket(api: httpx.Client, **body: str) -> dict[str, Any]:
    response = api.post("/api/headful/ticket", json=body)
    assert response.status_code == 200, response.text
    ticket: dict[str, Any] = response.json()
    return ticket


def test_a_headful_run_is_watched_through_novnc(headful: _Headful, site: _Site) -> None:
    api = headful.api
    task = {
        "url": site.url,
        "actions": [
            {"type": "wait_selector", "selector": "#release", "value": 40},
            {"type": "wait", "value": 1},
        ],
        "extractionScript": "return getComputedStyle(document.body).backgroundColor",
        "async": True,
    }
    queued = api.post("/headful", json=task)
    assert queued.status_code == 202, queued.text
    execution_id = queued.json()["executionId"]

    status = wait_until(
        lambda: (s := _status(api))["isRunning"] and s, 90, "the headful session to start"
    )
    assert status["executionId"] == execution_id
    [runner] = status["runners"]
    assert runner["isRunning"] and runner["executionId"] == execution_id
    assert status["novncPort"] == runner["novncPort"] > 0
    assert runner["viewerUrl"] == f"http://localhost:{runner['novncPort']}"

    # The console's viewer button: a ticket of its own in the viewer's URL, never the key.
    console = signed_in(str(api.base_url))
    try:
        assert execution_id in console.get("/console/headful").text
        opened = console.post(
            "/console/headful/open", data={"csrf_token": console.cookies["figranium_csrf"]}
        )
    finally:
        console.close()
    assert opened.status_code == 303, opened.text
    viewer = opened.headers["location"]
    assert viewer.startswith(f"{runner['viewerUrl']}/vnc.html?autoconnect=true")
    assert re.search(r"path=websockify%3Fticket%3D[^&%]{16,}", viewer)
    assert API_KEY not in viewer

    ticket = _ticket(api, executionId=execution_id)
    assert ticket["runnerId"] == runner["runnerId"]
    assert ticket["expiresAt"] > time.time() * 1000
    assert ticket["url"] == (
        f"{runner['viewerUrl']}/vnc.html?autoconnect=true&resize=scale"
        f"&path=websockify%3Fticket%3D{ticket['ticket']}"
    )

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=find_chromium(None), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            page.goto(ticket["url"])
            page.wait_for_function(
                "document.documentElement.classList.contains('noVNC_connected')", timeout=20_000
            )
            # Connected, then the first frame: wait until the canvas shows the page.
            page.wait_for_function(
                """() => {
                  const canvas = document.querySelector('#noVNC_container canvas');
                  if (!canvas || !canvas.width) return false;
                  const data = canvas.getContext('2d')
                    .getImageData(0, 0, canvas.width, canvas.height).data;
                  let hits = 0;
                  for (let i = 0; i < data.length; i += 4)
                    if (data[i] > 200 && data[i + 1] < 60 && data[i + 2] > 200) hits++;
                  return hits / (data.length / 4) > 0.5;
                }""",
                timeout=20_000,
            )
            screenshot = page.screenshot()
            share = page.evaluate(_MAGENTA_SHARE_JS, base64.b64encode(screenshot).decode())
        finally:
            browser.close()
    # The noVNC page scales the 1280x800 screen into its 1280x720 viewport; Chromium's own
    # tab strip and address bar take the rest.
    assert share > 0.6, f"only {share:.0%} of the viewer shows the automated page"

    site.released.set()
    finished = wait_until(
        lambda: (e := _execution(api, execution_id))["phase"] == "finished" and e,
        60,
        "the run to finish",
    )
    assert finished["outcome"] == "success", finished
    assert finished["mode"] == "headful"
    assert finished["result"]["data"] == "rgb(255, 0, 255)"
    wait_until(lambda: not _status(api)["isRunning"], 30, "the session to end")
    assert _status(api)["executionId"] is None


class _Rfb:
    """Just enough of an RFB client, over the viewer's websocket, to send input."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._buffer = b""

    async def read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._buffer += await self.ws.receive_bytes(timeout=20)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    async def handshake(self) -> tuple[int, int]:
        """Version 3.8, no security (the viewer's ticket is the check), shared; the size."""
        assert (await self.read(12)).startswith(b"RFB ")
        await self.ws.send_bytes(b"RFB 003.008\n")
        (count,) = await self.read(1)
        assert 1 in await self.read(count)
        await self.ws.send_bytes(b"\x01")
        assert await self.read(4) == b"\0\0\0\0"
        await self.ws.send_bytes(b"\x01")
        width, height = struct.unpack(">HH", await self.read(4))
        await self.read(16)
        (name_length,) = struct.unpack(">I", await self.read(4))
        await self.read(name_length)
        await self.ws.send_bytes(struct.pack(">BxH", 2, 1) + struct.pack(">i", 0))  # raw only
        return width, height

    async def click_and_type(self, x: int, y: int, keysym: int) -> None:
        for buttons in (0, 1, 0):
            await self.ws.send_bytes(struct.pack(">BBHH", 5, buttons, x, y))
        for down in (1, 0):
            await self.ws.send_bytes(struct.pack(">BBxxI", 4, down, keysym))

    async def round_trip(self, width: int, height: int) -> None:
        """Ask for a frame and wait for its header: x11vnc handles a client's messages in
        order, so whatever was sent before has been acted on (or dropped) by now."""
        await self.ws.send_bytes(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
        while True:
            try:
                (kind,) = await self.read(1)
            except (TimeoutError, TypeError):
                raise AssertionError("no framebuffer update") from None
            if kind == 0:
                return
            # Bell (2) has no body; other server messages are not expected here.
            assert kind == 2, kind


def test_a_ticket_watches_its_own_session_and_controls_only_when_asked(
    headful: _Headful, site: _Site
) -> None:
    api = headful.api
    queued = api.post(
        "/headful",
        json={
            "url": site.url + "keys",
            "actions": [{"type": "wait_selector", "selector": "#typed-b", "value": 60}],
            "async": True,
        },
    )
    assert queued.status_code == 202, queued.text
    execution_id = queued.json()["executionId"]
    wait_until(lambda: _status(api)["executionId"] == execution_id, 90, "the session to start")
    wait_until(lambda: "ready" in site.typed, 60, "the page to listen")
    [runner] = _status(api)["runners"]
    base = f"http://127.0.0.1:{runner['novncPort']}"
    view = _ticket(api, executionId=execution_id)["ticket"]
    late = _ticket(api, executionId=execution_id)["ticket"]
    response = api.post("/api/headful/ticket", json={"executionId": execution_id, "control": True})
    assert response.status_code == 200, response.text
    control = response.json()["ticket"]

    async def drive() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{base}/websockify?ticket={view}") as watcher:
                assert watcher.protocol is None  # noVNC asks for no subprotocol
                viewer = _Rfb(watcher)
                width, height = await viewer.handshake()
                # The view-only connection tries to click into the page and type "a"...
                await viewer.click_and_type(width // 2, height // 2, ord("a"))
                await viewer.round_trip(width, height)
                # ...the control connection clicks and types "b".
                async with session.ws_connect(f"{base}/websockify?ticket={control}") as driver:
                    controller = _Rfb(driver)
                    await controller.handshake()
                    await controller.click_and_type(width // 2, height // 2, ord("b"))
                    await controller.round_trip(width, height)
                    await asyncio.to_thread(
                        wait_until,
                        lambda: {"b", "click"} <= set(site.typed),
                        30,
                        "the click and the b",
                    )
                # The run ends on the "b": the session's viewers are cut off (after the rest
                # of the frame asked for).
                closing = await watcher.receive(timeout=60)
                while closing.type is aiohttp.WSMsgType.BINARY:
                    closing = await watcher.receive(timeout=60)
                assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            # A ticket of the finished session opens nothing, though unused.
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(f"{base}/websockify?ticket={late}")
            assert refused.value.status == 409
            for used in (view, control):
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await session.ws_connect(f"{base}/websockify?ticket={used}")
                assert refused.value.status == 401

    asyncio.run(drive())
    # Only the control connection's input reached the page.
    assert sorted(site.typed) == ["b", "click", "ready"]
    finished = wait_until(
        lambda: (e := _execution(api, execution_id))["phase"] == "finished" and e,
        60,
        "the run to finish",
    )
    assert finished["outcome"] == "success", finished
    wait_until(lambda: not _status(api)["isRunning"], 30, "the session to end")
    # No session, no ticket.
    assert_error(api.post("/api/headful/ticket", json={}), 404, "HEADFUL_SESSION_NOT_FOUND")
    assert_error(
        api.post("/api/headful/ticket", json={"executionId": execution_id}),
        404,
        "HEADFUL_SESSION_NOT_FOUND",
    )


async def test_the_viewer_refuses_connections_without_a_valid_ticket(headful: _Headful) -> None:
    [runner] = _status(headful.api)["runners"]
    base = f"http://127.0.0.1:{runner['novncPort']}"
    async with aiohttp.ClientSession() as session:
        for query in ("", "?ticket=", "?ticket=bogus"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(f"{base}/websockify{query}")
            assert refused.value.status == 401, query
        # Without an upgrade: the refusal is the usual error body.
        async with session.get(f"{base}/websockify?ticket=bogus") as plain:
            assert plain.status == 401
            assert (await plain.json())["error"] == "INVALID_TICKET"
        # The noVNC client files, read-only: no listing, nothing outside them.
        async with session.get(f"{base}/", allow_redirects=False) as index:
            assert index.status == 302 and index.headers["Location"] == "vnc.html"
        async with session.get(f"{base}/vnc.html") as page:
            assert page.status == 200 and "noVNC" in await page.text()
        for path in ("/app/", "/..%2F..%2F..%2Fetc%2Fpasswd", "/app/..%2F..%2F..%2Fetc%2Fhosts"):
            async with session.get(f"{base}{path}") as hidden:
                assert hidden.status in (403, 404), path
        async with session.post(f"{base}/vnc.html") as write:
            assert write.status == 405


def test_ticket_refusals(headful: _Headful) -> None:
    api = headful.api
    assert_error(
        api.post("/api/headful/ticket", json={"executionId": "exec_none"}),
        404,
        "HEADFUL_SESSION_NOT_FOUND",
    )
    assert_error(
        api.post("/api/headful/ticket", json={"runnerId": "nobody"}),
        404,
        "HEADFUL_SESSION_NOT_FOUND",
    )
    assert_error(api.post("/api/headful/ticket", json={"runnerId": 7}), 400, "INVALID_BODY")
    assert_error(api.post("/api/headful/ticket", content=b"{nope"), 400, "INVALID_JSON")
    anonymous = httpx.post(f"{api.base_url}/api/headful/ticket", json={}, timeout=30)
    assert anonymous.status_code == 401


def test_a_headful_runner_takes_no_default_runs(headful: _Headful, site: _Site) -> None:
    api = headful.api
    queued = api.post("/agent", json={"url": site.url, "async": True})
    assert queued.status_code == 202, queued.text
    execution_id = queued.json()["executionId"]
    time.sleep(3)  # several fetches of the headful runner
    assert _execution(api, execution_id)["phase"] == "queued"
    assert not _status(api)["isRunning"]
    assert api.post("/api/executions/stop", json={"runId": execution_id}).status_code == 200


def _processes_with(needle: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in text:
            found.append(text)
    return found


def test_without_a_headful_runner_headful_runs_fail_fast(headful: _Headful, site: _Site) -> None:
    """Last: stops the module's headful runner."""
    api = headful.api
    display = _display_of(headful.runner)
    assert _processes_with(f"-display {display} ")
    assert headful.runner.stop() == 0
    assert not _processes_with(f"-display {display} "), "x11vnc outlived its runner"
    # The runner's goodbye removes it at once, not after the expiry.
    assert _status(api) == {
        "useNovnc": False,
        "novncPort": None,
        "isRunning": False,
        "executionId": None,
        "runners": [],
    }
    before = len(api.get("/api/executions").json()["executions"])
    started = time.monotonic()
    assert_error(api.post("/headful", json={"url": site.url}), 503, "HEADFUL_UNAVAILABLE")
    # At once, not after a wait for a runner (bounded generously for a loaded machine).
    assert time.monotonic() - started < 5
    api.post("/api/tasks", json={"id": "visible", "url": site.url, "mode": "headful"})
    assert_error(api.post("/api/tasks/visible/api", json={}), 503, "HEADFUL_UNAVAILABLE")
    assert len(api.get("/api/executions").json()["executions"]) == before
    assert_error(api.post("/api/headful/ticket", json={}), 503, "HEADFUL_UNAVAILABLE")


def _display_of(runner: Service) -> str:
    for line in runner.log_text().splitlines():
        if "headful.display_started" in line:
            display: str = json.loads(line)["display"]
            return display
    raise AssertionError("the runner never logged its display")


async def test_a_headful_run_nobody_finishes_is_marked_crashed(
    headful: _Headful, site: _Site
) -> None:
    """After the module's runner stopped: a stand-in announces itself as a headful runner,
    takes the run and hands it back until its deliveries are used up."""
    api = headful.api
    nc = await nats.connect(headful.stack.env["NATS_URL"])
    try:
        js = nc.jetstream()
        consumer = await js.consumer_info(RUNS_STREAM, HEADFUL_CONSUMER)
        assert consumer.config.filter_subject == RUNS_HEADFUL_SUBJECT
        assert (await js.stream_info(DEAD_STREAM)).config.subjects == DEAD_SUBJECTS
        stand_in = HeadfulPresence(runner_id="stand-in", novnc_port=1, viewer_url="http://x")
        await nc.publish(HEADFUL_PRESENCE_SUBJECT, stand_in.model_dump_json().encode())
        await nc.flush()
        wait_until(lambda: _status(api)["useNovnc"], 20, "the stand-in to be seen")

        queued = api.post("/headful", json={"url": site.url, "async": True})
        assert queued.status_code == 202, queued.text
        execution_id = queued.json()["executionId"]
        pulled = await js.pull_subscribe_bind(durable=HEADFUL_CONSUMER, stream=RUNS_STREAM)
        for _ in range(int(headful.stack.env["RUN_MAX_DELIVER"])):
            [message] = await pulled.fetch(1, timeout=10)
            assert json.loads(message.data)["execution_id"] == execution_id
            await message.nak()
        # JetStream finds the deliveries used up when asked for the next message.
        with pytest.raises(TimeoutError):
            await pulled.fetch(1, timeout=2)
        await pulled.unsubscribe()
        await nc.publish(
            HEADFUL_PRESENCE_SUBJECT,
            stand_in.model_copy(update={"leaving": True}).model_dump_json().encode(),
        )
    finally:
        await nc.close()
    finished = wait_until(
        lambda: (e := _execution(api, execution_id))["phase"] == "finished" and e,
        60,
        "the dead run to be marked crashed",
    )
    assert finished["outcome"] == "crashed"
