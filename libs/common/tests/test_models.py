from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from figranium_common.action_models import ACTION_MODELS, ACTION_TYPES, ClickAction
from figranium_common.config import Config
from figranium_common.db import migration_files
from figranium_common.models import (
    RunEventEnvelope,
    RunRequest,
    StartedEvent,
    Task,
)
from tests.integration.run_events import result_event


def test_task_keeps_unknown_fields_and_only_given_ones() -> None:
    task = Task.model_validate({"id": "t", "url": "https://example.com", "custom": [1, 2]})
    dumped = task.dump()
    assert dumped == {"id": "t", "url": "https://example.com", "custom": [1, 2]}


def test_action_aliases_are_known_types() -> None:
    given = {"goto": {"value": "https://a.example"}, "fill": {"value": "x"}}
    for kind in ("goto", "fill", "noop", "pass", "do_nothing"):
        task = Task.model_validate({"actions": [{"type": kind, **given.get(kind, {})}]})
        assert task.actions[0].type == kind


def test_every_action_type_has_a_model_of_its_own() -> None:
    assert set(ACTION_MODELS) == ACTION_TYPES
    for kind, model in ACTION_MODELS.items():
        assert kind in str(model.model_fields["type"].annotation)
    assert ACTION_MODELS["check"] is ACTION_MODELS["uncheck"]
    clicked = Task.model_validate({"actions": [{"type": "click", "selector": "#b"}]}).actions[0]
    assert isinstance(clicked, ClickAction) and clicked.selector == "#b"


def test_an_action_keeps_the_fields_its_type_does_not_read() -> None:
    # Figranium's MCP server sends clickType and typeMode on every action.
    action = {"type": "navigate", "value": "https://a.example", "clickType": "x", "note": [1]}
    assert Task.model_validate({"actions": [action]}).dump() == {"actions": [action]}


def test_a_required_field_may_be_empty_but_not_missing() -> None:
    # Figranium's editor saves a new action at once, its selector and value still empty.
    Task.model_validate({"actions": [{"type": "click", "selector": "", "value": ""}]})
    with pytest.raises(ValidationError) as refused:
        Task.model_validate({"actions": [{"type": "noop"}, {"type": "click"}]})
    assert [(e["loc"], e["msg"]) for e in refused.value.errors()] == [
        (("actions", 1, "selector"), "Field required")
    ]


def test_an_unknown_action_type_is_refused_as_before() -> None:
    with pytest.raises(ValidationError) as refused:
        Task.model_validate({"actions": [{"type": "warp"}]})
    (error,) = refused.value.errors()
    assert error["loc"] == ("actions", 0, "type")
    assert error["msg"].startswith("Value error, unknown action type 'warp'; known types: ")


# A run request as the previous release published it (dispatch.publish_run: the sealed
# request's model_dump_json), the task and its subtasks as the stored JSON objects.
PREVIOUS_RUN_REQUEST = (
    '{"execution_id":"exec_1712345678901_ab12cd34","task":{"id":"shop","name":"Shop",'
    '"url":"https://shop.example/","actions":[{"id":"act_1","type":"click","selector":"#buy",'
    '"value":""},{"type":"start","value":"child"},{"type":"wait","value":2}],'
    '"variables":{"q":{"type":"string","value":"pear"}},"custom":{"kept":true},'
    '"updatedAt":1712345678000},"variables":{"q":"apple"},"source":"api",'
    '"timeout_seconds":300.0,"requested_at":1712345678950,"storage_state":null,"proxies":[],'
    '"subtasks":{"child":{"id":"child","name":"Child","actions":[],"updatedAt":1712345670000}},'
    '"output":null,"sealed":"v1.c2VhbGVk"}'
)


def test_a_run_request_of_the_previous_release_still_validates_and_reads_the_same() -> None:
    request = RunRequest.model_validate_json(PREVIOUS_RUN_REQUEST)
    assert isinstance(request.task, Task) and request.task.id == "shop"
    assert isinstance(request.subtasks["child"], Task)
    # Sent on, it is the same JSON: a runner of the previous release reads it as before.
    assert json.loads(request.model_dump_json()) == json.loads(PREVIOUS_RUN_REQUEST)


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
        {"actions": [{"type": "navigate"}]},
        {"actions": [{"type": "wait", "value": True}]},
    ],
)
def test_invalid_tasks_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Task.model_validate(body)


def test_run_events_round_trip_through_the_envelope() -> None:
    started = StartedEvent(execution_id="e", attempt=1, seq=0, runner_id="r")
    result = result_event("e", 3, attempt=2, duration_ms=5)
    for event in (started, result):
        raw = event.model_dump_json().encode()
        parsed = RunEventEnvelope.model_validate_json(b'{"event":' + raw + b"}").event
        assert parsed == event


def test_a_start_carries_its_first_lines_and_may_ride_in_a_result() -> None:
    started = StartedEvent(execution_id="e", attempt=1, seq=0, runner_id="r", lines=["a", "b"])
    assert [(line["seq"], line["line"]) for line in started.log_lines()] == [(1, "a"), (2, "b")]
    assert "lines" not in started.bare()
    bare = StartedEvent(execution_id="e", attempt=1, seq=0, runner_id="r")
    result = result_event("e", 3, duration_ms=5, lines=["x", "y"], started=bare)
    raw = result.model_dump_json().encode()
    assert RunEventEnvelope.model_validate_json(b'{"event":' + raw + b"}").event == result
    assert [line["seq"] for line in result.log_lines()] == [1, 2]
    for seq, lines, start in ((2, ["x", "y"], bare), (3, [], bare.model_copy(update={"seq": 1}))):
        with pytest.raises(ValidationError):
            result_event("e", seq, duration_ms=5, lines=lines, started=start)


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


@pytest.mark.parametrize("timeout", [0, 1.5, 10_000])
def test_action_timeouts_may_be_zero_or_fractional_as_figranium_writes_them(
    timeout: float,
) -> None:
    task = Task.model_validate({"actions": [{"type": "reload", "timeout": timeout}]})
    assert task.actions[0].timeout == timeout
    assert task.dump()["actions"][0]["timeout"] == timeout
