"""The interpreter: runs a task's actions (blocks, loops, error handlers), then extraction."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import mimetypes
import os
import re
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from playwright.async_api import Download, Page, Route
from playwright.async_api import Error as PlaywrightError

from figranium_common.blocks import BlockMap, BlockStructureError, build_blocks
from figranium_common.config import Config
from figranium_common.errors import FigraniumError, InvalidUrlError
from figranium_common.models import Action, RunResult, Task, now_ms
from figranium_common.outbound_http import safe_request
from figranium_common.outbound_urls import check_url
from figranium_common.redact import Redactor
from figranium_runner import conditions
from figranium_runner.actions import HANDLERS, ActionFailed, StopRun
from figranium_runner.bounds import Bounds, LimitExceeded, LogBudget, VariableBudget, too_large
from figranium_runner.isolated import IsolatedWorld
from figranium_runner.variables import (
    initial_variables,
    lookup,
    secret_values,
    substitute,
    text_limit,
)

log = structlog.get_logger(__name__)

LogSink = Callable[[str], Awaitable[None]]
MAX_START_DEPTH = 5

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
  const fn = new AsyncFunction(__PARAMETERS__, script);
  const result = await fn(data, data, window, document, DOMParser, consoleProxy);
  return { result: result === undefined ? null : result, logs };
}
""".replace("__PARAMETERS__", ", ".join(json.dumps(name) for name in EXTRACTION_PARAMETERS))

# At most `most` elements, and null once their text and HTML pass `maxChars` in all: the
# outerHTML of every element of a deeply nested page adds up to its size squared.
_FOREACH_ELEMENTS_JS = """
({ selector, most, maxChars }) => {
  const items = [];
  let chars = 0;
  for (const el of document.querySelectorAll(selector)) {
    if (items.length >= most) break;
    const item = { text: (el.innerText || el.textContent || '').trim(), html: el.outerHTML };
    chars += item.text.length + item.html.length;
    if (chars > maxChars) return null;
    items.push(item);
  }
  return items;
}
"""


class LoopLimitExceeded(FigraniumError):
    code = "LOOP_LIMIT"


class _HandleError(Exception):
    """Unwinds to the registered ``on_error`` handler."""


class _StopBefore(Exception):
    """Unwinds from the action a partial run stops at (``Interpreter.stop_before``)."""


# Downloads wait on disk under this name until they are stored in the captures bucket.
DOWNLOAD_FILE_PREFIX = "figranium-download-"


@dataclass
class Capture:
    """A file to store in the captures bucket: ``data`` in memory, or a file at ``path``
    (a download: streamed from disk, and removed once stored)."""

    name: str
    data: bytes
    content_type: str = "image/png"
    path: Path | None = None


@dataclass
class RunState:
    execution_id: str
    page: Page
    variables: dict[str, Any]
    allow_private: bool
    default_timeout_ms: int
    emit: LogSink
    max_loop_iterations: int = 1000
    allow_metadata: bool = False  # ALLOW_METADATA_ADDRESS; meaningful with allow_private
    max_download_bytes: int = 100 * 1024 * 1024  # MAX_DOWNLOAD_BYTES
    subtasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    human_typing: bool = False
    # Secret variables and text typed into password fields, hidden in every line said and
    # in the result; a subtask shares its parent's, so neither shows the other's secrets.
    redactor: Redactor = field(default_factory=Redactor)
    neutralise_csv: bool = True  # CSV_NEUTRALISE_FORMULAS
    depth: int = 0
    logs: list[str] = field(default_factory=list)
    captures: list[Capture] = field(default_factory=list)
    downloads: list[dict[str, Any]] = field(default_factory=list)
    pending_downloads: set[asyncio.Task[None]] = field(default_factory=set)
    download_started: asyncio.Event = field(default_factory=asyncio.Event)
    error_handler: tuple[int, int] | None = None
    in_error_handler: bool = False
    failed_actions: int = 0

    bounds: Bounds = field(default_factory=Bounds)
    log_budget: LogBudget | None = None  # shared with started tasks; made from bounds
    variable_budget: VariableBudget = field(init=False)
    world: IsolatedWorld = field(init=False)  # the page's isolated world, for our scripts

    def __post_init__(self) -> None:
        if self.log_budget is None:
            self.log_budget = LogBudget(self.bounds)
        self.variable_budget = VariableBudget(self.bounds, {})
        self.world = IsolatedWorld(self.page)

    @property
    def action_timeout_s(self) -> float:
        return self.default_timeout_ms / 1000

    async def say(self, line: str, *, always: bool = False) -> None:
        assert self.log_budget is not None
        admitted = self.log_budget.admit(self.redactor.text(line), always=always)
        if admitted is None:
            return
        self.logs.append(admitted)
        await self.emit(admitted)

    def store(self, name: str, value: Any) -> None:
        """Set a variable; LimitExceeded past RUNNER_MAX_VARIABLE(S)_BYTES."""
        self.variable_budget.admit(name, value)
        self.variables[name] = value

    async def goto(self, url: str) -> None:
        await check_url(url, allow_private=self.allow_private, allow_metadata=self.allow_metadata)
        await self.page.goto(url, wait_until="load")

    async def screenshot(self, label: str | None, *, full_page: bool) -> str:
        suffix = f"_{_safe_label(label)}" if label else ""
        name = f"{self.execution_id}_agent_{now_ms()}{suffix}.png"
        self.captures.append(Capture(name, await self.page.screenshot(full_page=full_page)))
        return f"/captures/{name}"

    def set_output(self, value: Any) -> None:
        if value is not None:
            self.variable_budget.admit("block.output", value)
            self.variables["block"] = {"output": value}

    def track_downloads(self, page: Page) -> None:
        def on_download(download: Download) -> None:
            self.download_started.set()
            task = asyncio.create_task(self._save_download(download))
            self.pending_downloads.add(task)
            task.add_done_callback(self.pending_downloads.discard)

        page.on("download", on_download)

    async def _save_download(self, download: Download) -> None:
        original = download.suggested_filename or "download"
        kept: Path | None = None
        try:
            size = (await download.path()).stat().st_size
            if size > self.max_download_bytes:
                await download.delete()
                await self.say(
                    f"[DOWNLOAD ERROR] {original}: {size} bytes exceeds MAX_DOWNLOAD_BYTES"
                    f" ({self.max_download_bytes}); dropped"
                )
                return
            # A copy of our own, on disk: Playwright removes its file when the context
            # closes, which may be while the captures are still being stored.
            fd, raw = tempfile.mkstemp(prefix=DOWNLOAD_FILE_PREFIX)
            os.close(fd)
            kept = Path(raw)
            await download.save_as(kept)
        except (PlaywrightError, OSError) as exc:
            if kept is not None:
                kept.unlink(missing_ok=True)
            await self.say(f"[DOWNLOAD ERROR] {original}: {_first_line(exc)}")
            return
        name = f"{self.execution_id}_download_{now_ms()}_{_safe_label(original, 80)}"
        kind = mimetypes.guess_type(original)[0] or "application/octet-stream"
        self.captures.append(Capture(name, b"", kind, path=kept))
        self.downloads.append(
            {"name": original, "url": download.url, "path": f"/captures/{name}", "size": size}
        )
        await self.say(f"[DOWNLOAD] Saved: {original}")


def _safe_label(label: str, limit: int = 24) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in label).strip("-.")
    return cleaned[:limit] or "file"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class Interpreter:
    """Runs actions with their block structure; one per (sub)task."""

    def __init__(
        self,
        state: RunState,
        actions: list[Action],
        *,
        stop_before: int | None = None,
        fail_fast: bool = False,
    ) -> None:
        self.state = state
        self.actions = actions
        self.blocks: BlockMap = build_blocks(actions)
        # A partial run ends where control first reaches this action or one after it, so
        # an action in a branch not taken still ends it there, not at the end of the task.
        self.stop_before = stop_before
        self.fail_fast = fail_fast  # a failed action raises ActionFailed: no going on

    async def run(self) -> None:
        try:
            await self._range(0, len(self.actions))
        except _HandleError:
            assert self.state.error_handler is not None
            start, end = self.state.error_handler
            self.state.in_error_handler = True
            await self.state.say("Running the on_error handler")
            await self._range(start, end)

    async def _range(self, start: int, stop: int) -> None:
        index = start
        while index < stop:
            if self.stop_before is not None and index >= self.stop_before:
                raise _StopBefore
            action = self.actions[index]
            block = self.blocks.by_start.get(index)
            if action.disabled:
                await self.state.say(f"SKIPPED disabled action: {action.type}")
                index = (block.end if block else index) + 1
                continue
            if block is not None:
                await self._block(index, action, block.end, block.else_at)
                index = block.end + 1
                continue
            if action.type == "else":  # reached the end of an if's true branch
                index = self.blocks.by_marker[index].end + 1
                continue
            if action.type != "end":
                await self._step(index, action)
            index += 1

    async def _block(self, index: int, action: Action, end: int, else_at: int | None) -> None:
        state = self.state
        kind = action.type
        if kind == "on_error":
            state.error_handler = (index + 1, end)
            await state.say("On-error handler registered")
            return
        if kind == "if":
            truth = await self._condition(index, action)
            if truth is None:
                return
            await state.say(f"If condition: {'true' if truth else 'false'}")
            if truth:
                await self._range(index + 1, else_at if else_at is not None else end)
            elif else_at is not None:
                await self._range(else_at + 1, end)
            return
        if kind == "while":
            rounds = 0
            while True:
                truth = await self._condition(index, action)
                if not truth:
                    return
                rounds = self._count(index, action, rounds)
                await self._range(index + 1, end)
        if kind == "repeat":
            raw = substitute(str(action.value or "0"), state.variables)
            try:
                times = int(float(raw))
            except ValueError:
                await self._failed(index, action, f"repeat needs a number, got {raw!r}", 0)
                return
            if times > state.max_loop_iterations:
                self._count(index, action, state.max_loop_iterations)
            await self._loop(index, end, [None] * max(0, times), f"Repeat {times} times")
            return
        if kind == "foreach":
            items = await self._foreach_items(index, action)
            if items is not None:
                if len(items) > state.max_loop_iterations:
                    self._count(index, action, state.max_loop_iterations)
                await self._loop(index, end, items, f"For-each over {len(items)} item(s)")

    def _count(self, index: int, action: Action, rounds: int) -> int:
        if rounds >= self.state.max_loop_iterations:
            raise LoopLimitExceeded(
                f"the {action.type} loop at action {index + 1} went past"
                f" {self.state.max_loop_iterations} iterations"
            )
        return rounds + 1

    async def _loop(self, index: int, end: int, items: list[Any], line: str) -> None:
        state = self.state
        await state.say(line)
        outer = state.variables.get("loop")
        try:
            for position, item in enumerate(items):
                is_element = isinstance(item, dict) and "text" in item
                state.variables["loop"] = {
                    "index": position,
                    "count": len(items),
                    "item": position + 1 if item is None else item,
                    "text": item.get("text") if is_element else ("" if item is None else item),
                    "html": item.get("html", "") if is_element else "",
                }
                state.set_output(item)
                await self._range(index + 1, end)
        finally:
            if outer is None:
                state.variables.pop("loop", None)
            else:
                state.variables["loop"] = outer

    async def _foreach_items(self, index: int, action: Action) -> list[Any] | None:
        state = self.state
        selector = substitute(action.selector or "", state.variables)
        if selector:
            limit = state.bounds.max_variable_bytes
            try:
                found: list[Any] | None = await state.world.evaluate(
                    _FOREACH_ELEMENTS_JS,
                    {
                        "selector": selector,
                        "most": state.max_loop_iterations + 1,
                        "maxChars": limit,
                    },
                )
            except PlaywrightError as exc:
                await self._failed(index, action, _first_line(exc), 0)
                return None
            if found is None:
                await self._limit_failed(index, action, too_large("the matched elements", limit))
                return None
            return found
        reference = action.varName or (action.value if isinstance(action.value, str) else "")
        source: Any = action.value if isinstance(action.value, list) else None
        if reference:
            source = lookup(state.variables, conditions.var_name(reference))
            if source is None and "{$" not in reference and not action.varName:
                source = conditions.parse_value(reference)
        if isinstance(source, str):
            parsed = conditions.parse_value(source)
            source = parsed if isinstance(parsed, list) else source.splitlines()
        if isinstance(source, dict):
            source = list(source.values())
        return list(source) if isinstance(source, list) else []

    async def _condition(self, index: int, action: Action) -> bool | None:
        state = self.state
        started = time.monotonic()
        try:
            truth = await conditions.evaluate(
                action, state.world, state.variables, state.bounds.regex_timeout_ms
            )
        except PlaywrightError as exc:
            await self._failed(index, action, f"condition: {_first_line(exc)}", started)
            return None
        except LimitExceeded as exc:
            await self._limit_failed(index, action, exc, started, prefix="condition: ")
            return None
        self.state.set_output(truth)
        return truth

    async def _limit_failed(
        self,
        index: int,
        action: Action,
        exc: LimitExceeded,
        started: float = 0,
        *,
        prefix: str = "",
    ) -> None:
        await self.state.say(f"[ERROR] action {index + 1} ({action.type}): {exc.details}")
        await self._failed(index, action, prefix + exc.details, started)

    async def _step(self, index: int, action: Action) -> None:
        state = self.state
        state.page.set_default_timeout(action.timeout or state.default_timeout_ms)
        started = time.monotonic()
        try:
            if action.type == "start":
                description, output = await self._start(action)
            else:
                description, output = await HANDLERS[action.type](state, action)
            state.set_output(output)
        except (PlaywrightError, ActionFailed, InvalidUrlError) as exc:
            await self._failed(index, action, _first_line(exc), started)
            return
        except LimitExceeded as exc:
            await self._limit_failed(index, action, exc, started)
            return
        except FigraniumError as exc:
            if isinstance(exc, StopRun | LoopLimitExceeded):
                raise
            await self._failed(index, action, exc.details, started)
            return
        except RecursionError:  # a value nested deeper than any page or API needs
            await self._failed(index, action, "a value is nested too deeply", started)
            return
        elapsed = int((time.monotonic() - started) * 1000)
        await state.say(f"{description} (#{index + 1} {action.type}, ok, {elapsed} ms)")

    async def _failed(self, index: int, action: Action, message: str, started: float) -> None:
        """Figranium's rule: a failed action is logged and the run goes on, unless an
        ``on_error`` handler was registered, which then runs and ends the run."""
        state = self.state
        state.failed_actions += 1
        elapsed = int((time.monotonic() - started) * 1000) if started else 0
        await state.say(
            f"FAILED action {action.type}: {message} (#{index + 1} {action.type}, failed,"
            f" {elapsed} ms)"
        )
        state.variables["error"] = {
            "message": message[: state.bounds.max_log_line_chars],  # a page's error can be huge
            "action": index + 1,
            "type": action.type,
        }
        if self.fail_fast:
            raise ActionFailed(f"action {index + 1} ({action.type}) failed: {message}")
        if state.error_handler is not None and not state.in_error_handler:
            raise _HandleError

    async def _start(self, action: Action) -> tuple[str, Any]:
        state = self.state
        task_id = substitute(str(action.value or ""), state.variables).strip()
        if not task_id:
            raise ActionFailed("start needs a task id in value")
        if state.depth >= MAX_START_DEPTH:
            raise ActionFailed(f"start: tasks nested more than {MAX_START_DEPTH} deep")
        body = state.subtasks.get(task_id)
        if body is None:
            raise ActionFailed(f"start: task {task_id!r} does not exist or was not supplied")
        child_task = Task.model_validate(body)
        variables = {**initial_variables(child_task.variables, {}), **_plain(state.variables)}
        for secret in secret_values(child_task.variables, variables):
            state.redactor.add(secret)
        page = await state.page.context.new_page()
        try:
            child = RunState(
                execution_id=state.execution_id,
                page=page,
                variables=variables,
                allow_private=state.allow_private,
                allow_metadata=state.allow_metadata,
                default_timeout_ms=state.default_timeout_ms,
                emit=lambda line: state.emit(f"[{task_id}] {line}"),
                max_loop_iterations=state.max_loop_iterations,
                bounds=state.bounds,
                log_budget=state.log_budget,
                max_download_bytes=state.max_download_bytes,
                subtasks=state.subtasks,
                human_typing=child_task.humanTyping,
                redactor=state.redactor,
                neutralise_csv=state.neutralise_csv,
                depth=state.depth + 1,
            )
            result = await _run_task(child, child_task)
        finally:
            await page.close()
        state.captures.extend(child.captures)
        state.downloads.extend(child.downloads)
        if result.outcome != "success":
            raise ActionFailed(f"start: task {task_id!r} failed: {result.error}")
        output = result.data if result.data is not None else result.html
        return f"Started task: {task_id}", output


def _plain(variables: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in variables.items() if k not in ("block", "loop", "error")}


def _as_csv(data: Any, *, neutralise: bool = True) -> str:
    rows = data if isinstance(data, list) else [data]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")

    def cell(value: Any) -> Any:
        text = json.dumps(value) if isinstance(value, dict | list) else value
        return _neutralised(text) if neutralise else text

    if rows and all(isinstance(r, dict) for r in rows):
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        writer.writerow([cell(c) for c in columns])
        for row in rows:
            writer.writerow([cell(row.get(c, "")) for c in columns])
    else:
        for row in rows:
            writer.writerow([cell(v) for v in row] if isinstance(row, list) else [cell(row)])
    return out.getvalue()


# OWASP's CSV injection list: a spreadsheet reads a cell starting with one of these as a
# formula (tab and CR are how a leading one slips past a trim).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A text that is a plain number is read as that number, never as a formula: kept as it is.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _neutralised(value: Any) -> Any:
    text = isinstance(value, str)
    if text and value.startswith(_FORMULA_STARTS) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


async def _extract(state: RunState, task: Task) -> Any:
    script = substitute(task.extractionScript or "", state.variables)
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
        raise ActionFailed(f"Extraction script error: {_first_line(exc)}") from None
    for line in outcome.get("logs", []):
        await state.say(f"[extraction] {line}")
    data = outcome.get("result")
    if task.extractionFormat == "csv":
        return _as_csv(data, neutralise=state.neutralise_csv)
    return data


async def _load_scraped(state: RunState, url: str) -> None:
    """``scrape`` mode: fetch the page over plain HTTP and show it without running scripts."""
    response = await safe_request(
        "GET",
        url,
        allow_private=state.allow_private,
        allow_metadata=state.allow_metadata,
        timeout=max(state.action_timeout_s, 30),
    )
    if response.status >= 400:
        raise ActionFailed(f"fetching {url} answered HTTP {response.status}")
    content_type = response.headers.get("Content-Type", "text/html; charset=utf-8")

    async def serve(route: Route) -> None:
        if route.request.url == response.url and route.request.is_navigation_request():
            await route.fulfill(status=200, body=response.body, content_type=content_type)
        else:  # no network from the page itself: what was fetched is all there is
            await route.abort("blockedbyclient")

    await state.page.route("**/*", serve)
    await state.page.goto(response.url, wait_until="load")
    await state.say(f"Fetched {url} (HTTP {response.status}, {len(response.body)} bytes)")


async def _run_task(state: RunState, task: Task) -> RunResult:
    """Run a (sub)task in its page; failures become an ``error`` result, never an exception."""
    error: str | None = None
    outcome = "success"
    data: Any = None
    state.track_downloads(state.page)
    try:
        interpreter = Interpreter(state, task.actions)  # checks the block structure first
        if await _open_start(state, task):
            try:
                await interpreter.run()
            except StopRun as stopped:
                await state.say(f"Stop task ({stopped.outcome})")
                if stopped.outcome == "error":
                    outcome, error = "error", "the task ended with a stop action (error)"
        state.page.set_default_timeout(state.default_timeout_ms)
        if state.pending_downloads:
            await asyncio.wait(list(state.pending_downloads), timeout=30)
        data = await _extract(state, task)
    except BlockStructureError as exc:
        error = f"{exc.code}: {exc.details}"
    except InvalidUrlError as exc:
        error = f"{exc.code}: {exc.details}"
    except FigraniumError as exc:
        error = exc.details
    except PlaywrightError as exc:
        error = _first_line(exc)
    if error:
        outcome = "error"
        await state.say(f"Run failed: {error}", always=True)
    screenshot_url: str | None = None
    with contextlib.suppress(PlaywrightError):
        screenshot_url = await state.screenshot(None, full_page=False)
    html: str | None = None
    if task.includeHtml:
        with contextlib.suppress(PlaywrightError):
            html = await state.page.content()
    hide = state.redactor
    return RunResult(
        outcome="error" if outcome == "error" else "success",
        final_url=hide.text(state.page.url),
        data=hide.value(data),
        logs=state.logs,
        screenshot_url=screenshot_url,
        error=None if error is None else hide.text(error),
        html=None if html is None else hide.text(html),
        downloads=hide.value(state.downloads),
    )


async def _open_start(state: RunState, task: Task) -> bool:
    """Open the task's start page; whether its actions run (a scrape runs none)."""
    start_url = substitute(task.url, state.variables)
    state.page.set_default_timeout(max(state.default_timeout_ms, 30_000))
    if task.mode == "scrape":
        if not start_url:
            raise ActionFailed("scrape mode needs a url")
        await _load_scraped(state, start_url)
        return False
    if start_url:
        await state.goto(start_url)
        await state.say(f"Navigating to {start_url}")
    if task.wait:
        await asyncio.sleep(task.wait)
    return True


@dataclass(frozen=True)
class Limits:
    """What the runner's settings allow a run: private addresses, action timeouts, loops."""

    allow_private: bool
    default_timeout_ms: int
    max_loop_iterations: int = 1000
    allow_metadata: bool = False  # ALLOW_METADATA_ADDRESS; meaningful with allow_private
    max_download_bytes: int = 100 * 1024 * 1024  # MAX_DOWNLOAD_BYTES
    neutralise_csv: bool = True  # CSV_NEUTRALISE_FORMULAS
    bounds: Bounds = field(default_factory=Bounds)

    @classmethod
    def from_config(cls, config: Config) -> Limits:
        return cls(
            bounds=Bounds(
                regex_timeout_ms=config.regex_timeout_ms,
                max_variable_bytes=config.max_variable_bytes,
                max_variables_bytes=config.max_variables_bytes,
                max_log_lines=config.max_log_lines,
                max_log_line_chars=config.max_log_line_chars,
            ),
            neutralise_csv=config.csv_neutralise_formulas,
            allow_private=config.allow_private_networks,
            default_timeout_ms=config.action_timeout_ms,
            max_loop_iterations=config.max_loop_iterations,
            allow_metadata=config.allow_metadata_address,
            max_download_bytes=config.max_download_bytes,
        )


def _first_state(
    page: Page,
    task: Task,
    overrides: dict[str, Any],
    *,
    execution_id: str,
    limits: Limits,
    emit: LogSink,
    subtasks: dict[str, dict[str, Any]] | None,
) -> RunState:
    variables = initial_variables(task.variables, overrides)
    return RunState(
        execution_id=execution_id,
        page=page,
        variables=variables,
        allow_private=limits.allow_private,
        allow_metadata=limits.allow_metadata,
        default_timeout_ms=limits.default_timeout_ms,
        emit=emit,
        max_loop_iterations=limits.max_loop_iterations,
        max_download_bytes=limits.max_download_bytes,
        subtasks=subtasks or {},
        human_typing=task.humanTyping,
        redactor=Redactor(secret_values(task.variables, variables)),
        neutralise_csv=limits.neutralise_csv,
        bounds=limits.bounds,
    )


async def execute(
    page: Page,
    task: Task,
    overrides: dict[str, Any],
    *,
    execution_id: str,
    limits: Limits,
    emit: LogSink,
    subtasks: dict[str, dict[str, Any]] | None = None,
) -> tuple[RunResult, list[Capture]]:
    """Run the whole task in ``page``; returns its result and the captures to store."""
    state = _first_state(
        page,
        task,
        overrides,
        execution_id=execution_id,
        limits=limits,
        emit=emit,
        subtasks=subtasks,
    )
    try:
        with text_limit(limits.bounds.max_variable_bytes):
            result = await _run_task(state, task)
    except BaseException:  # timed out or cancelled: nobody stores the downloads kept
        for capture in state.captures:
            if capture.path is not None:
                capture.path.unlink(missing_ok=True)
        raise
    return result, state.captures


async def run_until(
    page: Page,
    task: Task,
    overrides: dict[str, Any],
    *,
    stop_before: int,
    limits: Limits,
    emit: LogSink,
    subtasks: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Open the start page and run the actions before ``stop_before``, as a run would;
    no extraction, nothing kept. Raises FigraniumError or PlaywrightError on the first
    failure (a refused URL, a failed action), where a run would log it and go on."""
    state = _first_state(
        page, task, overrides, execution_id="tools", limits=limits, emit=emit, subtasks=subtasks
    )
    interpreter = Interpreter(state, task.actions, stop_before=stop_before, fail_fast=True)
    with text_limit(limits.bounds.max_variable_bytes):
        if not await _open_start(state, task):
            return
        with contextlib.suppress(_StopBefore, StopRun):
            await interpreter.run()
