"""``GET /api/executions/live``: Figranium's live execution list, as Server-Sent Events.

Figranium's console keeps its execution list current with this stream: ``event: ready``
first, then one ``data:`` message per change, ``{"type": "upsert", "execution": {…}}``
with the execution as the list shows it (queued, started, finished), or ``{"type":
"delete", "id"}``. It reads the same change log as ``/api/executions/stream`` (so it
resumes with ``Last-Event-ID`` on any replica); log lines are not list changes.
"""

from __future__ import annotations

import json

from aiohttp import web
from psycopg.rows import DictRow

from figranium_common.jsontypes import JsonObject
from figranium_gateway.openapi import ErrorBody
from figranium_gateway.routes.stream import serve_changes, start_after
from figranium_gateway.routing import Router
from figranium_gateway.state import POOL
from figranium_gateway.store import executions as execution_store

api = Router("executions")

LIST_KINDS = frozenset({"queued", "started", "finished"})
READY = b"event: ready\ndata: {}\n\n"


def _message(change_id: int, body: JsonObject) -> bytes:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return f"id: {change_id}\ndata: {data}\n\n".encode()


@api.get(
    "/api/executions/live",
    "Server-Sent Events of the execution list: {type: upsert, execution} or {type: delete, id}",
    query={
        "lastEventId": "resume after this event id (the Last-Event-ID header wins)",
        "key": "the API key, for EventSource clients that cannot send headers",
    },
    content_types={200: "text/event-stream"},
    responses={200: None, 400: ErrorBody},
)
async def live_executions(request: web.Request) -> web.StreamResponse:
    pool = request.app[POOL]

    async def encode(rows: list[DictRow]) -> bytes:
        wanted = [row for row in rows if row["kind"] in LIST_KINDS]
        # The list entry as it is now: a burst of changes to one run shows its latest state.
        current = await execution_store.summaries(pool, {row["execution_id"] for row in wanted})
        out: list[bytes] = []
        for row in rows:
            if row["kind"] == "deleted":
                out.append(_message(row["id"], {"type": "delete", "id": row["execution_id"]}))
            elif row["kind"] in LIST_KINDS and row["execution_id"] in current:
                entry = current[row["execution_id"]]
                out.append(_message(row["id"], {"type": "upsert", "execution": entry}))
        return b"".join(out)

    return await serve_changes(request, start_after(request), encode, first=READY)
