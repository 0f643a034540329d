"""Variables as clients send them with a run: plain values or typed declarations.

Figranium's clients send a run's ``variables`` (or ``taskVariables``, the same thing under
its other name) as plain values, ``{"q": "x"}``; a task's editor writes declarations,
``{"q": {"type": "string", "value": "x"}}``. Both are taken, even mixed in one object. An
entry is a declaration when it is a JSON object whose ``type`` is a variable type the
platform knows (``string``, ``number``, ``boolean``, ``secret``…) and whose other keys are
``value`` and the editor's own markers; anything else is a plain value, objects included
(``{"type": "car", "wheels": 4}`` is a value).

Where both names are sent, ``taskVariables`` wins name by name, as Figranium reads it
first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import get_args

from figranium_common.jsontypes import JsonMapping, JsonObject, JsonValue
from figranium_common.models import Variable
from figranium_gateway.errors import ApiError

NAMES = ("variables", "taskVariables")
# Keys a declaration may carry besides type and value (the editor marks variables it made).
_DECLARATION_KEYS = frozenset({"type", "value", "autoCreated", "description"})


def variable_types() -> frozenset[str]:
    """The variable types a task may declare, as the task model knows them."""
    return frozenset(get_args(Variable.model_fields["type"].annotation))


def is_declaration(value: JsonValue) -> bool:
    return (
        isinstance(value, dict)
        and value.get("type") in variable_types()
        and set(value) <= _DECLARATION_KEYS
    )


@dataclass
class GivenVariables:
    """A run's variables, sorted: declarations (name → {type, value}) and plain values."""

    declared: JsonObject = field(default_factory=dict)
    values: JsonObject = field(default_factory=dict)

    def run_values(self) -> JsonObject:
        """What the run starts with, by name: every plain value and declared value."""
        declared = {
            name: spec.get("value") if isinstance(spec, dict) else None
            for name, spec in self.declared.items()
        }
        return {**declared, **self.values}


def given_variables(body: JsonMapping) -> GivenVariables:
    """The variables of a run body (``variables``, then ``taskVariables`` over them)."""
    given = GivenVariables()
    for name in NAMES:
        entries = body.get(name)
        if entries is None:
            continue
        if not isinstance(entries, dict):
            raise ApiError(400, "INVALID_BODY", f"{name}: must be an object of name: value")
        for key, value in entries.items():
            given.declared.pop(key, None)
            given.values.pop(key, None)
            if is_declaration(value):
                given.declared[key] = value
            else:
                given.values[key] = value
    return given


def declare_missing(task: JsonObject, declared: JsonMapping) -> JsonObject:
    """``task`` declaring, besides its own, the run's declarations of names it does not
    declare: their type then applies (a run's ``secret`` stays out of logs and results).
    The task's own declarations keep their type; the run only gives their value."""
    own = task.get("variables")
    current: JsonObject = dict(own) if isinstance(own, dict) else {}
    added = {name: spec for name, spec in declared.items() if name not in current}
    if not added:
        return task
    return {**task, "variables": {**current, **added}}
