"""Queuing a run, as gateway and scheduler both do: the execution id, the execution row,
the run request with everything the runner needs (runners never read the database), and
its publish.

The row and the request are made on the caller's connection, so the scheduler can do it
inside its claim transaction. ``insert_execution`` logs the ``queued`` change itself, in
the same statement; after ``insert_executions``, the caller logs them
(``changelog.record_changes``) last. The request is published after the commit.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from nats.js import JetStreamContext
from psycopg import AsyncCursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from figranium_common import transit
from figranium_common.cabinet_dispatch import cabinet_plan
from figranium_common.captcha_settings import CAPTCHA_SETTING, solves_captchas, stored_solver
from figranium_common.changelog import CHANGES_LOCK_ID, logged_insert
from figranium_common.db import Connection
from figranium_common.jsontypes import JsonObject, JsonValue, StorageState, is_storage_state
from figranium_common.models import CaptchaSolver, OutputTarget, RunRequest, Task
from figranium_common.nats import run_subject
from figranium_common.proxy_choice import choose_proxy
from figranium_common.runs import reachable_tasks
from figranium_common.secretbox import SecretBox

# Cookies and local storage are session credentials: sealed like every other secret.
BROWSER_STATE = "browser-state"


def credential_purpose(credential_id: str) -> str:
    return f"credential:{credential_id}"


def new_execution_id() -> str:
    """A fresh execution id: when it was made, to the millisecond, and 32 random bits."""
    return f"exec_{int(time.time() * 1000)}_{secrets.token_hex(4)}"


_EXECUTION_COLUMNS = (
    "INSERT INTO executions (id, task_id, task_name, mode, source, url, method, path,"
    " phase, task_snapshot, variables, webhook_url)"
)
_EXECUTION_VALUES = "%s, %s, %s, %s, %s, %s, %s, %s, 'queued', %s, %s, %s"  # NewExecution.params
_INSERT_EXECUTION = f"{_EXECUTION_COLUMNS} VALUES ({_EXECUTION_VALUES}) ON CONFLICT (id) DO NOTHING"
# The same, only while fewer than a limit of executions are unfinished (counted up to the
# limit, through the partial index executions_unfinished, so the cost stays bounded).
_INSERT_EXECUTION_BELOW = (
    f"{_EXECUTION_COLUMNS} SELECT {_EXECUTION_VALUES}"
    " WHERE (SELECT count(*) FROM"
    " (SELECT 1 FROM executions WHERE phase <> 'finished' LIMIT %s) AS unfinished) < %s"
    " ON CONFLICT (id) DO NOTHING"
)
_INSERT_LOGGED = logged_insert(_INSERT_EXECUTION)
_INSERT_LOGGED_BELOW = logged_insert(_INSERT_EXECUTION_BELOW)


@dataclass(frozen=True)
class NewExecution:
    """One queued execution to insert: what ``insert_execution`` takes, as a value."""

    execution_id: str
    task: JsonObject  # as the execution keeps it (its task_snapshot)
    source: str
    variables: JsonObject = field(default_factory=dict)
    method: str | None = None
    path: str | None = None
    webhook_url: str | None = None

    @cached_property
    def run_task(self) -> Task:
        """The task as the run request carries it, validated once. ValidationError when
        it is not valid: saved by an older release, under rules made stricter since."""
        return Task.model_validate(self.task)

    def params(self) -> tuple[object, ...]:
        task = self.task
        return (
            self.execution_id,
            task.get("id"),
            task.get("name"),
            task.get("mode", "agent"),
            self.source,
            task.get("url"),
            self.method,
            self.path,
            Jsonb(task),
            Jsonb(self.variables),
            self.webhook_url,
        )


async def insert_execution(
    conn: Connection, new: NewExecution, unfinished_below: int = 0
) -> AsyncCursor[DictRow]:
    """Insert a queued execution and log its ``queued`` change, in one statement; returns
    its cursor, whose one row says it was inserted (none: the id is taken, or
    ``unfinished_below`` executions, when not 0, are queued or running already, and
    nothing was written). On an autocommit connection the statement is its own
    transaction."""
    if unfinished_below > 0:
        return await conn.execute(
            _INSERT_LOGGED_BELOW,
            (CHANGES_LOCK_ID, "queued", *new.params(), unfinished_below, unfinished_below),
        )
    return await conn.execute(_INSERT_LOGGED, (CHANGES_LOCK_ID, "queued", *new.params()))


async def insert_executions(conn: Connection, executions: list[NewExecution]) -> None:
    """Insert many queued executions in one pipelined batch (ids are fresh, never taken)."""
    if executions:
        async with conn.cursor() as cur:
            await cur.executemany(_INSERT_EXECUTION, [new.params() for new in executions])


async def gather_run_request(
    conn: Connection,
    box: SecretBox,
    new: NewExecution,
    *,
    timeout_seconds: float,
    browser_states: Mapping[str, StorageState] | None = None,
) -> RunRequest:
    """The run request for the queued execution ``new``; ValidationError when its task
    is not valid (``NewExecution.run_task``).

    ``browser_states`` is what ``load_browser_states`` returned for a batch of tasks that
    includes this one; without it the task's saved state is read here.
    """
    task = new.run_task
    if browser_states is None:
        storage_state = await _storage_state(conn, box, task)
    else:
        wanted = task.id is not None and not task.statelessExecution
        storage_state = browser_states.get(str(task.id)) if wanted else None
    subtasks = await _subtasks(conn, task)
    return RunRequest(
        execution_id=new.execution_id,
        task=task,
        variables=new.variables,
        source=new.source,
        timeout_seconds=timeout_seconds,
        storage_state=storage_state,
        proxies=await choose_proxy(conn, box, task),
        subtasks=subtasks,
        output=await output_target(conn, box, (task.model_extra or {}).get("output")),
        captcha_solver=await _captcha_solver(conn, box, [task, *subtasks.values()]),
        cabinets=await cabinet_plan(conn, task, subtasks.values()),
    )


async def publish_run(js: JetStreamContext, request: RunRequest, transit_box: SecretBox) -> None:
    """Publish ``request`` with its secrets sealed under the transit key (``transit_box``),
    so the RUNS stream on disk holds none in clear.

    The execution id is the message id: a repeated publish within JetStream's duplicate
    window (the gateway's sweeper publishing a run whose first publish did arrive) is
    dropped.
    """
    sealed = transit.seal_run_request(transit_box, request)
    await js.publish(
        run_subject(request.task.mode),
        sealed.model_dump_json().encode(),
        headers={"Nats-Msg-Id": request.execution_id},
        timeout=5,
    )


async def load_browser_states(
    conn: Connection, box: SecretBox, task_ids: list[str]
) -> dict[str, StorageState]:
    """The saved cookies and local storage of many tasks, opened, in one query."""
    if not task_ids:
        return {}
    cur = await conn.execute(
        "SELECT task_id, state FROM task_browser_state WHERE task_id = ANY(%s)", (task_ids,)
    )
    states = {}
    for row in await cur.fetchall():
        state = _open_state(box, row["state"])
        if state is not None:
            states[row["task_id"]] = state
    return states


def seal_browser_state(box: SecretBox, state: StorageState | None) -> str | None:
    """The state as stored: one sealed JSON text (the column is jsonb: a JSON string)."""
    return None if state is None else box.seal(json.dumps(state), BROWSER_STATE)


async def _storage_state(conn: Connection, box: SecretBox, task: Task) -> StorageState | None:
    """The task's saved cookies and local storage, unless the run is to start clean."""
    if task.statelessExecution or task.id is None:
        return None
    cur = await conn.execute("SELECT state FROM task_browser_state WHERE task_id = %s", (task.id,))
    row = await cur.fetchone()
    return None if row is None else _open_state(box, row["state"])


def _open_state(box: SecretBox, stored: JsonValue) -> StorageState | None:
    if isinstance(stored, str):
        opened = json.loads(box.open(stored, BROWSER_STATE))
        return opened if is_storage_state(opened) else None
    return stored.copy() if is_storage_state(stored) else None  # saved before sealing


async def _captcha_solver(
    conn: Connection, box: SecretBox, tasks: list[Task]
) -> CaptchaSolver | None:
    """The stored captcha solver, only for runs that may solve captchas."""
    if not solves_captchas(tasks):
        return None
    cur = await conn.execute("SELECT value FROM settings WHERE key = %s", (CAPTCHA_SETTING,))
    row = await cur.fetchone()
    return None if row is None else stored_solver(row["value"], box)


async def _subtasks(conn: Connection, task: Task) -> dict[str, Task]:
    async def fetch(task_id: str) -> JsonObject | None:
        cur = await conn.execute("SELECT id, body, updated_at FROM tasks WHERE id = %s", (task_id,))
        row = await cur.fetchone()
        if row is None:
            return None
        updated = int(row["updated_at"].timestamp() * 1000)
        return {**row["body"], "id": row["id"], "updatedAt": updated}

    return await reachable_tasks(task, fetch)


async def output_target(conn: Connection, box: SecretBox, output: JsonValue) -> OutputTarget | None:
    """The task's ``output`` with its credential opened; None when the task has none."""
    if not isinstance(output, dict) or not output.get("provider"):
        return None
    credential_id = str(output.get("credentialId") or "")
    on_error = "ignore" if output.get("onError") == "ignore" else "fail"
    target = OutputTarget(
        credential_id=credential_id,
        database_id=None if output.get("databaseId") is None else str(output["databaseId"]),
        table_id=str(output.get("tableId") or ""),
        on_error=on_error,
    )
    if output.get("provider") != "baserow":
        target.problem = f"unknown output provider {output.get('provider')!r}"
        return target
    cur = await conn.execute(
        "SELECT provider, config FROM credentials WHERE id = %s", (credential_id,)
    )
    row = await cur.fetchone()
    if row is None or row["provider"] != "baserow":
        target.problem = f"no Baserow credential {credential_id!r}"
        return target
    config = row["config"]
    target.base_url = str(config.get("baseUrl", ""))
    target.token = box.open(str(config.get("token", "")), credential_purpose(credential_id))
    if not target.table_id.isdigit():
        target.problem = f"the output's tableId {target.table_id!r} is not a Baserow table id"
    return target
