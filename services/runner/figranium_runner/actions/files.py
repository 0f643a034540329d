"""``upload`` and ``finalize_uploads``: files from cabinets, Figranium's file store.

Cabinets are not on this server yet. Until they are, both actions fail, naming what is
missing, so that the task's error policy (``on_error``) decides, as for any failed action;
neither passes silently, since a task that uploads nothing must not look like one that did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from figranium_common.action_models import FinalizeUploadsAction, UploadAction
from figranium_runner.actions.fields import ActionFailed, ActionResult

if TYPE_CHECKING:
    from figranium_runner.state import RunState

MISSING = "cabinets (Figranium's file store), which this server does not have yet"


async def upload(state: RunState, action: UploadAction) -> ActionResult:
    cabinet = f" from cabinet {action.cabinetId!r}" if action.cabinetId else ""
    raise ActionFailed(f"upload{cabinet} needs {MISSING}")


async def finalize_uploads(state: RunState, action: FinalizeUploadsAction) -> ActionResult:
    raise ActionFailed(f"finalize_uploads needs {MISSING}")
