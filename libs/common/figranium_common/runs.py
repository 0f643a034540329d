"""What a run request carries besides the task: the rules both gateway and scheduler use.

They read the database differently (the scheduler inside its claim transaction), so the
reads are passed in; the rules live here once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from figranium_common.models import ProxyConfig

PROXIES_SETTING = "proxies"
MAX_SUBTASKS = 50


def started_task_ids(task: dict[str, Any]) -> list[str]:
    """Task ids named literally by the task's ``start`` actions.

    Ids given through variables cannot be known before the run; the runner reports those.
    """
    actions = task.get("actions")
    if not isinstance(actions, list):
        return []
    return [
        action["value"].strip()
        for action in actions
        if isinstance(action, dict)
        and action.get("type") == "start"
        and isinstance(action.get("value"), str)
        and "{$" not in action["value"]
    ]


async def reachable_tasks(
    task: dict[str, Any], fetch: Callable[[str], Awaitable[dict[str, Any] | None]]
) -> dict[str, dict[str, Any]]:
    """Every saved task a ``start`` action can reach from ``task`` (transitively), by id."""
    found: dict[str, dict[str, Any]] = {}
    pending = started_task_ids(task)
    while pending and len(found) < MAX_SUBTASKS:
        task_id = pending.pop()
        if task_id in found:
            continue
        child = await fetch(task_id)
        if child is None:
            continue
        found[task_id] = child
        pending.extend(started_task_ids(child))
    return found


def usable_proxies(task: dict[str, Any], saved: Any) -> list[ProxyConfig]:
    """The saved proxies (setting ``proxies``), only for tasks that rotate through them."""
    if not task.get("rotateProxies") or not isinstance(saved, list):
        return []
    proxies = []
    for entry in saved:
        try:
            proxies.append(ProxyConfig.model_validate(entry))
        except ValidationError:
            continue  # checked when proxies are saved; an odd old entry is just not used
    return proxies
