"""A task's run in a page: open its start page, run its actions, extract its data.

:func:`execute` is a whole run, whose failures end up in its result; :func:`run_until` is
the start of one, up to an action, for the page capture of the tool service.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

from figranium_common.action_models import Action
from figranium_common.blocks import BlockStructureError
from figranium_common.config import Config
from figranium_common.errors import FigraniumError, InvalidUrlError, first_line
from figranium_common.jsontypes import JsonMapping, JsonObject, JsonValue
from figranium_common.models import CaptchaSolver, RunResult, Task
from figranium_common.redact import Redactor
from figranium_runner import banners, blockpage, scrape
from figranium_runner.actions import ActionFailed, StopRun
from figranium_runner.actions.captcha import auto_solve
from figranium_runner.bounds import Bounds
from figranium_runner.cabinet_run import RunCabinets
from figranium_runner.extraction import ExtractionError, extract, reach_closed_shadow_roots
from figranium_runner.humanize import Humanizer
from figranium_runner.interpreter import Interpreter, StopBefore
from figranium_runner.page_html import result_html
from figranium_runner.state import Capture, CaptureSink, LogSink, RunState
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
    captcha_solver: CaptchaSolver | None = None  # CAPTCHA_SOLVER_URL/KEY: win over a request's
    captcha_detect_ms: int = 5000  # CAPTCHA_AUTO_DETECT_TIMEOUT_MS

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
            captcha_solver=None
            if not config.captcha_solver_url
            else CaptchaSolver(
                base_url=config.captcha_solver_url, client_key=config.captcha_solver_key or ""
            ),
            captcha_detect_ms=config.captcha_auto_detect_timeout_ms,
        )

    def first_state(
        self,
        page: Page,
        task: Task,
        overrides: JsonMapping,
        execution_id: str,
        emit: LogSink,
        subtasks: dict[str, Task] | None,
        captcha_solver: CaptchaSolver | None = None,
        cabinets: RunCabinets | None = None,
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
            max_loop_iterations=task.maxLoopIterations or self.max_loop_iterations,
            max_download_bytes=self.max_download_bytes,
            subtasks=subtasks or {},
            human_typing=task.humanTyping,
            redactor=Redactor(secret_values(task.variables, variables)),
            neutralise_csv=self.neutralise_csv,
            bounds=self.bounds,
            captcha_solver=self.captcha_solver or captcha_solver,
            auto_solve_captcha=task.autoSolveCaptcha,
            captcha_detect_ms=self.captcha_detect_ms,
            cabinets=cabinets or RunCabinets(),
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
    captcha_solver: CaptchaSolver | None = None,
    rng: random.Random | None = None,
    cabinets: RunCabinets | None = None,
    store_now: CaptureSink | None = None,
) -> tuple[RunResult, list[Capture]]:
    """Run the whole task in ``page``; returns its result and the captures to store.
    ``captcha_solver`` is the run request's, used unless the runner has its own. ``rng``
    draws the choices of the task's stealth options (seeded, they repeat); the result's
    outcome is ``anti_bot`` when the run ends on a block page (blockpage.py).
    ``cabinets`` collects the run's downloads (kept on disk for the caller to store) and
    serves its uploads. ``store_now`` takes the screenshots of ``screenshot`` actions as
    they are taken (they are then not among the captures returned)."""
    state = limits.first_state(
        page, task, overrides, execution_id, emit, subtasks, captcha_solver, cabinets
    )
    state.store_now = store_now
    if task.stealth.enabled:
        state.human = Humanizer(task.stealth, rng or random.Random())
        banners.watch(state)
    await reach_closed_shadow_roots(page, task)
    try:
        with text_limit(limits.bounds.max_variable_bytes):
            result = await _run_task(state, task)
            if task.mode != "scrape":
                result = await _judge_block(state, result)
    except BaseException:  # timed out or cancelled: nobody stores the files kept
        state.discard_kept_files()
        raise
    return result, state.captures


async def _judge_block(state: RunState, result: RunResult) -> RunResult:
    """The result as ``anti_bot`` when the run ended on a block page, saying why."""
    reason = await blockpage.inspect(state.page, state.world)
    if reason is None or result.outcome not in ("success", "error"):
        return result
    line = f"[OUTCOME] Anti-bot detected: {reason}."
    await state.say(line, always=True)
    return result.model_copy(update={"outcome": "anti_bot", "logs": [*result.logs, line]})


async def run_until(
    page: Page,
    task: Task,
    overrides: JsonMapping,
    stop_before: int,
    *,
    limits: Limits,
    subtasks: dict[str, Task] | None = None,
    emit: LogSink | None = None,
) -> RunState:
    """Open the start page and run the actions before ``stop_before``, as a run would;
    no extraction, lines said only to ``emit``. Raises FigraniumError or PlaywrightError on
    the first failure (a refused URL, a failed action), where a run would log it and go
    on. Answers the run's state, to go on from; the caller removes the files it kept
    (``RunState.discard_kept_files``), which are removed here when it raises."""
    state = limits.first_state(page, task, overrides, "tools", emit or _unheard, subtasks)
    await reach_closed_shadow_roots(page, task)
    interpreter = Interpreter(
        state, task.actions, _run_task, stop_before=stop_before, fail_fast=True
    )
    try:
        with text_limit(limits.bounds.max_variable_bytes):
            if not await _open_start(state, task):
                return state
            with contextlib.suppress(StopBefore, StopRun):
                await interpreter.run()
    except BaseException:
        state.discard_kept_files()
        raise
    return state


async def run_action(state: RunState, action: Action) -> None:
    """Run one action (no block) in the state a partial run left, as a run would run it;
    raises ActionFailed when it fails, StopRun when it ends the run."""
    with text_limit(state.bounds.max_variable_bytes):
        await Interpreter(state, [action], _run_task, fail_fast=True).run()


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
    scraped: JsonObject = {}
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
        if task.mode == "scrape":
            scraped = await scrape.describe(state, task)
        data = await extract(state, task)
    except (FigraniumError, PlaywrightError) as exc:
        error = failure_text(exc)
        if isinstance(exc, ExtractionError):
            data = exc.details  # Figranium's data for a script that threw
    if error:
        outcome = "error"
        await state.say(f"Run failed: {error}", always=True)
    screenshot_url: str | None = None
    with contextlib.suppress(PlaywrightError):
        screenshot_url = await state.screenshot(None, full_page=False)
    html = scraped.pop("html", None) if scraped else await result_html(state, task)
    hide = state.redactor
    return RunResult(
        outcome="error" if outcome == "error" else "success",
        final_url=hide.text(state.page.url),
        data=hide.value(data),
        logs=state.logs,
        screenshot_url=screenshot_url,
        error=None if error is None else hide.text(error),
        html=None if not isinstance(html, str) else hide.text(html),
        downloads=hide.value([entry.model_dump() for entry in state.downloads]),
        **{name: hide.value(value) for name, value in scraped.items()},
    )


async def _open_start(state: RunState, task: Task) -> bool:
    """Open the task's start page; whether its actions run (a scrape runs none)."""
    start_url = substitute(task.url, state.variables)
    state.page.set_default_timeout(max(state.default_timeout_ms, 30_000))
    if task.mode == "scrape":
        if not start_url:
            raise ActionFailed("scrape mode needs a url")
        await scrape.load(state, task, start_url)
        return False
    if start_url:
        await state.goto(start_url)
        await state.say(f"Navigating to {start_url}")
        await auto_solve(state, "navigate")
    if isinstance(task.translation, dict) and task.translation.get("enabled") is True:
        await state.say("[TRANSLATION] Not applied: this server loads no remote script into pages")
    if task.wait:
        await asyncio.sleep(task.wait)
    return True
