"""The action engine against a real Chromium, on pages served by the test."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from playwright.async_api import Page

from figranium_common.models import Task
from figranium_runner.browser import BrowserHost
from figranium_runner.engine import execute

PAGE = b"""<!doctype html><html><head><title>Shop</title></head><body>
<input id="q"><button id="go" onclick="document.getElementById('out').textContent =
  document.getElementById('q').value.toUpperCase()">Go</button>
<p id="out"></p>
<table><tr><td>a</td><td>1</td></tr><tr><td>b</td><td>2</td></tr></table>
</body></html>"""


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    host = BrowserHost(None)
    await host.start()
    context = await host.new_context()
    try:
        yield await context.new_page()
    finally:
        await context.close()
        await host.close()


async def run(
    page: Page,
    task: dict[str, Any],
    overrides: dict[str, Any] | None = None,
    allow_private: bool = True,
) -> Any:
    lines: list[str] = []

    async def emit(line: str) -> None:
        lines.append(line)

    result, captures = await execute(
        page,
        Task.model_validate(task),
        overrides or {},
        execution_id="exec_t",
        allow_private=allow_private,
        default_timeout_ms=2000,
        emit=emit,
    )
    assert lines == result.logs
    return result, captures


async def test_type_click_extract_and_screenshots(page: Page, site: str) -> None:
    result, captures = await run(
        page,
        {
            "url": site,
            "actions": [
                {"type": "type", "selector": "#q", "value": "{$word}"},
                {"type": "click", "selector": "#go"},
                {"type": "screenshot", "label": "after/click"},
                {"type": "click", "selector": "#nothing", "disabled": True},
            ],
            "variables": {"word": {"type": "string", "value": "hello"}},
            "extractionScript": "return { out: document.querySelector('#out').textContent,"
            " title: document.title, url: data.url() }",
        },
    )
    assert result.outcome == "success", result.error
    assert result.data == {"out": "HELLO", "title": "Shop", "url": site}
    names = [c.name for c in captures]
    assert names[0].startswith("exec_t_agent_") and names[0].endswith("_after-click.png")
    assert result.screenshot_url == f"/captures/{names[-1]}"
    assert all(c.data.startswith(b"\x89PNG") for c in captures)


async def test_javascript_output_feeds_later_actions(page: Page, site: str) -> None:
    result, _ = await run(
        page,
        {
            "url": site,
            "actions": [
                {"type": "javascript", "value": "document.title + '!'"},
                {"type": "type", "selector": "#q", "value": "{$block.output}"},
                {"type": "press", "selector": "#q", "key": "End"},
            ],
            "extractionScript": "return document.querySelector('#q').value",
        },
    )
    assert result.data == "Shop!"


async def test_csv_extraction(page: Page, site: str) -> None:
    result, _ = await run(
        page,
        {
            "url": site,
            "extractionFormat": "csv",
            "extractionScript": "return [...document.querySelectorAll('tr')].map(r =>"
            " ({name: r.cells[0].textContent, n: Number(r.cells[1].textContent)}))",
        },
    )
    assert result.data == "name,n\na,1\nb,2\n"


async def test_failing_action_gives_an_error_result(page: Page, site: str) -> None:
    result, captures = await run(
        page, {"url": site, "actions": [{"type": "click", "selector": "#missing", "timeout": 300}]}
    )
    assert result.outcome == "error"
    assert result.error is not None and "action #1 (click) failed" in result.error
    assert captures, "a failed run still ends with a screenshot"


async def test_private_addresses_refused_unless_allowed(page: Page, site: str) -> None:
    result, _ = await run(page, {"url": site}, allow_private=False)
    assert result.outcome == "error"
    assert result.error is not None and result.error.startswith("INVALID_URL")


async def test_extraction_errors_are_reported(page: Page, site: str) -> None:
    result, _ = await run(page, {"url": site, "extractionScript": "return nope.value"})
    assert result.outcome == "error"
    assert result.error is not None and "Extraction script error" in result.error
