"""``upload`` and ``finalize_uploads``: files from cabinets, Figranium's file stores.

``upload`` puts a cabinet's latest unuploaded file (not yet uploaded in this run) into the
file input ``selector`` names, is inside, or is the label of; an element with no input is
clicked and the file chooser it opens gets the file. Extensions: ``value`` is a glob the
item's name must match (case-insensitive), and ``count`` (a number, or ``all``) gives an
input that takes several files that many matching items. The candidates were resolved when
the run was dispatched (figranium_common.cabinet_dispatch); their bytes come from the
cabinets bucket through files on disk, named as the items, removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from playwright.async_api import ElementHandle

from figranium_common.action_models import FinalizeUploadsAction, UploadAction
from figranium_common.cabinet_models import CabinetFile
from figranium_common.jsontypes import JsonObject
from figranium_runner.actions.fields import ActionFailed, ActionResult, page_or_element, text

if TYPE_CHECKING:
    from figranium_runner.state import RunState

# The file input an element is, holds, or labels (as Figranium looks for it).
_FILE_INPUT_JS = """
(el) => el.matches('input[type="file"]') ? el
  : (el.querySelector('input[type="file"]')
     || (el instanceof HTMLLabelElement && el.htmlFor ? document.getElementById(el.htmlFor) : null))
"""
# An element without a file input gets this long to open a file chooser when clicked.
_CHOOSER_WAIT_MS = 800


async def upload(state: RunState, action: UploadAction) -> ActionResult:
    selector = page_or_element(state, action)
    if not selector:
        raise ActionFailed("Upload selector is required.")
    cabinets = state.cabinets
    cabinet_id = cabinets.cabinet_of(action.cabinetId)
    items = _matching(cabinets.candidates(action.cabinetId), _pattern(state, action))
    if not items or cabinets.source is None:
        raise ActionFailed("No unuploaded items in this cabinet.")
    target = await state.page.wait_for_selector(selector, state="attached")
    if target is None:
        raise ActionFailed(f"Upload target not found: {selector}")
    field = (await target.evaluate_handle(_FILE_INPUT_JS)).as_element()
    several = field is not None and bool(await field.evaluate("(el) => el.multiple"))
    chosen = items[: _count(state, action)] if several else items[:1]
    names = ", ".join(item.name for item in chosen)
    await state.say(f"Uploading {names} from cabinet {cabinet_id}.")
    with tempfile.TemporaryDirectory(prefix="figranium-upload-") as folder:
        paths = [await _fetched(state, item, Path(folder, str(n))) for n, item in enumerate(chosen)]
        await _put_files(state, selector, target, field, paths)
    cabinets.uploaded_now(chosen, mark=action.markAsUploaded)
    outputs: list[JsonObject] = [
        {"cabinetId": cabinet_id, "itemId": item.id, "name": item.name, "kind": "file"}
        for item in chosen
    ]
    line = f"Uploaded {names}" + (" (marked as uploaded)" if action.markAsUploaded else "")
    return line, outputs[0] if len(outputs) == 1 else list(outputs)


async def finalize_uploads(state: RunState, action: FinalizeUploadsAction) -> ActionResult:
    """Mark every item uploaded so far in this run as uploaded (when the run ends)."""
    finalized = state.cabinets.mark(list(state.cabinets.uploaded))
    return f"Finalized {finalized} upload(s)", {"finalized": finalized}


def _pattern(state: RunState, action: UploadAction) -> str:
    return text(state, action.value).strip()


def _matching(items: list[CabinetFile], pattern: str) -> list[CabinetFile]:
    if not pattern:
        return items
    return [item for item in items if fnmatch.fnmatch(item.name.lower(), pattern.lower())]


def _count(state: RunState, action: UploadAction) -> int | None:
    """How many items an input taking several gets: ``count`` (None: all), else one."""
    raw = text(state, action.count).strip().lower()
    if not raw:
        return 1
    if raw == "all":
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ActionFailed(f"upload's count is a number of files or 'all', not {raw!r}")
    return int(raw)


async def _fetched(state: RunState, item: CabinetFile, folder: Path) -> Path:
    """The item's bytes in a file named as the item (its own folder: names may repeat)."""
    assert state.cabinets.source is not None
    await asyncio.to_thread(folder.mkdir)
    path = folder / item.name
    try:
        await state.cabinets.source.fetch(item, path)
    except Exception as exc:
        raise ActionFailed(f"cabinet item {item.name} could not be read: {exc}") from exc
    return path


async def _put_files(
    state: RunState,
    selector: str,
    target: ElementHandle,
    field: ElementHandle | None,
    paths: list[Path],
) -> None:
    if field is not None:
        await field.set_input_files(paths)
        return
    chooser = None
    with contextlib.suppress(Exception):
        async with state.page.expect_file_chooser(timeout=_CHOOSER_WAIT_MS) as opening:
            await target.click()
        chooser = await opening.value
    if chooser is None:
        raise ActionFailed(f"No file input found for upload target: {selector}")
    await chooser.set_files(paths)
