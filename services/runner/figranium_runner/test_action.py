"""Figranium's block test: one action of a task tried on a scratch page.

The task's start page opens and the actions before the one tested run as a run would run
them, in a clean browser context (as Figranium's test, nothing saved is read or written),
with the same URL policy and egress as runs. Then the action itself runs, and the answer
says what it did: its status, its inputs with variables substituted, its output, the
variables afterwards and the log. Secrets stay masked in all of it, as in a run's result.
"""

from __future__ import annotations

import contextlib
import random
import time

from playwright.async_api import Error as PlaywrightError

from figranium_common.action_models import Action, IfAction, WhileAction
from figranium_common.errors import FigraniumError
from figranium_common.jsontypes import JsonObject, JsonValue
from figranium_common.models import TestActionReply, TestActionRequest
from figranium_runner import conditions, identity
from figranium_runner.actions import ActionFailed, StopRun
from figranium_runner.browser import BrowserHost
from figranium_runner.context import open_context
from figranium_runner.egress import EgressPolicy
from figranium_runner.engine import Limits, failure_text, run_action, run_until
from figranium_runner.state import RunState
from figranium_runner.variables import substitute

# Block markers and loops have no effect of their own to show.
UNTESTABLE = frozenset({"repeat", "foreach", "on_error", "else", "end"})
_NOT_INPUTS = frozenset({"type", "id", "disabled"})


def resolved_inputs(action: Action, variables: JsonObject) -> JsonObject:
    """The action's fields as the run used them: ``{$name}`` replaced in every text."""
    fields = action.model_dump(exclude_none=True)
    return {
        name: substitute(value, variables) if isinstance(value, str) else value
        for name, value in fields.items()
        if name not in _NOT_INPUTS
    }


async def _perform(state: RunState, action: Action) -> JsonValue:
    """Run the action; its output (a condition's truth for ``if`` and ``while``)."""
    # So that an action without output shows none, and only its own failure is recorded.
    state.variables.pop("block", None)
    state.variables.pop("error", None)
    if isinstance(action, IfAction | WhileAction):
        truth = await conditions.evaluate(
            action, state.world, state.variables, state.bounds.regex_timeout_ms
        )
        state.set_output(truth)
        return truth
    try:
        await run_action(state, action)
    except StopRun as stopped:
        await state.say(f"Stop task ({stopped.outcome})")
        return stopped.outcome
    block = state.variables.get("block")
    return block.get("output") if isinstance(block, dict) else None


async def try_action(
    browser: BrowserHost,
    egress: EgressPolicy,
    limits: Limits,
    rng: random.Random,
    request: TestActionRequest,
) -> TestActionReply:
    task = request.task
    if request.action_index >= len(task.actions):
        return TestActionReply(error=f"the task has no action {request.action_index}")
    action = task.actions[request.action_index]
    if action.type in UNTESTABLE:
        return TestActionReply(error=f"a {action.type} action cannot be tested on its own")
    options = identity.context_options(task, request.proxies, rng)
    if task.mode == "scrape":
        options["java_script_enabled"] = False  # as a run shows it
    context = await open_context(browser, options, None, egress)
    started = time.monotonic()
    try:
        page = await context.new_page()
        await identity.emulate(page, options)
        try:
            state = await run_until(
                page,
                task,
                request.variables,
                request.action_index,
                limits=limits,
                subtasks=request.subtasks,
            )
        except (FigraniumError, PlaywrightError) as exc:
            return TestActionReply(
                status="not_reached",
                durationMs=int((time.monotonic() - started) * 1000),
                errorMessage=f"the steps before it failed: {failure_text(exc)}",
            )
        hide = state.redactor
        inputs = resolved_inputs(action, state.variables)
        began = time.monotonic()
        output: JsonValue = None
        error: str | None = None
        try:
            output = await _perform(state, action)
        except (FigraniumError, PlaywrightError) as exc:
            error = _failure(state, exc)
        finally:
            state.discard_kept_files()
        return TestActionReply(
            status="success" if error is None else "error",
            durationMs=int((time.monotonic() - began) * 1000),
            resolvedInputs=_object(hide.value(inputs)),
            output=hide.value(output),
            errorMessage=None if error is None else hide.text(error),
            variables=_object(hide.value(state.variables)),
            logs=state.logs,
        )
    finally:
        with contextlib.suppress(Exception):
            await context.close()


def _failure(state: RunState, exc: FigraniumError | PlaywrightError) -> str:
    """Why the action failed, as its run would record it in ``{$error.message}``."""
    recorded = state.variables.get("error")
    if isinstance(exc, ActionFailed) and isinstance(recorded, dict):
        message = recorded.get("message")
        if isinstance(message, str):
            return message
    return failure_text(exc)


def _object(value: JsonValue) -> JsonObject:
    return dict(value) if isinstance(value, dict) else {}
