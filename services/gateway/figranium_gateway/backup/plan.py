"""What an import changes: compared with the stored state, per kind and per id.

An import adds and updates, it never deletes: a task, proxy or setting the archive does not
hold stays as it is. A task the archive holds replaces the stored one (its versions are
added to the stored ones); with ``schedules`` imported its schedule is the archive's (none
when the archive's task has none). Secrets are compared opened, so an archive that holds
the same secret sealed again, or masked, changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from figranium_common.jsontypes import JsonObject, JsonValue
from figranium_common.runs import PROXIES_SETTING
from figranium_gateway.backup.archive import ArchiveError
from figranium_gateway.backup.sealing import fill_masks

# A schedule's fields that its runs write, not its owner.
LIVE_SCHEDULE_FIELDS: Final = frozenset(
    {"nextRun", "lastRun", "lastRunStatus", "lastRunDurationMs"}
)
_TASK_OWN_FIELDS: Final = frozenset({"id", "updatedAt", "versions", "schedule"})


@dataclass
class KindChanges:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def note(self, name: str, before: JsonValue | None, after: JsonValue | None) -> bool:
        """Record how ``name`` changes; whether it does."""
        if before is None and after is None:
            return False
        target = (
            self.created
            if before is None
            else self.removed
            if after is None
            else self.unchanged
            if before == after
            else self.updated
        )
        target.append(name)
        return target is not self.unchanged

    def out(self) -> JsonObject:
        return {
            "created": list(self.created),
            "updated": list(self.updated),
            "unchanged": list(self.unchanged),
            "removed": list(self.removed),
        }


@dataclass
class Plan:
    """The changes by kind, and what to write to make them."""

    changes: dict[str, KindChanges]
    tasks: dict[str, JsonObject] = field(default_factory=dict)  # id → body, schedule excluded
    versions: dict[str, list[JsonObject]] = field(default_factory=dict)
    schedules: dict[str, JsonObject | None] = field(default_factory=dict)  # None: remove
    settings: dict[str, JsonValue] = field(default_factory=dict)  # opened values

    def out(self) -> JsonObject:
        return {kind: changes.out() for kind, changes in self.changes.items()}


def task_fields(task: JsonObject) -> JsonObject:
    """A task's own fields: what an import compares and writes (schedule apart)."""
    return {k: v for k, v in task.items() if k not in _TASK_OWN_FIELDS}


def plan_tasks(
    plan: Plan,
    imported: list[JsonObject],
    current: dict[str, JsonObject],
    schedules: dict[str, JsonObject | None] | None,
) -> None:
    """Add the tasks (and, when ``schedules`` is given, their resolved schedules) to ``plan``."""
    changes = plan.changes.setdefault("tasks", KindChanges())
    for task in imported:
        task_id = str(task["id"])
        stored = current.get(task_id)
        body = task_fields(task)
        if stored is not None and isinstance(body.get("variables"), dict):
            body["variables"] = fill_masks(body["variables"], stored.get("variables"))
        elif isinstance(body.get("variables"), dict):
            body["variables"] = fill_masks(body["variables"], None)
        versions = task.get("versions")
        new_versions = _new_versions(versions, stored, body)
        if changes.note(task_id, None if stored is None else task_fields(stored), body):
            plan.tasks[task_id] = body
        if new_versions:
            plan.versions[task_id] = new_versions
    if schedules is None:
        return
    schedule_changes = plan.changes.setdefault("schedules", KindChanges())
    for task_id, wanted in schedules.items():
        stored = current.get(task_id)
        before = stored.get("schedule") if stored is not None else None
        before = (
            {k: v for k, v in before.items() if k not in LIVE_SCHEDULE_FIELDS}
            if isinstance(before, dict)
            else None
        )
        if schedule_changes.note(task_id, before, wanted):
            plan.schedules[task_id] = wanted


def _new_versions(
    versions: JsonValue, stored: JsonObject | None, body: JsonObject
) -> list[JsonObject]:
    """The archive's versions the stored task lacks, their masked secrets filled from the
    task's variables (a mask without a stored value is left out)."""
    if not isinstance(versions, list):
        return []
    known = stored.get("versions") if stored is not None else None
    have = {v.get("id") for v in known if isinstance(v, dict)} if isinstance(known, list) else set()
    out: list[JsonObject] = []
    for version in versions:
        if not isinstance(version, dict) or not isinstance(version.get("snapshot"), dict):
            continue
        if not isinstance(version.get("id"), str) or version["id"] in have:
            continue
        snapshot = dict(version["snapshot"])
        if isinstance(snapshot.get("variables"), dict):
            snapshot["variables"] = fill_masks(snapshot["variables"], body.get("variables"))
        stamp = version.get("timestamp")
        timestamp = stamp if isinstance(stamp, int) and not isinstance(stamp, bool) else None
        out.append({"id": version["id"], "timestamp": timestamp, "snapshot": snapshot})
    return out


def plan_settings(
    plan: Plan, kind: str, imported: JsonObject, current: dict[str, JsonValue]
) -> None:
    """Add an archive kind's settings (opened, known keys only) to ``plan``."""
    changes = plan.changes.setdefault(kind, KindChanges())
    for key, value in imported.items():
        before = current.get(key)
        if key == PROXIES_SETTING:
            merged = _merged_proxies(changes, value, before)
            if merged is not None:
                plan.settings[key] = merged
            continue
        after = fill_masks(value, before)
        if changes.note(key, before, after):
            plan.settings[key] = after


def _merged_proxies(changes: KindChanges, imported: JsonValue, current: JsonValue) -> JsonValue:
    """The stored proxy list with the archive's proxies added or replaced, by id; None when
    nothing changes."""
    stored = [p for p in current if isinstance(p, dict)] if isinstance(current, list) else []
    by_id: dict[JsonValue, JsonValue] = {p.get("id"): p for p in stored}
    incoming = [p for p in imported if isinstance(p, dict)] if isinstance(imported, list) else []
    if not all(isinstance(p.get("id"), str) and p["id"] for p in incoming):
        raise ArchiveError("INVALID_FIGRANIUM_EXPORT", "proxies.json: every proxy needs an id")
    changed = False
    for proxy in incoming:
        proxy_id = str(proxy["id"])
        filled = fill_masks(proxy, by_id.get(proxy_id))
        changed |= changes.note(proxy_id, by_id.get(proxy_id), filled)
        by_id[proxy_id] = filled
    if not changed:
        return None
    incoming_ids = {str(p["id"]) for p in incoming}
    kept = [p for p in stored if p.get("id") not in incoming_ids]
    return [*kept, *(by_id[str(p["id"])] for p in incoming)]
