"""Reading an action's fields in a run (variables substituted), and the errors actions raise."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, TypeAlias

from figranium_common.action_models import ElementAction, PageOrElementAction
from figranium_common.errors import FigraniumError
from figranium_common.jsontypes import JsonValue
from figranium_runner.conditions import var_name
from figranium_runner.variables import substitute

if TYPE_CHECKING:
    from figranium_runner.state import RunState


# What an action did: the line to say, and its output (``{$block.output}``).
ActionResult: TypeAlias = tuple[str, JsonValue]


class ActionFailed(FigraniumError):
    code = "ACTION_FAILED"


class StopRun(FigraniumError):
    """A ``stop`` action: end the run now with the given outcome."""

    code = "STOPPED"

    def __init__(self, outcome: str) -> None:
        super().__init__(f"stopped by a stop action ({outcome})")
        self.outcome = outcome


def text(state: RunState, value: JsonValue) -> str:
    """A field as text with the run's variables in it; objects and lists as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return substitute(value, state.variables)
    if isinstance(value, dict | list):
        return substitute(json.dumps(value), state.variables)
    return str(value)


def element(state: RunState, action: ElementAction) -> str:
    """The action's selector; an action on an element fails without one."""
    selector = substitute(action.selector, state.variables)
    if not selector:
        raise ActionFailed(f"{action.type} needs a selector")
    return selector


def page_or_element(state: RunState, action: PageOrElementAction) -> str:
    """The action's selector, or "" for the page (or the focused element)."""
    return substitute(action.selector or "", state.variables)


def seconds(raw: str, default: float) -> float:
    if not raw.strip():
        return default
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise ActionFailed(f"expected a number of seconds, got {raw!r}") from None


def store(state: RunState, name: str | None, value: JsonValue) -> None:
    """Keep ``value`` in the variable ``name`` (which may hold variables), when given."""
    if name:
        state.store(var_name(substitute(name, state.variables)), value)
