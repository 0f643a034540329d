"""One function per action type; each returns the line to say and the action's output
(``{$block.output}``).

Each handler takes its type's model (figranium_common.action_models). The interpreter in
:mod:`figranium_runner.interpreter` handles the block actions (``if``, loops,
``on_error``) and ``start``; everything else is here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from figranium_common.action_models import DoNothingAction, StopAction
from figranium_runner.actions import captcha, data, files, keyboard, page, waits
from figranium_runner.actions.fields import ActionFailed, ActionResult, StopRun, text

if TYPE_CHECKING:
    from figranium_runner.state import RunState

__all__ = ["HANDLERS", "ActionFailed", "StopRun"]

# Any: each handler takes the model of the types it is listed under, which is what the
# task's actions (a union told apart by ``type``) hold for those types.
Handler = Callable[["RunState", Any], Awaitable[ActionResult]]


async def do_nothing(state: RunState, action: DoNothingAction) -> ActionResult:
    return "Do nothing", None


async def stop(state: RunState, action: StopAction) -> ActionResult:
    raise StopRun("error" if text(state, action.value) == "error" else "success")


HANDLERS: dict[str, Handler] = {
    "navigate": page.navigate,
    "goto": page.navigate,
    "click": page.click,
    "type": keyboard.type_text,
    "fill": keyboard.type_text,
    "hover": page.hover,
    "press": keyboard.press,
    "select": page.select,
    "check": page.check,
    "uncheck": page.check,
    "drag_and_drop": page.drag_and_drop,
    "reload": page.reload,
    "wait": waits.wait,
    "wait_selector": waits.wait_selector,
    "wait_downloads": waits.wait_downloads,
    "scroll": page.scroll,
    "screenshot": page.screenshot,
    "javascript": page.javascript,
    "get_content": page.get_content,
    "set": data.set_variable,
    "merge": data.merge,
    "csv": data.csv_action,
    "http_request": data.http_request,
    "wait_captcha": captcha.wait_captcha,
    "solve_captcha": captcha.solve_captcha,
    "upload": files.upload,
    "finalize_uploads": files.finalize_uploads,
    "stop": stop,
    "do_nothing": do_nothing,
    "noop": do_nothing,
    "pass": do_nothing,
}
