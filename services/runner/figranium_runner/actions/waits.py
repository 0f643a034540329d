"""Actions that wait: a number of seconds, an element to show, downloads to finish."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from figranium_common.action_models import WaitAction, WaitDownloadsAction, WaitSelectorAction
from figranium_runner.actions.fields import ActionResult, element, seconds, text

if TYPE_CHECKING:
    from figranium_runner.state import RunState


async def wait(state: RunState, action: WaitAction) -> ActionResult:
    pause = seconds(text(state, action.value), 2.0)
    if state.human is not None and state.human.options.idleMovements:
        await state.human.idle(state.page, pause)  # the cursor wanders while it waits
    else:
        await asyncio.sleep(pause)
    return f"Waiting: {int(pause * 1000)}ms", int(pause * 1000)


async def wait_selector(state: RunState, action: WaitSelectorAction) -> ActionResult:
    selector = element(state, action)
    bound = seconds(text(state, action.value), 10.0)
    await state.page.wait_for_selector(selector, state="visible", timeout=bound * 1000)
    return f"Waiting for selector: {selector}", True


async def wait_downloads(state: RunState, action: WaitDownloadsAction) -> ActionResult:
    bound = seconds(text(state, action.value), 30.0)
    if not state.pending_downloads:
        # Give a click that just happened a moment to start its download.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.download_started.wait(), timeout=min(bound, 5.0))
    pending = list(state.pending_downloads)
    if pending:
        await asyncio.wait(pending, timeout=bound or None)
    return f"Waited for {len(pending)} download(s)", len(state.downloads)
