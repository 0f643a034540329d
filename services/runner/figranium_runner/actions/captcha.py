"""Captcha actions: ``wait_captcha``, ``solve_captcha``, and the task's ``autoSolveCaptcha``.

As in Figranium, both actions allow ``timeout`` ms (0 or none: 120000) for all they do.
``solve_captcha`` needs a solving service (CAPTCHA_SOLVER_URL on the runner, else the one
stored through ``/api/settings/captcha``); without one it fails at once, saying so, and the
task's error policy decides what follows.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from playwright.async_api import Error as PlaywrightError

from figranium_common.action_models import CaptchaAction, SolveCaptchaAction, WaitCaptchaAction
from figranium_common.errors import first_line
from figranium_common.jsontypes import JsonObject
from figranium_runner.actions.fields import ActionFailed, ActionResult, page_or_element, store
from figranium_runner.captcha_solver import TASK_TYPES, SolverCall, SolverFailed
from figranium_runner.captcha_widgets import CAPTCHA_TYPES, NoWidget, Widget, inject, wait_ready
from figranium_runner.variables import substitute

if TYPE_CHECKING:
    from figranium_runner.state import RunState

DEFAULT_TIMEOUT_MS = 120_000
NO_SOLVER = (
    "no captcha solver is configured (set CAPTCHA_SOLVER_URL and CAPTCHA_SOLVER_KEY on the"
    " runners, or POST /api/settings/captcha {baseUrl, clientKey})"
)
# The actions after which autoSolveCaptcha looks for a widget, as Figranium's.
AUTO_SOLVE_AFTER = frozenset({"navigate", "goto", "click", "type", "fill"})


def _wanted(state: RunState, action: CaptchaAction) -> str:
    wanted = substitute(action.captchaType or "", state.variables).strip()
    if wanted and wanted not in CAPTCHA_TYPES:
        known = ", ".join(CAPTCHA_TYPES)
        raise ActionFailed(f"{action.type}: unsupported captchaType {wanted!r} (known: {known})")
    return wanted


async def _ready(
    state: RunState, selector: str, wanted: str, timeout_ms: float, kind: str
) -> Widget:
    try:
        return await wait_ready(state.page, state.world, selector, wanted, timeout_ms)
    except NoWidget as exc:
        raise ActionFailed(f"{kind}: {exc}") from None


async def wait_captcha(state: RunState, action: WaitCaptchaAction) -> ActionResult:
    timeout_ms = action.timeout or DEFAULT_TIMEOUT_MS
    started = time.monotonic()
    wanted = _wanted(state, action)
    widget = await _ready(state, page_or_element(state, action), wanted, timeout_ms, action.type)
    ready = widget.public(started)
    store(state, action.varName, ready)
    return f"Captcha ready: {widget.captcha_type} ({ready['duration']}ms)", ready


async def _solve(state: RunState, widget: Widget, started: float, deadline: float) -> JsonObject:
    """Have the service solve ``widget`` and put the token in the page: what it did."""
    if state.captcha_solver is None:
        raise ActionFailed(NO_SOLVER)
    if widget.captcha_type not in TASK_TYPES or not widget.site_key:
        raise ActionFailed(f"solve_captcha: the {widget.captcha_type} widget has no site key")
    user_agent = await state.page.evaluate("navigator.userAgent")
    call = SolverCall(
        state.captcha_solver,
        page_url=state.page.url,
        user_agent=str(user_agent),
        allow_private=state.allow_private,
        allow_metadata=state.allow_metadata,
    )
    try:
        token = await call.solve(widget, deadline)
    except SolverFailed as exc:
        raise ActionFailed(f"solve_captcha: the remote solver failed: {exc.details}") from None
    callback = await inject(state.page, widget, token)
    solved: JsonObject = {
        "success": True,
        "challenge": widget.captcha_type,
        "duration": int((time.monotonic() - started) * 1000),
        "provider": "remote",
    }
    if widget.site_key:
        solved["siteKey"] = widget.site_key
    if callback:
        solved["callback"] = callback
    return solved


async def solve_captcha(state: RunState, action: SolveCaptchaAction) -> ActionResult:
    if state.captcha_solver is None:  # said before waiting up to two minutes for a widget
        raise ActionFailed(NO_SOLVER)
    timeout_ms = action.timeout or DEFAULT_TIMEOUT_MS
    started = time.monotonic()
    wanted = _wanted(state, action)
    selector = page_or_element(state, action)
    widget = await _ready(state, selector, wanted, timeout_ms, "solve_captcha")
    solved = await _solve(state, widget, started, started + timeout_ms / 1000)
    store(state, action.varName, solved)
    return f"Captcha solved: {widget.captcha_type} ({solved['duration']}ms)", solved


async def auto_solve(state: RunState, after: str) -> None:
    """``autoSolveCaptcha``: after the start page and each action of AUTO_SOLVE_AFTER, a
    widget ready within CAPTCHA_AUTO_DETECT_TIMEOUT_MS is solved. None found: nothing said;
    a failure is logged and the run goes on, as in Figranium."""
    if not state.auto_solve_captcha or after not in AUTO_SOLVE_AFTER:
        return
    started = time.monotonic()
    try:
        widget = await wait_ready(state.page, state.world, "", "", state.captcha_detect_ms)
    except (NoWidget, PlaywrightError):
        return
    try:
        solved = await _solve(state, widget, started, started + DEFAULT_TIMEOUT_MS / 1000)
    except ActionFailed as exc:
        await state.say(f"[CAPTCHA ERROR] Auto-solve attempt failed: {exc.details}")
        return
    except PlaywrightError as exc:
        await state.say(f"[CAPTCHA ERROR] Auto-solve attempt failed: {first_line(exc)}")
        return
    await state.say(f"Auto-solved captcha: {solved['challenge']} ({solved['duration']}ms)")
