"""Export, import and reset against the stored state (no HTTP here).

An export reads tasks (their versions and schedules inside, as Figranium writes them) and
settings, and writes every secret sealed with the passphrase or masked. An import reads the
archive whole and checks every task and schedule in it before the database is touched,
then compares and writes in one transaction: an archive that fails anywhere changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError

from figranium_common.db import Pool
from figranium_common.jsontypes import JsonObject, JsonValue
from figranium_common.schedules import ScheduleBody, resolve, upcoming
from figranium_common.secretbox import SecretBox
from figranium_gateway.backup import places
from figranium_gateway.backup.archive import (
    KINDS,
    Archive,
    ArchiveError,
    read_archive,
    write_archive,
)
from figranium_gateway.backup.plan import (
    LIVE_SCHEDULE_FIELDS,
    Plan,
    plan_settings,
    plan_tasks,
    task_fields,
)
from figranium_gateway.backup.sealing import (
    MASKED,
    ExportSeal,
    Hide,
    map_strings,
    map_task_secrets,
    mask,
    opener,
)
from figranium_gateway.errors import ApiError, describe_validation_error
from figranium_gateway.store import schedules as schedule_store
from figranium_gateway.store import settings as settings_store
from figranium_gateway.store import tasks as task_store
from figranium_gateway.store.schedules import Planned
from figranium_gateway.validation import checked_webhook_url, validate_task
from figranium_gateway.webhook_delivery import SECRET_SETTING

ALL_SETTINGS = tuple(key for keys in places.KIND_SETTINGS.values() for key in keys)
# Reset keeps the webhook signing secret: receivers verify with it, and only a restart
# would make a new one.
RESET_SETTINGS = tuple(key for key in ALL_SETTINGS if key != SECRET_SETTING)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- export -------------------------------------------------------------------------------


async def export_archive(
    pool: Pool, box: SecretBox, include: list[str], passphrase: str | None
) -> bytes:
    """The ZIP of the ``include``d kinds (this server's, in :data:`KINDS`)."""
    kinds = [kind for kind in KINDS if kind in include]
    if "schedules" in kinds and "tasks" not in kinds:
        raise ArchiveError("EXPORT_SELECTION_INVALID", "schedules travel inside their tasks")
    seal = ExportSeal.new(passphrase) if passphrase else None
    hide = seal.seal if seal is not None else mask
    keys = [key for kind in kinds for key in places.KIND_SETTINGS.get(kind, ())]
    async with pool.connection() as conn:
        tasks = await task_store.read_all(conn) if "tasks" in kinds else None
        stored = await settings_store.read_settings(conn, keys)
    archive = Archive(
        included=kinds,
        exported_at=_now_iso(),
        secrets=seal.manifest() if seal is not None else dict(MASKED),
    )
    if tasks is not None:
        archive.tasks = [_exported_task(task, hide, "schedules" in kinds) for task in tasks]
    for kind in ("proxies", "settings"):
        if kind in kinds:
            values: JsonObject = {
                key: places.hidden(key, places.opened(key, stored[key], box), hide)
                for key in places.KIND_SETTINGS[kind]
                if key in stored
            }
            setattr(archive, kind, values)
    return write_archive(archive)


def _exported_task(task: JsonObject, hide: Hide, with_schedule: bool) -> JsonObject:
    out = map_task_secrets(task, hide)
    if not with_schedule:
        out.pop("schedule", None)
    return out


# --- import -------------------------------------------------------------------------------


@dataclass
class Prepared:
    """An archive read, its secrets opened and its tasks and schedules checked."""

    archive: Archive
    kinds: list[str]
    tasks: list[JsonObject] = field(default_factory=list)
    schedules: dict[str, JsonObject | None] | None = None
    settings: dict[str, JsonObject] = field(default_factory=dict)  # kind → key → value
    ignored: list[str] = field(default_factory=list)  # settings this server does not know


async def prepare_import(
    data: bytes, passphrase: str | None, include: list[str], *, allow_private: bool
) -> Prepared:
    """Everything about the archive that can be refused, refused before any write."""
    archive = read_archive(data)
    available = archive.available
    kinds = [kind for kind in available if kind in include] if include else available
    if not kinds:
        raise ArchiveError(
            "IMPORT_SELECTION_REQUIRED",
            f"nothing to import: the archive offers {available or 'nothing this server imports'}",
        )
    if "schedules" in kinds and "tasks" not in kinds:
        raise ArchiveError("IMPORT_SELECTION_INVALID", "schedules come with their tasks")
    read = opener(archive.secrets, passphrase)
    prepared = Prepared(archive=archive, kinds=kinds)
    if "tasks" in kinds:
        prepared.tasks = [map_task_secrets(task, read) for task in archive.tasks or []]
        for task in prepared.tasks:
            _check_task(task)
    if "schedules" in kinds:
        prepared.schedules = {
            str(task["id"]): await _checked_schedule(task, allow_private=allow_private)
            for task in prepared.tasks
        }
    for kind in ("proxies", "settings"):
        given = getattr(archive, kind) if kind in kinds else None
        if given is None:
            continue
        known = places.KIND_SETTINGS[kind]
        prepared.ignored += [key for key in given if key not in known]
        prepared.settings[kind] = {
            key: places.marked(key, _read_setting(read, key, value))
            for key, value in given.items()
            if key in known
        }
    return prepared


def _read_setting(read: Callable[[str, str], str], key: str, value: JsonValue) -> JsonValue:
    """An archive's setting with its sealed strings opened."""
    return map_strings(value, lambda text: read(text, places.place(key)))


def _check_task(task: JsonObject) -> None:
    try:
        validate_task({**task_fields(task), "id": task["id"]})
    except ValidationError as exc:
        raise ArchiveError(
            "INVALID_ARCHIVE_TASK", f"task {task['id']!r}: {describe_validation_error(exc)}"
        ) from None
    except ApiError as exc:
        raise ArchiveError("INVALID_ARCHIVE_TASK", f"task {task['id']!r}: {exc.details}") from None


async def _checked_schedule(task: JsonObject, *, allow_private: bool) -> JsonObject | None:
    """The schedule to store for the task (resolved as /api/schedules does); None: none."""
    given = task.get("schedule")
    if not isinstance(given, dict):
        return None
    try:
        body = ScheduleBody.model_validate(
            {k: v for k, v in given.items() if k not in LIVE_SCHEDULE_FIELDS}
        )
    except ValidationError as exc:
        raise ArchiveError(
            "INVALID_SCHEDULE", f"task {task['id']!r}: {describe_validation_error(exc)}"
        ) from None
    try:
        await checked_webhook_url(body.webhookUrl, allow_private=allow_private)
    except ApiError as exc:
        raise ArchiveError("INVALID_SCHEDULE", f"task {task['id']!r}: {exc.details}") from None
    return resolve(body)[1]


async def run_import(pool: Pool, box: SecretBox, prepared: Prepared, *, apply: bool) -> Plan:
    """Compare the archive with the stored state and, with ``apply``, write the changes;
    both in one transaction."""
    async with pool.connection() as conn, conn.transaction():
        current = {str(task["id"]): task for task in await task_store.read_all(conn)}
        stored = await settings_store.read_settings(conn, ALL_SETTINGS)
        opened = {key: places.opened(key, value, box) for key, value in stored.items()}
        plan = Plan(changes={})
        if "tasks" in prepared.kinds:
            plan_tasks(plan, prepared.tasks, current, prepared.schedules)
        for kind, values in prepared.settings.items():
            plan_settings(plan, kind, values, opened)
        if not apply:
            return plan
        for task_id, body in plan.tasks.items():
            kept = current.get(task_id, {})
            schedule = {"schedule": kept["schedule"]} if "schedule" in kept else {}
            await task_store.write_imported(conn, task_id, {**body, **schedule})
        for task_id, versions in plan.versions.items():
            await task_store.add_versions(conn, task_id, versions)
        for task_id, schedule_body in plan.schedules.items():
            if schedule_body is None:
                await schedule_store.remove_schedule(conn, task_id)
            else:
                await schedule_store.write_planned(conn, task_id, _planned(schedule_body))
        for key, value in plan.settings.items():
            await settings_store.write_setting(conn, key, places.sealed(key, value, box))
        return plan


def _planned(stored: JsonObject) -> Planned:
    body = ScheduleBody.model_validate(stored)
    timing, resolved = resolve(body)
    next_run = upcoming(timing, datetime.now(UTC), 1)[0] if body.enabled else None
    return Planned(resolved, timing, next_run)


# --- reset --------------------------------------------------------------------------------


async def reset(pool: Pool) -> JsonValue:
    """Delete every task (with its versions and schedule) and the settings an export
    carries, but the webhook secret; the API key stays. Returns what was removed."""
    async with pool.connection() as conn, conn.transaction():
        tasks = await task_store.delete_all(conn)
        removed = await settings_store.delete_settings(conn, RESET_SETTINGS)
    return {"tasks": tasks, "settings": list(removed)}
