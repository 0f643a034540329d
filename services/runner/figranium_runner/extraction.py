"""Extraction: the task's script runs in the live page at the end of a run; what it returns
is the run's data, as JSON or as CSV."""

from __future__ import annotations

import csv
import io
import json
import re

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

from figranium_common.errors import first_line
from figranium_common.jsontypes import JsonValue
from figranium_common.models import Task
from figranium_runner.actions import ActionFailed
from figranium_runner.page_html import refresh_html, wants_html
from figranium_runner.state import RunState
from figranium_runner.variables import substitute


class ExtractionError(ActionFailed):
    """The extraction script threw. The run fails, and its ``data`` is this text, which
    is what Figranium answers as the data of such a run."""


# Figranium's extraction contract: the script is the body of an async function that gets
# `data` (html(), url(), and the shadow-DOM helpers), `window`, `document`, `DOMParser` and
# `console`; what it returns is the run's data. Here it runs in the live page. The runner's
# script check compiles scripts with the same parameters: a body declaring `let document`
# must fail there as it fails here.
EXTRACTION_PARAMETERS = ("data", "$$data", "window", "document", "DOMParser", "console")
_EXTRACTION_JS = """
async ({ script, shadow, maxLines, maxChars }) => {
  const logs = [];
  const push = (...args) => {
    if (logs.length < maxLines) logs.push(args.map(String).join(' ').slice(0, maxChars));
  };
  const consoleProxy = { log: push, info: push, debug: push, warn: push, error: push };
  const shadowQueryAll = (selector, root = document) => {
    const found = [];
    const visit = (node) => {
      if (!node || !node.querySelectorAll) return;
      found.push(...node.querySelectorAll(selector));
      for (const el of node.querySelectorAll('*')) if (el.shadowRoot) visit(el.shadowRoot);
    };
    visit(root);
    return found;
  };
  const shadowText = (root = document) => {
    const texts = [];
    const walk = (node) => {
      if (node.nodeType === 3) { const t = node.nodeValue.trim(); if (t) texts.push(t); return; }
      if (node.shadowRoot) walk(node.shadowRoot);
      for (let c = node.firstChild; c; c = c.nextSibling) walk(c);
    };
    walk(root.body || root);
    return texts;
  };
  const data = {
    html: () => document.documentElement.outerHTML,
    url: () => location.href,
    shadowQueryAll: shadow ? shadowQueryAll : undefined,
    shadowText: shadow ? shadowText : undefined,
  };
  const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
  let result;
  try {
    const fn = new AsyncFunction(__PARAMETERS__, script);
    result = await fn(data, data, window, document, DOMParser, consoleProxy);
  } catch (e) {
    const thrown = e !== null && typeof e === 'object' && 'message' in e ? e.message : e;
    return { thrown: String(thrown), logs };
  }
  return { result: result === undefined ? null : result, logs };
}
""".replace("__PARAMETERS__", ", ".join(json.dumps(name) for name in EXTRACTION_PARAMETERS))


# Figranium's attachShadow override, installed before any script of the page runs: every
# shadow root is made open, so that extraction (shadowQueryAll, shadowText) reaches the
# closed ones too. The page sees its closed roots as open; includeShadowDom: false keeps
# them as the page made them.
_OPEN_SHADOW_ROOTS_JS = """
(() => {
  const proto = Element.prototype;
  const original = proto.attachShadow;
  if (typeof original !== 'function') return;
  const patched = {
    attachShadow(init) { return original.call(this, { ...(init || {}), mode: 'open' }); },
  }.attachShadow;
  const descriptor = Object.getOwnPropertyDescriptor(proto, 'attachShadow');
  Object.defineProperty(proto, 'attachShadow', { ...descriptor, value: patched });
})();
"""


async def reach_closed_shadow_roots(page: Page, task: Task) -> None:
    """With ``includeShadowDom`` (on by default), make every shadow root the pages of this
    run attach open, for extraction to reach. A scrape runs no page script: nothing to do."""
    if task.includeShadowDom and task.mode != "scrape":
        await page.context.add_init_script(_OPEN_SHADOW_ROOTS_JS)


async def extract(state: RunState, task: Task) -> JsonValue:
    """The task's extraction script's result (None without a script); its console lines
    go to the run's log. ExtractionError when the script throws."""
    raw = task.extractionScript or ""
    if wants_html(raw):
        await refresh_html(state)
    script = substitute(raw, state.variables)
    if not script.strip():
        return None
    try:
        outcome = await state.page.evaluate(
            _EXTRACTION_JS,
            {
                "script": script,
                "shadow": task.includeShadowDom,
                "maxLines": state.bounds.max_log_lines,
                "maxChars": state.bounds.max_log_line_chars,
            },
        )
    except PlaywrightError as exc:
        raise ExtractionError(f"Extraction script error: {first_line(exc)}") from None
    for line in outcome.get("logs", []):
        await state.say(f"[extraction] {line}")
    if "thrown" in outcome:
        thrown = str(outcome["thrown"])[: state.bounds.max_log_line_chars]
        raise ExtractionError(f"Extraction script error: {thrown}")
    data: JsonValue = outcome.get("result")
    if task.extractionFormat == "csv":
        return as_csv(data, neutralise=state.neutralise_csv)
    return data


def as_csv(data: JsonValue, *, neutralise: bool = True) -> str:
    """``data`` as CSV: a list of objects gets a header of every key seen; with
    ``neutralise`` (CSV_NEUTRALISE_FORMULAS), a cell a spreadsheet would read as a
    formula is quoted."""
    rows = data if isinstance(data, list) else [data]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")

    def cell(value: JsonValue) -> JsonValue:
        text = json.dumps(value) if isinstance(value, dict | list) else value
        return _neutralised(text) if neutralise else text

    objects = [r for r in rows if isinstance(r, dict)]
    if rows and len(objects) == len(rows):
        columns: list[str] = []
        for row in objects:
            columns.extend(k for k in row if k not in columns)
        writer.writerow([cell(c) for c in columns])
        for row in objects:
            writer.writerow([cell(row.get(c, "")) for c in columns])
    else:
        for item in rows:
            writer.writerow([cell(v) for v in item] if isinstance(item, list) else [cell(item)])
    return out.getvalue()


# OWASP's CSV injection list: a spreadsheet reads a cell starting with one of these as a
# formula (tab and CR are how a leading one slips past a trim).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A text that is a plain number is read as that number, never as a formula: kept as it is.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _neutralised(value: JsonValue) -> JsonValue:
    if (
        isinstance(value, str)
        and value.startswith(_FORMULA_STARTS)
        and not _NUMBER.fullmatch(value)
    ):
        return "'" + value
    return value
