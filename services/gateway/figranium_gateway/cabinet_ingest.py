"""A run's result and the cabinets: the downloads its runner stored become items, and the
items it uploaded are marked, before the result itself is recorded.

A download a quota refuses is not kept: the run's log and its ``downloads`` entry say why,
and its object is deleted once the result is recorded (until then a redelivered result
finds it still there). A result recorded before changes nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from figranium_common.db import Pool
from figranium_common.jsontypes import JsonObject
from figranium_common.models import DownloadEntry, LogLine, ResultEvent
from figranium_gateway.store import events, recording
from figranium_gateway.store.cabinet_runs import Placed, mark_uploaded, place_downloads
from figranium_gateway.store.cabinets import Quotas

log = structlog.get_logger(__name__)

# No quotas: every download is kept (an ingester made without the settings).
UNBOUNDED = Quotas(cabinet=2**62, total=2**62)


@dataclass
class Settled:
    """The result as it is to be recorded, and the objects to delete once it is."""

    event: ResultEvent
    payload: JsonObject
    doomed: list[str] = field(default_factory=list)


async def settle_files(
    pool: Pool, event: ResultEvent, payload: JsonObject, quotas: Quotas
) -> Settled:
    """Store the run's downloads as items and mark its uploaded items, unless its result
    was recorded before; the result's ``downloads`` then name where each one went."""
    payload.pop("stored_downloads", None)  # the result's downloads say it, item by item
    payload.pop("uploaded_items", None)
    settled = Settled(event, payload)
    if not (event.stored_downloads or event.uploaded_items) or await events.has_event(
        pool, event.execution_id, event.attempt, event.seq
    ):
        return settled
    if event.uploaded_items:
        await mark_uploaded(pool, event.uploaded_items)
    if not event.stored_downloads:
        return settled
    placed = await place_downloads(pool, event.stored_downloads, quotas, event.execution_id)
    lines = [
        f"[DOWNLOAD ERROR] {p.download.name} not kept: {p.refused}" for p in placed if p.refused
    ]
    settled.doomed = [p.download.object for p in placed if p.refused]
    downloads = _entries(event.result.downloads, {p.download.item_id: p for p in placed})
    result = event.result.model_copy(
        update={"downloads": downloads, "logs": [*event.result.logs, *lines]}
    )
    settled.event = event.model_copy(update={"result": result})
    whole = payload.get("result")
    if isinstance(whole, dict):
        whole["downloads"] = [
            entry.model_dump(mode="json", exclude_none=True) for entry in downloads
        ]
        if lines:
            whole["logs"] = [*event.result.logs, *lines]
    if lines:
        for line in lines:
            log.warning("execution.download_refused", execution_id=event.execution_id, line=line)
        await recording.record_logs(pool, _after(event, lines))
    return settled


def _entries(entries: list[DownloadEntry], placed: dict[str, Placed]) -> list[DownloadEntry]:
    """The run's ``downloads`` with each one's cabinet as stored, or its error."""
    out = []
    for entry in entries:
        where = placed.get(entry.itemId or "")
        if entry.itemId is None:
            out.append(entry)
        elif where is None:
            out.append(entry.model_copy(update={"error": "not stored (the cabinets bucket)"}))
        elif where.refused is not None:
            out.append(entry.model_copy(update={"error": where.refused}))
        else:
            cabinet_id = where.cabinet_id
            path = f"/api/cabinets/{cabinet_id}/items/{entry.itemId}/download"
            out.append(entry.model_copy(update={"cabinetId": cabinet_id, "path": path}))
    return out


def _after(event: ResultEvent, lines: list[str]) -> list[LogLine]:
    """Lines the gateway adds to a run's log, just after its result."""
    return [
        LogLine(
            execution_id=event.execution_id,
            attempt=event.attempt,
            seq=event.seq + 1 + i,
            at=event.at,
            type="log",
            line=line,
        )
        for i, line in enumerate(lines)
    ]
