from __future__ import annotations

import re

from figranium_common.models import Variable
from figranium_runner.variables import initial_variables, substitute, substitute_all


def test_substitution_of_names_paths_objects_and_unknowns() -> None:
    values = {"name": "Ada", "n": 3, "flag": True, "user": {"city": "Paris"}, "xs": [1, 2]}
    assert substitute("Hi {$name}!", values) == "Hi Ada!"
    assert substitute("{$n}/{$flag}", values) == "3/true"
    assert substitute("{$user.city}", values) == "Paris"
    assert substitute("{$user}", values) == '{"city": "Paris"}'
    assert substitute("{$xs.1}", values) == "2"
    assert substitute("[{$missing}]", values) == "[]"
    assert substitute("{$ name}", values) == "{$ name}"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", substitute("{$now}", values))


def test_substitute_all_walks_json() -> None:
    assert substitute_all({"a": ["{$x}", 1]}, {"x": "y"}) == {"a": ["y", 1]}


def test_run_variables_override_defaults_in_declared_types() -> None:
    declared = {
        "count": Variable(type="number", value=1),
        "on": Variable(type="boolean", value=False),
        "label": Variable(type="string", value="a"),
    }
    values = initial_variables(declared, {"count": "42", "on": "true", "label": 7, "extra": "x"})
    assert values == {"count": 42, "on": True, "label": "7", "extra": "x"}
    assert initial_variables(declared, {}) == {"count": 1, "on": False, "label": "a"}
