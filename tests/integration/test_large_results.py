"""Results larger than a NATS message: the run happens once, its execution shows a preview
and GET /api/executions/:id/result the whole; downloads over MAX_DOWNLOAD_BYTES are dropped."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import nats
import psycopg
import pytest

from figranium_common.nats import RUNNERS_CONSUMER, RUNS_STREAM
from tests.integration.pages import QuietHandler, serve_http
from tests.integration.stack import Stack, wait_until

pytestmark = pytest.mark.stack  # every test here starts services of its own

# About 3 MB of page: three times NATS's default payload limit, once in the result's html.
BIG_TEXT = "".join(f"row {i:07d} of a large page\n" for i in range(110_000))
BIG_PAGE = f"""<!doctype html><html><head><title>Big</title></head><body>
<a id="small" href="/small.csv" download>small</a>
<a id="huge" href="/huge.bin" download>huge</a>
<pre id="rows">{BIG_TEXT}</pre></body></html>"""
SMALL_FILE = b"a,b\n" + b"1,2\n" * 12_000  # 48 KB: under the cap the test sets
HUGE_FILE = b"x" * 300_000  # over it
DOWNLOAD_CAP = 100_000


class _Site:
    """Serves the big page and its downloads, and counts the side effect a run has."""

    def __init__(self) -> None:
        self.hook_hits = 0
        self.url = ""
        self._lock = threading.Lock()
        site = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                if self.path == "/big":
                    self.send_body(BIG_PAGE.encode(), "text/html; charset=utf-8")
                elif self.path == "/small.csv":
                    self.send_body(SMALL_FILE, "text/csv", _attachment("small.csv"))
                elif self.path == "/huge.bin":
                    self.send_body(HUGE_FILE, "application/octet-stream", _attachment("huge.bin"))
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with site._lock:
                    site.hook_hits += 1
                self.send_body(b'{"ok": true}', "application/json")

        self.handler = Handler


def _attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f"attachment; filename={filename}"}


@pytest.fixture
def side_site() -> Iterator[_Site]:
    site = _Site()
    with serve_http(site.handler) as url:
        site.url = url
        yield site


def _task(site: _Site, *, downloads: bool) -> dict[str, Any]:
    actions: list[dict[str, Any]] = [
        {"type": "http_request", "method": "POST", "value": f"{site.url}/hook", "body": "{}"},
    ]
    if downloads:
        actions += [
            {"type": "click", "selector": "#small"},
            {"type": "click", "selector": "#huge"},
            {"type": "wait_downloads", "value": 20},
        ]
    return {
        "url": f"{site.url}/big",
        "includeHtml": True,
        "actions": actions,
        "extractionScript": "return document.querySelector('#rows').textContent.length",
    }


def _runs_consumer(nats_url: str) -> Any:
    async def read() -> Any:
        nc = await nats.connect(nats_url)
        try:
            return await nc.jetstream().consumer_info(RUNS_STREAM, RUNNERS_CONSUMER)
        finally:
            await nc.close()

    return asyncio.run(read())


def _assert_ran_once(stack: Stack, site: _Site, execution: dict[str, Any]) -> None:
    # The run message was acknowledged (nothing pending) and never delivered again, and
    # the side effect happened once.
    wait_until(lambda: _runs_consumer(stack.env["NATS_URL"]).num_ack_pending == 0, 30, "the ack")
    assert _runs_consumer(stack.env["NATS_URL"]).num_redelivered == 0
    assert execution["attempts"] == 1
    assert site.hook_hits == 1


def test_a_result_larger_than_a_message_is_stored_once_and_served_whole(
    isolated: Stack, side_site: _Site
) -> None:
    _, api = isolated.start_gateway()
    isolated.start_runner(MAX_DOWNLOAD_BYTES=str(DOWNLOAD_CAP))
    answer = api.post("/agent", json=_task(side_site, downloads=True))
    assert answer.status_code == 200, answer.text[:2000]
    body = answer.json()
    # The synchronous answer is the whole result.
    assert body["outcome"] == "success"
    assert BIG_TEXT in body["html"]
    assert body["data"] == len(BIG_TEXT)
    execution_id = body["executionId"]

    execution = api.get(f"/api/executions/{execution_id}").json()["execution"]
    _assert_ran_once(isolated, side_site, execution)
    # The execution keeps a bounded preview...
    preview = execution["result"]
    assert preview["hasFullResult"] is True and preview["truncated"] is True
    assert preview["outcome"] == "success"
    assert "html" not in preview and "data" not in preview
    assert len(httpx.Response(200, json=execution).content) < 1024 * 1024
    # ...and the whole result is served apart.
    whole = api.get(f"/api/executions/{execution_id}/result")
    assert whole.status_code == 200
    result = whole.json()["result"]
    assert BIG_TEXT in result["html"]
    assert result["data"] == len(BIG_TEXT)

    # The download under the cap was streamed into its cabinet whole; the one over
    # it was dropped with a clear line, and the run went on.
    assert [d["name"] for d in result["downloads"]] == ["small.csv"]
    stored = api.get(result["downloads"][0]["path"])
    assert stored.status_code == 200 and stored.content == SMALL_FILE
    dropped = [line for line in execution["logs"] if line.startswith("[DOWNLOAD ERROR]")]
    assert len(dropped) == 1, execution["logs"]
    assert "huge.bin" in dropped[0] and "exceeds MAX_DOWNLOAD_BYTES" in dropped[0]

    missing = api.get("/api/executions/exec_nope/result")
    assert missing.status_code == 404
    assert missing.json()["error"] == "EXECUTION_NOT_FOUND"

    # The whole result goes with its execution (as with retention and clear).
    assert _full_results(isolated) == 1
    assert api.delete(f"/api/executions/{execution_id}").status_code == 200
    assert api.get(f"/api/executions/{execution_id}/result").status_code == 404
    assert _full_results(isolated) == 0


def _full_results(stack: Stack) -> int:
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        row = conn.execute("SELECT count(*) FROM execution_results").fetchone()
    assert row is not None
    return int(row[0])


def test_a_result_over_max_result_bytes_ends_the_run_once_with_a_clear_error(
    isolated: Stack, side_site: _Site
) -> None:
    _, api = isolated.start_gateway()
    isolated.start_runner(MAX_RESULT_BYTES="2000000")
    answer = api.post("/agent", json=_task(side_site, downloads=False))
    assert answer.status_code >= 400, answer.text[:2000]
    execution_id = answer.json()["executionId"]
    execution = api.get(f"/api/executions/{execution_id}").json()["execution"]
    _assert_ran_once(isolated, side_site, execution)
    assert execution["outcome"] == "error"
    error = execution["result"]["error"]
    assert error.startswith("RESULT_TOO_LARGE") and "MAX_RESULT_BYTES" in error
