"""How a schedule body is merged into the stored schedule (``POST /api/schedules/:id``).

As Figranium: the body's fields replace the stored ones and the others stay, so
``{"enabled": false}`` pauses a schedule and keeps its timing. The two ways of saying when
(a ``cron`` expression or the ``frequency`` fields) do not mix:

- a body with a ``cron`` and no ``frequency`` drops the stored frequency fields;
- a body with ``frequency`` and no ``cron`` drops the stored ``cron``;
- ``null`` deletes a field (its default applies again).

One rule goes further than Figranium: a body that changes any frequency field (``hour``,
say) without a ``cron`` also drops the stored ``cron`` when the stored schedule has a
``frequency``. The stored ``cron`` is then the one resolved from those fields, and
keeping it would silently ignore the change.
"""

from __future__ import annotations

from figranium_common.jsontypes import JsonMapping, JsonObject

FREQUENCY_FIELDS = ("frequency", "intervalMinutes", "hour", "minute", "daysOfWeek", "dayOfMonth")
# What the platform writes into a stored schedule; never part of what a client sets.
RUN_FIELDS = ("nextRun", "lastRun", "lastRunStatus", "lastRunDurationMs")


def merge_schedule(stored: JsonMapping | None, body: JsonMapping) -> JsonObject:
    """The schedule body that ``body`` makes of the ``stored`` schedule (None: none yet)."""
    merged: JsonObject = {
        key: value for key, value in (stored or {}).items() if key not in RUN_FIELDS
    }
    has_cron = bool(body.get("cron"))
    has_frequency = bool(body.get("frequency"))
    if has_cron and not has_frequency:
        for key in FREQUENCY_FIELDS:
            merged.pop(key, None)
    elif not has_cron and (
        has_frequency or (merged.get("frequency") and any(k in body for k in FREQUENCY_FIELDS))
    ):
        merged.pop("cron", None)
    merged.update(body)
    return {key: value for key, value in merged.items() if value is not None}
