"""What a run request carries besides the task: the rules both gateway and scheduler use.

They read the database differently (the scheduler inside its claim transaction), so the
reads are passed in; the rules live here once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from figranium_common.action_models import StartAction
from figranium_common.jsontypes import JsonMapping
from figranium_common.models import Task

PROXIES_SETTING = "proxies"
MAX_SUBTASKS = 50


def started_task_ids(task: Task) -> list[str]:
    """Task ids named literally by the task's ``start`` actions.

    Ids given through variables cannot be known before the run; the runner reports those.
    """
    return [
        action.value.strip()
        for action in task.actions
        if isinstance(action, StartAction) and "{$" not in action.value
    ]


async def reachable_tasks(
    task: Task, fetch: Callable[[str], Awaitable[JsonMapping | None]]
) -> dict[str, Task]:
    """Every saved task a ``start`` action can reach from ``task`` (transitively), by id.

    A saved task that is not valid (written by an older release) is left out: its
    ``start`` then fails in the runner as one of a task that was not supplied."""
    found: dict[str, Task] = {}
    pending = started_task_ids(task)
    while pending and len(found) < MAX_SUBTASKS:
        task_id = pending.pop()
        if task_id in found:
            continue
        stored = await fetch(task_id)
        if stored is None:
            continue
        try:
            child = Task.model_validate(stored)
        except ValidationError:
            continue
        found[task_id] = child
        pending.extend(started_task_ids(child))
    return found
