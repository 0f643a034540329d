"""``{$name}`` substitution and run-time variable typing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from figranium_common.jsontypes import JsonMapping, JsonObject, JsonValue
from figranium_common.models import Variable
from figranium_runner.bounds import too_large

_PLACEHOLDER = re.compile(r"\{\$([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}")

# RUNNER_MAX_VARIABLE_BYTES for the run this task belongs to (None: no run, no bound). A
# context variable, because substitution happens everywhere and each run is its own task.
_TEXT_LIMIT: ContextVar[int | None] = ContextVar("substitution_limit", default=None)


@contextmanager
def text_limit(limit: int) -> Iterator[None]:
    """Bound what ``substitute`` may produce while the run inside runs."""
    token = _TEXT_LIMIT.set(limit)
    try:
        yield
    finally:
        _TEXT_LIMIT.reset(token)


def coerce(declared: str, value: JsonValue) -> JsonValue:
    """Give a run-time value the type its task declares (``"3"`` for a number → ``3``)."""
    if declared == "number" and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() else number
    if declared == "boolean" and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off", ""):
            return False
    if (
        declared in ("string", "secret", "selector")
        and not isinstance(value, str)
        and value is not None
    ):
        return value if isinstance(value, dict | list) else _text(value)
    return value


def initial_variables(declared: dict[str, Variable], overrides: JsonMapping) -> JsonObject:
    """Task defaults, overridden by the run's variables in the declared types."""
    values: JsonObject = {name: coerce(var.type, var.value) for name, var in declared.items()}
    for name, value in overrides.items():
        values[name] = coerce(declared[name].type, value) if name in declared else value
    return values


def secret_values(declared: dict[str, Variable], values: JsonMapping) -> set[str]:
    """The values of the variables declared secret, as text is substituted with them."""
    return {_text(values.get(name)) for name, var in declared.items() if var.type == "secret"}


def _text(value: JsonValue) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def lookup(variables: JsonObject, path: str) -> JsonValue:
    if path == "now":
        return datetime.now(UTC).isoformat().replace("+00:00", "Z")
    current: JsonValue = variables
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def substitute(text: str, variables: JsonObject) -> str:
    """Replace every ``{$path}``; objects become JSON, unknown names the empty string."""
    limit = _TEXT_LIMIT.get()
    if limit is None:
        return _PLACEHOLDER.sub(lambda m: _text(lookup(variables, m.group(1))), text)
    # A text naming one big variable a thousand times would be a thousand times its size:
    # stop at the first replacement that takes it past the limit, not after building it.
    grown = len(text)

    def replace(match: re.Match[str]) -> str:
        nonlocal grown
        value = _text(lookup(variables, match.group(1)))
        grown += len(value) - len(match.group(0))
        if grown > limit:
            raise too_large("the text after {$…} substitution", limit)
        return value

    return _PLACEHOLDER.sub(replace, text)


def substitute_all(value: JsonValue, variables: JsonObject) -> JsonValue:
    """Substitute inside every string of a JSON-like value."""
    if isinstance(value, str):
        return substitute(value, variables)
    if isinstance(value, list):
        return [substitute_all(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: substitute_all(v, variables) for k, v in value.items()}
    return value
