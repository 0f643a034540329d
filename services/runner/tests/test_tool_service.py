"""The runner's request/reply services over a real NATS and a real Chromium."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError

from figranium_common.config import Config
from figranium_common.models import (
    PageCaptureReply,
    ScriptCheckReply,
    ScriptCheckRequest,
)
from figranium_common.nats import TOOLS_PAGE_SUBJECT, TOOLS_SCRIPT_SUBJECT
from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port
from figranium_runner.browser import BrowserHost
from figranium_runner.state import DOWNLOAD_FILE_PREFIX
from figranium_runner.tool_service import MAX_HTML_CHARS, ToolsService, bound_html

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADD_CHERRY = [
    {"type": "type", "selector": "#q", "value": "cherry"},
    {"type": "click", "selector": "#add"},
]


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with LocalNats(tmp_path_factory.mktemp("tools") / "nats", free_port()) as server:
        yield server.url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tools(nc: NATS, host: BrowserHost) -> AsyncIterator[ToolsService]:
    config = Config.model_validate(
        {"ALLOW_PRIVATE_NETWORKS": True, "ACTION_TIMEOUT_MS": 1500, "RUNNER_CONCURRENCY": 2}
    )
    service = ToolsService(config, nc, host)
    await service.start()
    yield service
    await service.drain(5)


async def capture(nc: NATS, task: dict[str, Any], index: int, **fields: Any) -> PageCaptureReply:
    # As JSON, as a gateway sends it: a task that does not validate still reaches the runner.
    request = {"task": task, "action_index": index, **fields}
    reply = await nc.request(TOOLS_PAGE_SUBJECT, json.dumps(request).encode(), timeout=30)
    return PageCaptureReply.model_validate_json(reply.data)


async def check(nc: NATS, script: str) -> str | None:
    body = ScriptCheckRequest(script=script).model_dump_json().encode()
    reply = await nc.request(TOOLS_SCRIPT_SUBJECT, body, timeout=10)
    return ScriptCheckReply.model_validate_json(reply.data).error


# -- page capture ------------------------------------------------------------------------


async def test_capture_follows_the_action_index(tools: ToolsService, nc: NATS, base: str) -> None:
    task = {"url": f"{base}/form", "actions": ADD_CHERRY}
    before = await capture(nc, task, 0)
    assert before.error is None
    assert before.url == f"{base}/form"
    assert '<input id="q"' in before.html and "<li>apple</li>" in before.html
    assert "cherry" not in before.html
    typed = await capture(nc, task, 1)  # typed, not yet added: the value is no attribute
    assert typed.error is None and "<li>cherry</li>" not in typed.html
    after = await capture(nc, task, 2)
    assert after.error is None and "<li>cherry</li>" in after.html
    beyond = await capture(nc, task, 7)  # past the end: every action ran
    assert "<li>cherry</li>" in beyond.html


async def test_capture_stops_where_control_first_reaches_the_index(
    tools: ToolsService, nc: NATS, base: str
) -> None:
    def add(text: str) -> dict[str, Any]:
        return {"type": "javascript", "value": f"add('{text}')"}

    looped = {
        "url": f"{base}/form",
        "actions": [{"type": "repeat", "value": "3"}, add("xx"), add("yy"), {"type": "end"}],
    }
    inside = await capture(nc, looped, 2)  # the first time round, before "yy"
    assert inside.html.count("<li>xx</li>") == 1 and "yy" not in inside.html
    skipped = {
        "url": f"{base}/form",
        "actions": [{"type": "if", "value": "false"}, add("aa"), {"type": "end"}, add("bb")],
    }
    untaken = await capture(nc, skipped, 1)  # in a branch not taken: ends after the block
    assert untaken.error is None
    assert "aa" not in untaken.html and "bb" not in untaken.html


async def test_capture_reduces_the_page(tools: ToolsService, nc: NATS, base: str) -> None:
    decorate = """
      const long = 'x'.repeat(150);
      document.body.insertAdjacentHTML('beforeend',
        '<a id="long" href="/p?q=' + long + '" data-short="ok">link</a>' +
        '<svg id="icon" viewBox="0 0 10 10"><path d="M0 0L10 10"/><circle r="1"/></svg>' +
        '<iframe id="frame" src="/items"></iframe>' +
        '<noscript>enable js</noscript><template><p>tpl</p></template>' +
        '<!-- a comment --><link rel="stylesheet" href="/x.css"><meta name="m" content="c">' +
        '<style>p { color: red }</style><host-el></host-el>');
      document.querySelector('host-el').attachShadow({ mode: 'open' }).innerHTML =
        '<span class="inner">shadowed</span><style>span {}</style>';
    """
    task = {"url": f"{base}/form", "actions": [{"type": "javascript", "value": decorate}]}
    html = (await capture(nc, task, 1)).html
    for gone in ("<script", "<style", "<noscript", "<link", "<meta", "a comment", "<p>tpl"):
        assert gone not in html, gone
    assert "onclick" not in html and "ondblclick" not in html and "style=" not in html
    assert '<button id="add">Add</button>' in html
    assert f'href="/p?q={"x" * 95}…"' in html and 'data-short="ok"' in html
    assert '<svg id="icon" viewBox="0 0 10 10"></svg>' in html
    assert '<iframe id="frame" src="/items"></iframe>' in html
    assert (
        '<host-el><template shadowrootmode="open"><span class="inner">shadowed</span>'
        "</template></host-el>" in html
    )
    assert html.startswith("<html><head><title>Form</title></head><body>")


async def test_capture_is_bounded(tools: ToolsService, nc: NATS, base: str) -> None:
    grow = "document.body.insertAdjacentHTML('beforeend', '<p>' + 'word '.repeat(80000) + '</p>')"
    task = {"url": f"{base}/form", "actions": [{"type": "javascript", "value": grow}]}
    reply = await capture(nc, task, 1)
    assert reply.error is None
    assert len(reply.html) == MAX_HTML_CHARS and reply.html.endswith("<!-- truncated -->")
    assert bound_html("short") == "short"


async def test_capture_carries_storage_state(tools: ToolsService, nc: NATS, base: str) -> None:
    state = {
        "cookies": [
            {
                "name": "saved",
                "value": "yes",
                "domain": "127.0.0.1",
                "path": "/",
                "expires": -1,
                "httpOnly": False,
                "secure": False,
                "sameSite": "Lax",
            }
        ],
        "origins": [],
    }
    reply = await capture(nc, {"url": f"{base}/cookie"}, 0, storage_state=state)
    assert '<p id="c">saved=yes' in reply.html
    stateless = {"url": f"{base}/cookie", "statelessExecution": True}
    assert "saved=yes" not in (await capture(nc, stateless, 0, storage_state=state)).html


async def test_failures_come_back_as_errors(tools: ToolsService, nc: NATS, base: str) -> None:
    failed = await capture(
        nc,
        {"url": f"{base}/form", "actions": [{"type": "click", "selector": "#missing"}]},
        1,
    )
    assert failed.html == "" and failed.error is not None
    assert failed.error.startswith("action 1 (click) failed: ")
    refused = await capture(nc, {"url": "http://169.254.169.254/latest/meta-data"}, 0)
    assert refused.error is not None and refused.error.startswith("INVALID_URL: ")
    slow = await capture(
        nc,
        {"url": f"{base}/form", "actions": [{"type": "wait", "value": "5"}]},
        1,
        timeout_seconds=0.5,
    )
    assert slow.error == "the page was not captured within 0.5 s"
    unbalanced = await capture(nc, {"actions": [{"type": "if", "value": "1"}]}, 1)
    assert unbalanced.error is not None and "never closed" in unbalanced.error
    invalid = await capture(nc, {"actions": "nope"}, 0)
    assert invalid.error is not None and invalid.error.startswith("the task is not valid: ")
    garbage = await nc.request(TOOLS_PAGE_SUBJECT, b"not json", timeout=10)
    error = PageCaptureReply.model_validate_json(garbage.data).error
    assert error is not None and error.startswith("the request is not valid: ")


# -- script check ------------------------------------------------------------------------


async def test_script_check_compiles_as_extraction_does(tools: ToolsService, nc: NATS) -> None:
    assert await check(nc, "return document.title") is None
    assert await check(nc, "const x = await Promise.resolve(1); return x?.y ?? 2") is None
    assert await check(nc, "return data.html().length + $$data.url().length") is None
    error = await check(nc, "return (")
    assert error is not None and error.startswith("SyntaxError: ")
    # The same parameters as the engine's wrapper: redeclaring one is an error there too.
    assert await check(nc, "let document = 1; return document") == (
        "SyntaxError: Identifier 'document' has already been declared"
    )
    # The body cannot close the function early and run code outside it.
    escape = await check(nc, "}); window.escaped = 1; (async function () {")
    assert escape is not None and escape.startswith("SyntaxError: ")
    garbage = await nc.request(TOOLS_SCRIPT_SUBJECT, b"{}", timeout=10)
    assert ScriptCheckReply.model_validate_json(garbage.data).error is not None


async def test_checked_scripts_never_run(tools: ToolsService, nc: NATS, base: str) -> None:
    body = f"window.ran = 1; document.title = 'ran'; location.href = '{base}/form'; return 1"
    assert await check(nc, body) is None
    page = tools._check_page
    assert page is not None
    assert page.url == "about:blank"
    assert await page.evaluate("[typeof window.ran, typeof window.escaped, document.title]") == [
        "undefined",
        "undefined",
        "",
    ]


async def test_a_stopping_runner_takes_no_more_requests(tmp_path: Path, host: BrowserHost) -> None:
    with LocalNats(tmp_path / "nats", free_port()) as server:
        client = await nats.connect(server.url)
        try:
            service = ToolsService(Config.model_validate({}), client, host)
            stopping = asyncio.Event()
            await service.start(stopping)
            assert await check(client, "return 1") is None
            stopping.set()  # the signal alone, before the drain: no more requests
            for _ in range(50):
                await asyncio.sleep(0.05)
                try:
                    await check(client, "return 1")
                except NoRespondersError:
                    break
            else:
                pytest.fail("the stopping service still answers")
            await service.drain(1)
        finally:
            await client.close()


async def test_a_capture_keeps_no_downloaded_file(
    tools: ToolsService, nc: NATS, base: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A task a capture's actions start keeps its downloads on disk, as in a run, for
    # storing; a capture stores none, so they are removed once the page is captured.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    child = {
        "id": "child",
        "url": f"{base}/form",
        "actions": [
            {"type": "click", "selector": "#dl"},
            {"type": "wait_downloads", "value": 5},
        ],
    }
    task = {"url": f"{base}/form", "actions": [{"type": "start", "value": "child"}]}
    reply = await capture(nc, task, 1, subtasks={"child": child})
    assert reply.error is None
    left = await asyncio.to_thread(os.listdir, tmp_path)
    assert not [name for name in left if name.startswith(DOWNLOAD_FILE_PREFIX)], left
