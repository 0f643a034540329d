"""The action engine: runs a task's actions in a page, then its extraction script."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

from figranium_common.errors import FigraniumError, InvalidUrlError
from figranium_common.models import Action, RunResult, Task, now_ms
from figranium_common.urls import check_url
from figranium_runner.variables import initial_variables, substitute

log = structlog.get_logger(__name__)

LogSink = Callable[[str], Awaitable[None]]

# Figranium's extraction contract: the script is the body of an async function that gets
# `data` (html(), url()), `window`, `document`, `DOMParser` and `console`; what it returns
# is the run's data. Here it runs in the live page.
_EXTRACTION_JS = """
async (script) => {
  const logs = [];
  const push = (...args) => logs.push(args.map(String).join(' '));
  const consoleProxy = { log: push, info: push, debug: push, warn: push, error: push };
  const data = {
    html: () => document.documentElement.outerHTML,
    url: () => location.href,
  };
  const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
  const fn = new AsyncFunction(
    'data', '$$data', 'window', 'document', 'DOMParser', 'console', script);
  const result = await fn(data, data, window, document, DOMParser, consoleProxy);
  return { result: result === undefined ? null : result, logs };
}
"""

# A `javascript` action may be an expression (`document.title`) or a function body with
# `return`; try the expression form first, since a body never parses as one.
_ACTION_JS = """
async (code) => {
  const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
  let fn;
  try { fn = new AsyncFunction('return (' + code + '\\n);'); }
  catch (e) { fn = new AsyncFunction(code); }
  const result = await fn();
  return result === undefined ? null : result;
}
"""


class ActionFailed(FigraniumError):
    code = "ACTION_FAILED"


@dataclass
class Capture:
    name: str
    data: bytes
    content_type: str = "image/png"


@dataclass
class RunState:
    execution_id: str
    page: Page
    variables: dict[str, Any]
    allow_private: bool
    default_timeout_ms: int
    emit: LogSink
    logs: list[str] = field(default_factory=list)
    captures: list[Capture] = field(default_factory=list)

    async def say(self, line: str) -> None:
        self.logs.append(line)
        await self.emit(line)

    def capture_name(self, label: str | None = None) -> str:
        suffix = f"_{_safe_label(label)}" if label else ""
        return f"{self.execution_id}_agent_{now_ms()}{suffix}.png"


def _safe_label(label: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)
    return cleaned.strip("-")[:60] or "shot"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _seconds(value: Any, default: float) -> float:
    if value in (None, ""):
        return default
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        raise ActionFailed(f"expected a number of seconds, got {value!r}") from None


async def _goto(state: RunState, url: str) -> None:
    await check_url(url, allow_private=state.allow_private)
    await state.page.goto(url, wait_until="load")


def _need_selector(action: Action, selector: str) -> str:
    if not selector:
        raise ActionFailed(f"{action.type} needs a selector")
    return selector


async def run_action(state: RunState, action: Action) -> str:
    """Run one action; returns the human description used in the run's log."""
    page = state.page
    selector = substitute(action.selector or "", state.variables)
    raw_value = action.value
    value = substitute(raw_value, state.variables) if isinstance(raw_value, str) else raw_value
    text = "" if value is None else str(value)
    kind = action.type
    if kind in ("navigate", "goto"):
        if not text:
            raise ActionFailed("navigate needs a URL in value")
        await _goto(state, text)
        return f"Navigating to {text}"
    if kind == "click":
        target = _need_selector(action, selector)
        click_type = action.clickType or "single"
        if click_type == "double":
            await page.dblclick(target)
        elif click_type == "right":
            await page.click(target, button="right")
        else:
            await page.click(target)
        return f"Clicking: {target}"
    if kind in ("type", "fill"):
        if selector:
            if action.typeMode == "append":
                await page.locator(selector).first.press("End")
                await page.locator(selector).first.press_sequentially(text)
            else:
                await page.fill(selector, text)
            return f"Typing into {selector}: {text}"
        await page.keyboard.type(text)
        return f"Typing into focused element: {text}"
    if kind == "press":
        key = action.key or text
        if not key:
            raise ActionFailed("press needs a key (e.g. Enter, Control+A)")
        if selector:
            await page.press(selector, key)
        else:
            await page.keyboard.press(key)
        return f"Pressing {key}"
    if kind == "wait":
        seconds = _seconds(value, 2.0)
        await asyncio.sleep(seconds)
        return f"Waiting {seconds:g} s"
    if kind == "wait_selector":
        target = _need_selector(action, selector)
        seconds = _seconds(value, 10.0)
        await page.wait_for_selector(target, state="visible", timeout=seconds * 1000)
        return f"Waiting for {target}"
    if kind == "hover":
        await page.hover(_need_selector(action, selector))
        return f"Hovering: {selector}"
    if kind == "select":
        await page.select_option(_need_selector(action, selector), text)
        return f"Selecting {text} in {selector}"
    if kind in ("check", "uncheck"):
        target = _need_selector(action, selector)
        await (page.check(target) if kind == "check" else page.uncheck(target))
        return f"{kind.capitalize()}ing {target}"
    if kind == "reload":
        await page.reload(wait_until="load")
        return "Reloading page"
    if kind == "javascript":
        if not text:
            raise ActionFailed("javascript needs code in value")
        output = await page.evaluate(_ACTION_JS, text)
        state.variables["block"] = {"output": output}
        return "Running JavaScript"
    if kind == "screenshot":
        label = action.label or (text or None)
        name = state.capture_name(label)
        state.captures.append(Capture(name, await page.screenshot(full_page=True)))
        return f"Screenshot saved: {name}"
    if kind == "set":
        var_name = (action.model_extra or {}).get("varName")
        if not var_name:
            raise ActionFailed("set needs varName")
        state.variables[str(var_name)] = _parse_literal(text)
        return f"Setting {var_name}"
    if kind in ("do_nothing", "noop", "pass"):
        return "Doing nothing"
    raise ActionFailed(f"action type {kind!r} is not supported by this runner yet")


def _parse_literal(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(text)
    except ValueError:
        return text


def _as_csv(data: Any) -> str:
    rows = data if isinstance(data, list) else [data]
    out = io.StringIO()
    if rows and all(isinstance(r, dict) for r in rows):
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
    else:
        writer_rows = csv.writer(out, lineterminator="\n")
        for row in rows:
            writer_rows.writerow([_cell(v) for v in row] if isinstance(row, list) else [_cell(row)])
    return out.getvalue()


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict | list) else value


async def extract(state: RunState, task: Task) -> Any:
    script = substitute(task.extractionScript or "", state.variables)
    if not script.strip():
        return None
    try:
        outcome = await state.page.evaluate(_EXTRACTION_JS, script)
    except PlaywrightError as exc:
        raise ActionFailed(f"Extraction script error: {_first_line(exc)}") from None
    for line in outcome.get("logs", []):
        await state.say(f"[extraction] {line}")
    data = outcome.get("result")
    return _as_csv(data) if task.extractionFormat == "csv" else data


async def execute(
    page: Page,
    task: Task,
    overrides: dict[str, Any],
    *,
    execution_id: str,
    allow_private: bool,
    default_timeout_ms: int,
    emit: LogSink,
) -> tuple[RunResult, list[Capture]]:
    """Run the whole task; failures become an ``error`` result, never an exception."""
    state = RunState(
        execution_id=execution_id,
        page=page,
        variables=initial_variables(task.variables, overrides),
        allow_private=allow_private,
        default_timeout_ms=default_timeout_ms,
        emit=emit,
    )
    error: str | None = None
    data: Any = None
    try:
        start_url = substitute(task.url, state.variables)
        if start_url:
            page.set_default_timeout(max(default_timeout_ms, 30_000))
            await _goto(state, start_url)
            await state.say(f"Navigating to {start_url}")
            if task.wait:
                await asyncio.sleep(task.wait)
        for index, action in enumerate(task.actions, start=1):
            if action.disabled:
                continue
            page.set_default_timeout(action.timeout or default_timeout_ms)
            started = time.monotonic()
            try:
                description = await run_action(state, action)
            except (PlaywrightError, FigraniumError) as exc:
                elapsed = int((time.monotonic() - started) * 1000)
                await state.say(
                    f"#{index} {action.type} failed after {elapsed} ms: {_first_line(exc)}"
                )
                raise ActionFailed(
                    f"action #{index} ({action.type}) failed: {_first_line(exc)}"
                ) from None
            elapsed = int((time.monotonic() - started) * 1000)
            await state.say(f"{description} (#{index} {action.type}, {elapsed} ms)")
        page.set_default_timeout(default_timeout_ms)
        data = await extract(state, task)
    except InvalidUrlError as exc:
        error = f"{exc.code}: {exc.details}"
    except FigraniumError as exc:
        error = exc.details
    except PlaywrightError as exc:
        error = _first_line(exc)
    if error:
        await state.say(f"Run failed: {error}")
    screenshot_url = await _final_screenshot(state)
    result = RunResult(
        outcome="error" if error else "success",
        final_url=page.url,
        data=data,
        logs=state.logs,
        screenshot_url=screenshot_url,
        error=error,
        html=await page.content() if task.includeHtml else None,
    )
    return result, state.captures


async def _final_screenshot(state: RunState) -> str | None:
    try:
        name = state.capture_name()
        state.captures.append(Capture(name, await state.page.screenshot(full_page=False)))
    except PlaywrightError as exc:
        log.warning("run.final_screenshot_failed", error=_first_line(exc))
        return None
    return f"/captures/{name}"
