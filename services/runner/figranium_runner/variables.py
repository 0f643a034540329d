"""``{$name}`` substitution and run-time variable typing."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from figranium_common.models import Variable

_PLACEHOLDER = re.compile(r"\{\$([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}")


def coerce(declared: str, value: Any) -> Any:
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
    if declared == "string" and not isinstance(value, str) and value is not None:
        return value if isinstance(value, dict | list) else _text(value)
    return value


def initial_variables(declared: dict[str, Variable], overrides: dict[str, Any]) -> dict[str, Any]:
    """Task defaults, overridden by the run's variables in the declared types."""
    values: dict[str, Any] = {name: coerce(var.type, var.value) for name, var in declared.items()}
    for name, value in overrides.items():
        values[name] = coerce(declared[name].type, value) if name in declared else value
    return values


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def lookup(variables: dict[str, Any], path: str) -> Any:
    if path == "now":
        return datetime.now(UTC).isoformat().replace("+00:00", "Z")
    current: Any = variables
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def substitute(text: str, variables: dict[str, Any]) -> str:
    """Replace every ``{$path}``; objects become JSON, unknown names the empty string."""
    return _PLACEHOLDER.sub(lambda m: _text(lookup(variables, m.group(1))), text)


def substitute_all(value: Any, variables: dict[str, Any]) -> Any:
    """Substitute inside every string of a JSON-like value."""
    if isinstance(value, str):
        return substitute(value, variables)
    if isinstance(value, list):
        return [substitute_all(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: substitute_all(v, variables) for k, v in value.items()}
    return value
