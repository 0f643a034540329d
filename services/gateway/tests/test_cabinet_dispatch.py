"""The cabinet plan a run is dispatched with, against a real PostgreSQL."""

from __future__ import annotations

from typing import Any

from figranium_common import db
from figranium_common.cabinet_dispatch import MAX_UPLOAD_CANDIDATES, cabinet_plan
from figranium_common.models import Task


def _task(download: str | None, *cabinets: str) -> Task:
    actions: list[dict[str, Any]] = [
        {"type": "upload", "selector": "#f", "cabinetId": c} for c in cabinets
    ]
    return Task.model_validate({"downloadCabinetId": download, "actions": actions})


async def test_candidates_are_newest_unuploaded_files_of_named_cabinets(pool: db.Pool) -> None:
    async with pool.connection() as conn:
        await conn.execute("INSERT INTO cabinets (id, name) VALUES ('cab_x', 'X'), ('cab_y', 'Y')")
        for n in range(MAX_UPLOAD_CANDIDATES + 5):
            status = "uploaded" if n == 54 else "unuploaded"  # the newest: not a candidate
            await conn.execute(
                "INSERT INTO cabinet_items (id, cabinet_id, name, kind, size, object, status,"
                " created_at) VALUES (%s, 'cab_x', %s, 'file', 1, %s, %s,"
                " now() + make_interval(secs => %s))",
                (f"item_x{n}", f"{n}.csv", f"items/item_x{n}", status, n),
            )
        await conn.execute(
            "INSERT INTO cabinet_items (id, cabinet_id, name, kind, size, entries)"
            " VALUES ('item_folder', 'cab_basic', 'dir', 'folder', 0, '[]')"
        )
        # A subtask's upload names cab_x; unknown and variable ids mean the default cabinet.
        plan = await cabinet_plan(
            conn, _task("cab_y", "cab_nope", "{$which}"), [_task(None, "cab_x")]
        )
        assert plan.download_cabinet_id == "cab_y" and plan.default_cabinet_id == "cab_basic"
        assert set(plan.uploads) == {"cab_x", "cab_basic"}
        assert plan.uploads["cab_basic"] == []  # folders are not candidates
        names = [item.name for item in plan.uploads["cab_x"]]
        assert names == [f"{n}.csv" for n in range(53, 53 - MAX_UPLOAD_CANDIDATES, -1)]
        assert plan.uploads["cab_x"][0].object == "items/item_x53"

        # No upload actions: no candidates; a downloadCabinetId naming nothing: the default.
        plan = await cabinet_plan(conn, _task("cab_gone"), [])
        assert (plan.download_cabinet_id, plan.uploads) == ("cab_basic", {})
