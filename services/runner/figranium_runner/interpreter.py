"""The interpreter: runs a task's actions with their block structure (``if``, loops,
``on_error``), one action at a time, and ``start``'s subtasks.

A failed action is logged and the run goes on (Figranium's rule), unless an ``on_error``
handler was registered: then the handler runs and ends the run.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from playwright.async_api import Error as PlaywrightError

from figranium_common.action_models import Action, ForeachAction, IfAction, StartAction, WhileAction
from figranium_common.blocks import BlockMap, build_blocks
from figranium_common.errors import FigraniumError, InvalidUrlError, first_line
from figranium_common.jsontypes import JsonObject, JsonValue
from figranium_common.models import RunResult, Task
from figranium_runner import conditions
from figranium_runner.actions import HANDLERS, ActionFailed, StopRun
from figranium_runner.actions.captcha import auto_solve
from figranium_runner.actions.fields import ActionResult
from figranium_runner.bounds import LimitExceeded, too_large
from figranium_runner.page_html import refresh_html, wants_html
from figranium_runner.state import RunState
from figranium_runner.variables import initial_variables, lookup, secret_values, substitute

MAX_START_DEPTH = 5

# How a started task is run: as a whole task, with its own result (engine.py).
SubtaskRunner = Callable[[RunState, Task], Awaitable[RunResult]]

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


class StopBefore(Exception):
    """Unwinds from the action a partial run stops at (``Interpreter.stop_before``)."""


class Interpreter:
    """Runs actions with their block structure; one per (sub)task."""

    def __init__(
        self,
        state: RunState,
        actions: list[Action],
        run_subtask: SubtaskRunner,
        *,
        stop_before: int | None = None,
        fail_fast: bool = False,
    ) -> None:
        self.state = state
        self.actions = actions
        self.run_subtask = run_subtask
        self.blocks: BlockMap = build_blocks(actions)
        # A partial run ends where control first reaches this action or one after it, so
        # an action in a branch not taken still ends it there, not at the end of the task.
        self.stop_before = stop_before
        self.fail_fast = fail_fast  # a failed action raises ActionFailed: no going on
        # The actions naming {$html}: the page's HTML is read again before each runs.
        self.wants_html = [wants_html(action.model_dump_json()) for action in actions]

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
                raise StopBefore
            action = self.actions[index]
            block = self.blocks.by_start.get(index)
            if action.disabled:
                await self.state.say(f"SKIPPED disabled action: {action.type}")
                index = (block.end if block else index) + 1
                continue
            if self.wants_html[index]:
                await refresh_html(self.state)
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
        if action.type == "on_error":
            state.error_handler = (index + 1, end)
            await state.say("On-error handler registered")
            return
        if action.type == "if":
            truth = await self._condition(index, action)
            if truth is None:
                return
            await state.say(f"If condition: {'true' if truth else 'false'}")
            if truth:
                await self._range(index + 1, else_at if else_at is not None else end)
            elif else_at is not None:
                await self._range(else_at + 1, end)
            return
        if action.type == "while":
            rounds = 0
            while True:
                truth = await self._condition(index, action)
                if not truth:
                    return
                rounds = self._count(index, action, rounds)
                await self._range(index + 1, end)
        if action.type == "repeat":
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
        if action.type == "foreach":
            items = await self._foreach_items(index, action)
            if items is not None:
                if len(items) > state.max_loop_iterations:
                    self._count(index, action, state.max_loop_iterations)
                await self._loop(index, end, items, f"For-each over {len(items)} item(s)")

    def _count(self, index: int, action: Action, rounds: int) -> int:
        if rounds >= self.state.max_loop_iterations:
            named = f" (id {action.id!r})" if action.id else ""
            raise LoopLimitExceeded(
                f"the {action.type} loop at action {index + 1}{named} went past"
                f" {self.state.max_loop_iterations} iterations (the task's maxLoopIterations,"
                " else RUNNER_MAX_LOOP_ITERATIONS)"
            )
        return rounds + 1

    async def _loop(self, index: int, end: int, items: list[JsonValue], line: str) -> None:
        state = self.state
        await state.say(line)
        outer = state.variables.get("loop")
        try:
            for position, item in enumerate(items):
                element = item if isinstance(item, dict) and "text" in item else None
                state.variables["loop"] = {
                    "index": position,
                    "count": len(items),
                    "item": position + 1 if item is None else item,
                    "text": element.get("text") if element else ("" if item is None else item),
                    "html": element.get("html", "") if element else "",
                }
                state.set_output(item)
                await self._range(index + 1, end)
        finally:
            if outer is None:
                state.variables.pop("loop", None)
            else:
                state.variables["loop"] = outer

    async def _foreach_items(self, index: int, action: ForeachAction) -> list[JsonValue] | None:
        state = self.state
        selector = substitute(action.selector or "", state.variables)
        if selector:
            limit = state.bounds.max_variable_bytes
            try:
                found = await state.world.evaluate(
                    _FOREACH_ELEMENTS_JS,
                    {
                        "selector": selector,
                        "most": state.max_loop_iterations + 1,
                        "maxChars": limit,
                    },
                )
            except PlaywrightError as exc:
                await self._failed(index, action, first_line(exc), 0)
                return None
            if not isinstance(found, list):  # null: past maxChars
                await self._limit_failed(index, action, too_large("the matched elements", limit))
                return None
            return found
        reference = action.varName or (action.value if isinstance(action.value, str) else "")
        source: JsonValue = action.value if isinstance(action.value, list) else None
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

    async def _condition(self, index: int, action: IfAction | WhileAction) -> bool | None:
        state = self.state
        started = time.monotonic()
        try:
            truth = await conditions.evaluate(
                action, state.world, state.variables, state.bounds.regex_timeout_ms
            )
        except PlaywrightError as exc:
            await self._failed(index, action, f"condition: {first_line(exc)}", started)
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
        # 0 is the default, as in Figranium: Playwright would read it as no limit at all.
        state.page.set_default_timeout(action.timeout or state.default_timeout_ms)
        started = time.monotonic()
        try:
            if action.type == "start":
                description, output = await self._start(action)
            else:
                description, output = await HANDLERS[action.type](state, action)
            state.set_output(output)
        except (PlaywrightError, ActionFailed, InvalidUrlError) as exc:
            await self._failed(index, action, first_line(exc), started)
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
        await auto_solve(state, action.type)

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

    async def _start(self, action: StartAction) -> ActionResult:
        state = self.state
        task_id = substitute(action.value, state.variables).strip()
        if not task_id:
            raise ActionFailed("start needs a task id in value")
        if state.depth >= MAX_START_DEPTH:
            raise ActionFailed(f"start: tasks nested more than {MAX_START_DEPTH} deep")
        child_task = state.subtasks.get(task_id)
        if child_task is None:
            raise ActionFailed(f"start: task {task_id!r} does not exist or was not supplied")
        variables = {**initial_variables(child_task.variables, {}), **_plain(state.variables)}
        for secret in secret_values(child_task.variables, variables):
            state.redactor.add(secret)
        page = await state.page.context.new_page()
        try:
            child = state.for_subtask(task_id, child_task, page, variables)
            result = await self.run_subtask(child, child_task)
        finally:
            await page.close()
        state.captures.extend(child.captures)
        state.downloads.extend(child.downloads)
        if result.outcome != "success":
            raise ActionFailed(f"start: task {task_id!r} failed: {result.error}")
        output = result.data if result.data is not None else result.html
        return f"Started task: {task_id}", output


def _plain(variables: JsonObject) -> JsonObject:
    return {k: v for k, v in variables.items() if k not in ("block", "loop", "error")}
