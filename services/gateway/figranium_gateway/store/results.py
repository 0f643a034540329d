"""SQL for ``execution_results``: a result too large to keep in its execution's row.

Such an execution keeps a preview (:func:`result_preview`) and the whole result is kept
here; readers of the whole result take this one when there is one (:data:`WHOLE_RESULT`).
"""

from __future__ import annotations

import json

from psycopg.types.json import Jsonb

from figranium_common.db import Connection, Pool
from figranium_common.jsontypes import JsonMapping, JsonObject

# The whole result of the row of ``executions`` a statement reads (named so, unaliased).
WHOLE_RESULT = (
    "COALESCE((SELECT r.result FROM execution_results r"
    " WHERE r.execution_id = executions.id), executions.result)"
)

# What a preview keeps of each log line, and of the run's error.
_PREVIEW_LINES = 20
_PREVIEW_CHARS = 2048


def result_preview(result: JsonMapping, limit: int) -> JsonObject | None:
    """None when ``result`` (as stored) is at most ``limit`` bytes of JSON; else what the
    execution keeps of it: its outcome, URLs, error and first log lines, with
    ``hasFullResult`` (as Figranium's bounded execution history)."""
    if len(json.dumps(result, separators=(",", ":")).encode()) <= limit:
        return None
    preview: JsonObject = {
        key: result[key] for key in ("outcome", "final_url", "screenshot_url") if key in result
    }
    error, logs = result.get("error"), result.get("logs")
    if isinstance(error, str):
        preview["error"] = error[:_PREVIEW_CHARS]
    if isinstance(logs, list):
        preview["logs"] = [str(line)[:_PREVIEW_CHARS] for line in logs[:_PREVIEW_LINES]]
    preview.update(truncated=True, hasFullResult=True)
    if len(json.dumps(preview).encode()) > limit:
        preview = {"outcome": result.get("outcome"), "truncated": True, "hasFullResult": True}
    return preview


async def keep_whole(conn: Connection, execution_id: str, whole: JsonMapping) -> None:
    """Keep the whole result of an execution about to be finished with its preview."""
    await conn.execute(
        "INSERT INTO execution_results (execution_id, result)"
        " SELECT id, %s FROM executions WHERE id = %s AND phase <> 'finished'"
        " ON CONFLICT (execution_id) DO NOTHING",
        (Jsonb(whole), execution_id),
    )


async def full_result(pool: Pool, execution_id: str) -> tuple[bool, JsonObject | None]:
    """Whether the execution exists, and its whole result (None until it finished)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT phase, {WHOLE_RESULT} AS result FROM executions WHERE id = %s",
            (execution_id,),
        )
        row = await cur.fetchone()
    if row is None:
        return False, None
    return True, row["result"] if row["phase"] == "finished" else None
