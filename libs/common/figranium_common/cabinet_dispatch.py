"""What a run needs of the cabinets, resolved when it is dispatched (runners never read the
database): where its downloads go and which items its ``upload`` actions may take.

As Figranium's ``findCabinet``, a cabinet id that names no cabinet (unknown, empty, or a
``{$variable}``, which Figranium does not substitute there either) means the default one.
"""

from __future__ import annotations

from collections.abc import Iterable

from figranium_common.action_models import UploadAction
from figranium_common.cabinet_models import CabinetFile, CabinetPlan
from figranium_common.db import Connection
from figranium_common.models import Task, epoch_ms

# Unuploaded file items sent per cabinet, newest first: an upload takes the latest, so a
# run rarely needs more, and the run request stays small.
MAX_UPLOAD_CANDIDATES = 50

_CANDIDATES = (
    "SELECT id, name, object, size, sha256, created_at FROM cabinet_items"
    " WHERE cabinet_id = %s AND status = 'unuploaded' AND kind = 'file'"
    " ORDER BY created_at DESC, id DESC LIMIT %s"
)


def upload_cabinets(tasks: Iterable[Task]) -> set[str]:
    """The cabinet ids the ``upload`` actions of ``tasks`` name, as written ("" for none)."""
    return {
        (action.cabinetId or "").strip()
        for task in tasks
        for action in task.actions
        if isinstance(action, UploadAction)
    }


async def cabinet_plan(conn: Connection, task: Task, subtasks: Iterable[Task]) -> CabinetPlan:
    """The plan of a run of ``task`` that may start ``subtasks``: its downloads go to the
    task's ``downloadCabinetId`` (the default cabinet when it names none), and each cabinet
    its upload actions name gets its newest unuploaded file items, up to
    MAX_UPLOAD_CANDIDATES, keyed by the cabinet's id (the default's for unknown ids)."""
    named = upload_cabinets([task, *subtasks])
    wanted = sorted({*named, task.downloadCabinetId or ""})
    cur = await conn.execute(
        "SELECT id, is_default FROM cabinets WHERE is_default OR id = ANY(%s)", (wanted,)
    )
    rows = await cur.fetchall()
    existing = {str(row["id"]) for row in rows}
    default = next(str(row["id"]) for row in rows if row["is_default"])

    def resolve(cabinet_id: str | None) -> str:
        return cabinet_id if cabinet_id in existing else default

    plan = CabinetPlan(
        download_cabinet_id=resolve(task.downloadCabinetId), default_cabinet_id=default
    )
    for cabinet_id in sorted({resolve(c) for c in named}):
        cur = await conn.execute(_CANDIDATES, (cabinet_id, MAX_UPLOAD_CANDIDATES))
        plan.uploads[cabinet_id] = [
            CabinetFile(
                id=row["id"],
                name=row["name"],
                object=row["object"],
                size=row["size"],
                sha256=row["sha256"],
                created_at=epoch_ms(row["created_at"]) or 0,
            )
            for row in await cur.fetchall()
        ]
    return plan
