"""Run events as tests write them: only the fields a test is about, the rest a plain run's."""

from __future__ import annotations

from typing import Any

from figranium_common.models import ResultEvent, RunResult


def result_event(execution_id: str, seq: int, **fields: Any) -> ResultEvent:
    """The result event at ``seq`` of the execution's first attempt, of a run that succeeded
    in a millisecond; ``fields`` (``at``, ``lines``, ``started``, ``result``...) as given."""
    defaults: dict[str, Any] = {
        "attempt": 1,
        "result": RunResult(outcome="success"),
        "duration_ms": 1,
    }
    return ResultEvent(execution_id=execution_id, seq=seq, **(defaults | fields))
