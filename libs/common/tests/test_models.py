from __future__ import annotations

import pytest
from pydantic import ValidationError

from figranium_common.config import Config
from figranium_common.db import migration_files
from figranium_common.models import (
    Action,
    ResultEvent,
    RunEventEnvelope,
    RunResult,
    StartedEvent,
    Task,
)


def test_task_keeps_unknown_fields_and_only_given_ones() -> None:
    task = Task.model_validate({"id": "t", "url": "https://example.com", "custom": [1, 2]})
    dumped = task.dump()
    assert dumped == {"id": "t", "url": "https://example.com", "custom": [1, 2]}


def test_action_aliases_are_known_types() -> None:
    for kind in ("goto", "fill", "noop", "pass", "do_nothing"):
        assert Action(type=kind).type == kind


@pytest.mark.parametrize(
    "body",
    [
        {"actions": [{"type": "fly"}]},
        {"actions": [{}]},
        {"mode": "other"},
        {"wait": -1},
        {"id": "has space"},
        {"variables": {"x": {"type": "list"}}},
        {"actions": [{"type": "click", "clickType": "triple"}]},
    ],
)
def test_invalid_tasks_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Task.model_validate(body)


def test_run_events_round_trip_through_the_envelope() -> None:
    started = StartedEvent(execution_id="e", attempt=1, seq=0, runner_id="r")
    result = ResultEvent(
        execution_id="e", attempt=2, seq=3, result=RunResult(outcome="success"), duration_ms=5
    )
    for event in (started, result):
        raw = event.model_dump_json().encode()
        parsed = RunEventEnvelope.model_validate_json(b'{"event":' + raw + b"}").event
        assert parsed == event


def test_a_start_carries_its_first_lines_and_may_ride_in_a_result() -> None:
    started = StartedEvent(execution_id="e", attempt=1, seq=0, runner_id="r", lines=["a", "b"])
    assert [(line["seq"], line["line"]) for line in started.log_lines()] == [(1, "a"), (2, "b")]
    assert "lines" not in started.bare()
    bare = StartedEvent(execution_id="e", attempt=1, seq=0, runner_id="r")
    result = ResultEvent(
        execution_id="e",
        attempt=1,
        seq=3,
        result=RunResult(outcome="success"),
        duration_ms=5,
        lines=["x", "y"],
        started=bare,
    )
    raw = result.model_dump_json().encode()
    assert RunEventEnvelope.model_validate_json(b'{"event":' + raw + b"}").event == result
    assert [line["seq"] for line in result.log_lines()] == [1, 2]
    for seq, lines, start in ((2, ["x", "y"], bare), (3, [], bare.model_copy(update={"seq": 1}))):
        with pytest.raises(ValidationError):
            ResultEvent(
                execution_id="e",
                attempt=1,
                seq=seq,
                result=RunResult(outcome="success"),
                duration_ms=5,
                lines=lines,
                started=start,
            )


def test_migrations_are_numbered_and_unique() -> None:
    files = migration_files()
    assert files, "no migrations bundled"
    assert [v for v, _, _ in files] == sorted({v for v, _, _ in files})
    assert "CREATE TABLE executions" in files[0][2]


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PORT", "FIGRANIUM_DATA_DIR", "ALLOW_PRIVATE_NETWORKS", "FIGRANIUM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    config = Config()
    assert config.port == 11345
    assert str(config.data_dir) == ".data"
    assert config.allow_private_networks is False
    assert config.api_key is None


def test_settings_refuse_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "not-a-port")
    with pytest.raises(ValidationError):
        Config()
