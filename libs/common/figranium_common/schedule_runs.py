"""The next due times of schedules, kept per timing while they are still ahead.

Computing a cron's next runs is croniter's work, about 0.4 ms a run on a cron that
restricts the day and month; a page previewing many schedules, or the describe endpoint
asked again and again, would pay it for every schedule on every request. The runs after
``now`` are those computed after an earlier instant ``t`` as long as ``t <= now`` and
the first of them is still to come (no due time lies between), so a kept answer stays
exact until its first run passes; only then is the timing computed again.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime

from figranium_common.schedules import Timing, upcoming

# (computed after, the runs) per (timing, how many runs).
_Kept = tuple[datetime, tuple[datetime, ...]]


class NextRuns:
    """``upcoming(timing, now, n)`` for timings without an anchor, with the answers of
    cron timings kept in a least-recently-used cache of ``size`` entries."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._kept: OrderedDict[tuple[Timing, int], _Kept] = OrderedDict()

    def __call__(self, timing: Timing, now: datetime, n: int) -> list[datetime]:
        if timing.cron is None or n < 1:
            return upcoming(timing, now, n)  # a fixed interval counts from now: no croniter
        key = (timing, n)
        kept = self._kept.get(key)
        if kept is not None and kept[0] <= now < kept[1][0]:
            self._kept.move_to_end(key)
            return list(kept[1])
        runs = upcoming(timing, now, n)
        self._kept[key] = (now, tuple(runs))
        self._kept.move_to_end(key)
        if len(self._kept) > self._size:
            self._kept.popitem(last=False)
        return runs

    def __len__(self) -> int:
        return len(self._kept)
