"""Schedules: the request body, its resolution to a timing, and next-run computation.

Pure functions only (no I/O), shared by the gateway (validation, previews) and the
scheduler (advancing ``next_run``), so both always agree on when a task is due.

Decisions worth knowing:

- A ``cron`` (5 fields or an ``@daily``-style preset) wins over ``frequency``; presets are
  expanded, so the stored ``cron`` is always 5 fields. Standard cron semantics: when both
  day-of-month and day-of-week are restricted, either one matching is enough.
- ``frequency: interval`` with ``intervalMinutes`` dividing 60 is the cron ``*/N * * * *``
  (Figranium's behaviour). Any other interval (7, 45, …) cannot be said in cron without an
  uneven gap at the top of the hour (``*/7`` fires at :56 and then :00), so it is a fixed
  interval instead: every N minutes counted from the previous due time, ``cron`` null.
- Times are computed on aware datetimes in the schedule's IANA ``timezone``. Across a
  daylight-saving change a wall time that does not exist (02:30 when clocks jump to 03:00)
  runs at the first time after the gap; a wall time that happens twice runs once when the
  hour field is fixed (``30 2 * * *``) and on both occurrences when it is a wildcard or
  step (``*/30 * * * *`` keeps firing every 30 real minutes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cron_descriptor import get_description
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from figranium_common.jsontypes import JsonObject

PRESETS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
DEFAULT_HOUR = 9
DEFAULT_MINUTE = 0
DEFAULT_INTERVAL_MINUTES = 15
DEFAULT_WEEKDAYS = (1,)  # Monday
DEFAULT_DAY_OF_MONTH = 1
# How many expressions and timings the validation and description caches keep.
CACHED = 4096

Frequency = Literal["interval", "hourly", "daily", "weekly", "monthly"]
MisfirePolicy = Literal["run_once", "skip"]


@lru_cache(maxsize=CACHED)
def normalize_cron(expression: str) -> str:
    """A valid 5-field expression (presets expanded), or ValueError saying what is wrong.

    Kept per expression (checking parses it and computes a run, about 0.5 ms): every
    preview of a stored schedule validates it again."""
    text = " ".join(expression.split())
    text = PRESETS.get(text.lower(), text)
    if len(text.split(" ")) != 5:
        raise ValueError(
            f"{expression!r} is not a cron expression: expected 5 fields"
            " (minute hour day-of-month month day-of-week) or a preset like @daily"
        )
    try:
        # is_valid accepts forms get_next cannot compute (hashed 'H' without an id).
        croniter(text, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except Exception as exc:  # croniter raises several unrelated types for bad input
        raise ValueError(f"{expression!r} is not a valid cron expression: {exc}") from None
    return text


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        known = "use an IANA name like Europe/Berlin"
        raise ValueError(f"unknown time zone {name!r}; {known}") from None


class ScheduleBody(BaseModel):
    """What a client sends to set a schedule; stored fields it echoes back are ignored."""

    model_config = ConfigDict(extra="ignore")

    enabled: bool = True
    frequency: Frequency | None = None
    intervalMinutes: Annotated[int, Field(ge=1, le=60)] | None = None
    hour: Annotated[int, Field(ge=0, le=23)] | None = None
    minute: Annotated[int, Field(ge=0, le=59)] | None = None
    daysOfWeek: list[Annotated[int, Field(ge=0, le=6)]] | None = None
    dayOfMonth: Annotated[int, Field(ge=1, le=31)] | None = None
    cron: str | None = None
    timezone: str = "UTC"
    misfirePolicy: MisfirePolicy = "run_once"
    allowOverlap: bool = False
    # Where each scheduled run's result is posted (checked by the gateway, not here).
    webhookUrl: str | None = None

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return normalize_cron(value)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone(value)
        return value


@dataclass(frozen=True)
class Timing:
    """When a schedule is due: a cron expression or a fixed interval, in a time zone."""

    cron: str | None
    interval_minutes: int | None
    timezone: str

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.interval_minutes is None):
            raise ValueError("a timing is either a cron expression or a fixed interval")


def resolve(body: ScheduleBody) -> tuple[Timing, JsonObject]:
    """The timing a body means and the schedule object to store in the task."""
    stored: JsonObject = body.model_dump(exclude_none=True)
    if body.cron is not None:
        return Timing(body.cron, None, body.timezone), stored
    frequency = body.frequency or "daily"
    hour = DEFAULT_HOUR if body.hour is None else body.hour
    minute = DEFAULT_MINUTE if body.minute is None else body.minute
    stored["frequency"] = frequency
    interval: int | None = None
    if frequency == "interval":
        interval = body.intervalMinutes or DEFAULT_INTERVAL_MINUTES
        stored["intervalMinutes"] = interval
        cron = _interval_cron(interval)
    elif frequency == "hourly":
        stored["minute"] = minute
        cron = f"{minute} * * * *"
    else:
        stored["hour"], stored["minute"] = hour, minute
        if frequency == "daily":
            cron = f"{minute} {hour} * * *"
        elif frequency == "weekly":
            days = sorted(set(body.daysOfWeek or DEFAULT_WEEKDAYS))
            stored["daysOfWeek"] = days
            cron = f"{minute} {hour} * * {','.join(map(str, days))}"
        else:
            day = body.dayOfMonth or DEFAULT_DAY_OF_MONTH
            stored["dayOfMonth"] = day
            cron = f"{minute} {hour} {day} * *"
    if cron is None:
        stored["cron"] = None
        return Timing(None, interval, body.timezone), stored
    stored["cron"] = cron
    return Timing(cron, None, body.timezone), stored


def _interval_cron(minutes: int) -> str | None:
    if minutes == 60:
        return "0 * * * *"
    if 60 % minutes == 0:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    return None


@lru_cache(maxsize=CACHED)
def describe(timing: Timing) -> str:
    """Plain English, e.g. "At 09:00 AM, Monday through Friday" or "Every 7 minutes".

    Kept per timing (cron or interval, and time zone): the text does not depend on the
    time, the describer's locale is always its default (English), and describing loads
    that locale's catalogue each time (about 0.8 ms)."""
    if timing.interval_minutes is not None:
        return f"Every {timing.interval_minutes} minutes"
    assert timing.cron is not None
    try:
        text = str(get_description(timing.cron))
    except Exception:  # the describer knows less syntax than croniter; the cron is valid
        text = timing.cron
    return text if timing.timezone == "UTC" else f"{text} ({timing.timezone})"


def next_runs(cron: str, tz: str, after: datetime, n: int) -> list[datetime]:
    """The next ``n`` due times strictly after ``after`` (aware), as aware datetimes in ``tz``."""
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    where = zone(tz)
    fixed_hour = not any(ch in cron.split()[1] for ch in "*/")
    it = croniter(cron, after.astimezone(where))
    found: list[datetime] = []
    while len(found) < n:
        # Round-trip through the instant: the result then carries the right ``fold``.
        due = datetime.fromtimestamp(it.get_next(datetime).timestamp(), where)
        if due <= after:
            continue
        if fixed_hour and due.fold == 1 and _repeated(due):
            continue  # the second pass through a wall time that fell back: once is enough
        found.append(due)
    return found


def _repeated(due: datetime) -> bool:
    return due.replace(fold=0).utcoffset() != due.utcoffset()


def next_interval_runs(minutes: int, anchor: datetime, after: datetime, n: int) -> list[datetime]:
    """Due times ``anchor + k·minutes`` strictly after ``after``: a fixed interval that
    keeps its phase from the previous due time, however long ago that was."""
    step = timedelta(minutes=minutes)
    # In UTC: adding to a datetime in a zone with DST would add wall-clock time.
    anchor, after = anchor.astimezone(UTC), after.astimezone(UTC)
    first = anchor if after < anchor else anchor + step * ((after - anchor) // step + 1)
    return [first + step * i for i in range(n)]


def upcoming(
    timing: Timing, after: datetime, n: int, anchor: datetime | None = None
) -> list[datetime]:
    """The next ``n`` due times of any timing; an interval without ``anchor`` starts now."""
    if timing.cron is not None:
        return next_runs(timing.cron, timing.timezone, after, n)
    assert timing.interval_minutes is not None
    return next_interval_runs(timing.interval_minutes, anchor or after, after, n)


@dataclass(frozen=True)
class Decision:
    fire: bool
    missed: bool  # due longer ago than the grace: every scheduler was down or behind
    next_run: datetime


def decide(
    timing: Timing, due: datetime, now: datetime, policy: MisfirePolicy, grace: timedelta
) -> Decision:
    """What to do with a claimed schedule due at ``due``: fire or not, and when next.

    A slot is missed when it is more than ``grace`` late; ``run_once`` then fires one
    catch-up run however many slots were missed, ``skip`` fires none. Either way the next
    run is the first slot after ``now``, so a long outage never causes a burst.
    """
    missed = now - due > grace
    following = upcoming(timing, now, 1, anchor=due)[0]
    return Decision(fire=not missed or policy == "run_once", missed=missed, next_run=following)


def iso(value: datetime) -> str:
    """UTC ISO 8601 with milliseconds and ``Z``, as JavaScript's toISOString writes it."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
