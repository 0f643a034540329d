"""A task's run in a page: open its start page, run its actions, extract its data.

:func:`execute` is a whole run, whose failures end up in its result; :func:`run_until` is
the start of one, up to an action, for the page capture of the tool service.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, Route

from figranium_common.blocks import BlockStructureError
from figranium_common.config import Config
from figranium_common.errors import FigraniumError, InvalidUrlError, first_line
from figranium_common.jsontypes import JsonMapping, JsonValue
from figranium_common.models import RunResult, Task
from figranium_common.outbound_http import safe_request
from figranium_common.redact import Redactor
from figranium_runner.actions import ActionFailed, StopRun
from figranium_runner.bounds import Bounds
from figranium_runner.extraction import extract
from figranium_runner.interpreter import Interpreter, StopBefore
from figranium_runner.state import Capture, LogSink, RunState, discard_files
from figranium_runner.variables import initial_variables, secret_values, substitute, text_limit


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

    def first_state(
        self,
        page: Page,
        task: Task,
        overrides: JsonMapping,
        execution_id: str,
        emit: LogSink,
        subtasks: dict[str, Task] | None,
    ) -> RunState:
        """The state of a task's run under these limits, before its first action."""
        variables = initial_variables(task.variables, overrides)
        return RunState(
            execution_id=execution_id,
            page=page,
            variables=variables,
            allow_private=self.allow_private,
            allow_metadata=self.allow_metadata,
            default_timeout_ms=self.default_timeout_ms,
            emit=emit,
            max_loop_iterations=self.max_loop_iterations,
            max_download_bytes=self.max_download_bytes,
            subtasks=subtasks or {},
            human_typing=task.humanTyping,
            redactor=Redactor(secret_values(task.variables, variables)),
            neutralise_csv=self.neutralise_csv,
            bounds=self.bounds,
        )


async def execute(
    page: Page,
    task: Task,
    overrides: JsonMapping,
    *,
    execution_id: str,
    limits: Limits,
    emit: LogSink,
    subtasks: dict[str, Task] | None = None,
) -> tuple[RunResult, list[Capture]]:
    """Run the whole task in ``page``; returns its result and the captures to store."""
    state = limits.first_state(page, task, overrides, execution_id, emit, subtasks)
    try:
        with text_limit(limits.bounds.max_variable_bytes):
            result = await _run_task(state, task)
    except BaseException:  # timed out or cancelled: nobody stores the downloads kept
        discard_files(state.captures)
        raise
    return result, state.captures


async def run_until(
    page: Page,
    task: Task,
    overrides: JsonMapping,
    stop_before: int,
    *,
    limits: Limits,
    subtasks: dict[str, Task] | None = None,
) -> None:
    """Open the start page and run the actions before ``stop_before``, as a run would;
    no extraction, nothing kept, nothing said. Raises FigraniumError or PlaywrightError on
    the first failure (a refused URL, a failed action), where a run would log it and go on."""
    state = limits.first_state(page, task, overrides, "tools", _unheard, subtasks)
    interpreter = Interpreter(
        state, task.actions, _run_task, stop_before=stop_before, fail_fast=True
    )
    with text_limit(limits.bounds.max_variable_bytes):
        if not await _open_start(state, task):
            return
        with contextlib.suppress(StopBefore, StopRun):
            await interpreter.run()


async def _unheard(line: str) -> None:
    """Where the lines of a partial run go: nobody reads them."""


def failure_text(exc: FigraniumError | PlaywrightError) -> str:
    """How a run that failed says why: the code of a refused URL or a broken block
    structure, a domain error's details, or the first line of Playwright's message."""
    if isinstance(exc, BlockStructureError | InvalidUrlError):
        return f"{exc.code}: {exc.details}"
    if isinstance(exc, FigraniumError):
        return exc.details
    return first_line(exc)


async def _run_task(state: RunState, task: Task) -> RunResult:
    """Run a (sub)task in its page; failures become an ``error`` result, never an exception."""
    error: str | None = None
    outcome = "success"
    data: JsonValue = None
    state.track_downloads(state.page)
    try:
        interpreter = Interpreter(state, task.actions, _run_task)  # checks the blocks first
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
        data = await extract(state, task)
    except (FigraniumError, PlaywrightError) as exc:
        error = failure_text(exc)
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
        downloads=hide.value([entry.model_dump() for entry in state.downloads]),
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
