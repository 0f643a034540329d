"""Run variables as clients send them: plain values, typed declarations, taskVariables."""

from __future__ import annotations

import pytest

from figranium_gateway.errors import ApiError
from figranium_gateway.run_variables import (
    declare_missing,
    given_variables,
    is_declaration,
    variable_types,
)


def test_declarations_are_objects_of_a_known_type() -> None:
    assert {"string", "number", "boolean", "secret"} <= variable_types()
    assert is_declaration({"type": "string", "value": "x"})
    assert is_declaration({"type": "number"})
    assert is_declaration({"type": "boolean", "value": True, "autoCreated": True})
    assert not is_declaration({"type": "car", "value": "x"})  # not a variable type
    assert not is_declaration({"type": "string", "value": "x", "wheels": 4})  # a value's keys
    assert not is_declaration({"value": "x"})
    assert not is_declaration("string")
    assert not is_declaration(["string"])


def test_plain_and_typed_entries_mix_and_task_variables_win() -> None:
    given = given_variables(
        {
            "variables": {"q": "plain", "n": {"type": "number", "value": "3"}, "o": {"a": 1}},
            "taskVariables": {"q": {"type": "string", "value": "alias"}, "extra": 5},
        }
    )
    assert given.declared == {
        "n": {"type": "number", "value": "3"},
        "q": {"type": "string", "value": "alias"},
    }
    assert given.values == {"o": {"a": 1}, "extra": 5}
    assert given.run_values() == {"n": "3", "q": "alias", "o": {"a": 1}, "extra": 5}
    assert given_variables({"variables": None}).run_values() == {}


@pytest.mark.parametrize("bad", ["x=1", [1], 5])
def test_variables_must_be_an_object(bad: object) -> None:
    with pytest.raises(ApiError) as raised:
        given_variables({"taskVariables": bad})
    assert (raised.value.status, raised.value.code) == (400, "INVALID_BODY")
    assert raised.value.details.startswith("taskVariables")


def test_declare_missing_keeps_the_tasks_own_types() -> None:
    task = {"id": "t", "variables": {"q": {"type": "string", "value": "d"}}}
    declared = {
        "q": {"type": "secret", "value": "s"},
        "tok": {"type": "secret", "value": "s2"},
    }
    assert declare_missing(task, declared)["variables"] == {
        "q": {"type": "string", "value": "d"},
        "tok": {"type": "secret", "value": "s2"},
    }
    assert declare_missing(task, {}) is task
    assert declare_missing({"id": "u"}, declared)["variables"] == declared
