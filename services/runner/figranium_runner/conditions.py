"""``if`` / ``while`` conditions: structured comparisons, or a JavaScript expression."""

from __future__ import annotations

import asyncio
import json
import re

import regex

from figranium_common.action_models import ConditionalAction
from figranium_common.jsontypes import JsonObject, JsonValue
from figranium_runner.bounds import LimitExceeded
from figranium_runner.isolated import IsolatedWorld
from figranium_runner.variables import lookup, substitute

_VAR_REF = re.compile(r"^\{\$([\w.]+)\}$")
_PATTERN_LIMIT = 1000  # characters of a `matches` pattern
# JavaScript's named backreference; the `regex` package spells it (?P=name).
_JS_NAMED_BACKREF = re.compile(r"(?<!\\)((?:\\\\)*)\\k<([A-Za-z_][A-Za-z0-9_]*)>")

# The expression sees the helpers Figranium documents: exists(sel), text(sel), url(), vars,
# block (with block.output) and html. It runs in an isolated world (see isolated.py): it
# sees the page's DOM, and the page sees neither it nor the variables.
_CONDITION_JS = """
({ expression, vars, blockOutput }) => {
  const exists = (selector) => !!selector && !!document.querySelector(selector);
  const text = (selector) => {
    const el = selector ? document.querySelector(selector) : null;
    return el ? (el.textContent || '').trim() : '';
  };
  const url = () => window.location.href;
  const html = document.documentElement.outerHTML;
  const block = { output: blockOutput };
  const fn = new Function('vars', 'block', 'exists', 'text', 'url', 'html',
    'return !!(' + expression + '\\n);');
  return fn(vars || {}, block, exists, text, url, html);
}
"""


def parse_value(text: str) -> JsonValue:
    """Figranium's literal parsing: booleans, numbers and JSON, else the string itself."""
    stripped = text.strip()
    if stripped.lower() in ("true", "false"):
        return stripped.lower() == "true"
    try:
        parsed: JsonValue = json.loads(stripped)
    except (ValueError, RecursionError):  # RecursionError: `[[[[…` nested past the stack
        return text
    return parsed


def var_name(raw: str) -> str:
    """``{$name}`` or ``name`` → ``name``."""
    match = _VAR_REF.match(raw.strip())
    return match.group(1) if match else raw.strip()


def _operand(raw: JsonValue, variables: JsonObject) -> JsonValue:
    if not isinstance(raw, str):
        return raw
    name = var_name(raw)
    found = lookup(variables, name) if name else None
    if found is not None:
        return found
    return substitute(raw, variables)


def _number(value: JsonValue) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        parsed = parse_value(value)
        if isinstance(parsed, int | float) and not isinstance(parsed, bool):
            return float(parsed)
    return None


def _boolean(value: JsonValue) -> bool:
    if isinstance(value, str):
        parsed = parse_value(value)
        if isinstance(parsed, bool):
            return parsed
        return bool(value.strip())
    return bool(value)


def _text(value: JsonValue) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _js_pattern(pattern: str) -> str:
    """A JavaScript pattern in the `regex` package's syntax, which differs in little else."""
    return _JS_NAMED_BACKREF.sub(r"\1(?P=\2)", pattern)


async def _matches(subject: str, pattern: str, timeout_ms: int) -> bool:
    if len(pattern) > _PATTERN_LIMIT:
        return False
    try:
        compiled = regex.compile(_js_pattern(pattern))
    except regex.error:
        return False
    # Off the event loop, in a thread (the `regex` package lets go of the GIL while it
    # matches a str), with a deadline: a pattern that backtracks for ever must stall
    # neither this run nor the runner's other runs, heartbeats and probes.
    try:
        found = await asyncio.to_thread(compiled.search, subject, timeout=timeout_ms / 1000)
    except TimeoutError:
        shown = pattern if len(pattern) <= 80 else pattern[:77] + "..."
        raise LimitExceeded(
            f"the pattern {shown!r} ran longer than RUNNER_REGEX_TIMEOUT_MS ({timeout_ms} ms)"
        ) from None
    return found is not None


async def structured(
    action: ConditionalAction, variables: JsonObject, regex_timeout_ms: int
) -> bool:
    kind = action.conditionVarType or "string"
    op = action.conditionOp or ("is_true" if kind == "boolean" else "equals")
    left = _operand(action.conditionVar or "", variables)
    right_raw = action.conditionValue if action.conditionValue is not None else ""
    right = substitute(right_raw, variables) if isinstance(right_raw, str) else right_raw
    if op in ("exists", "not_exists"):
        present = left not in (None, "") and not (isinstance(left, list | dict) and not left)
        named = var_name(action.conditionVar or "")
        present = present and lookup(variables, named) is not None
        return present if op == "exists" else not present
    if op in ("is_true", "is_false") or kind == "boolean":
        truth = _boolean(left)
        return not truth if op == "is_false" else truth
    if op in ("gt", "gte", "lt", "lte") or kind == "number":
        a, b = _number(left), _number(right)
        if a is None or b is None:
            return False
        return {
            "gt": a > b,
            "gte": a >= b,
            "lt": a < b,
            "lte": a <= b,
            "not_equals": a != b,
        }.get(op, a == b)
    a_text, b_text = _text(left), _text(right)
    if op == "not_equals":
        return a_text != b_text
    if op == "contains":
        return b_text in a_text
    if op == "starts_with":
        return a_text.startswith(b_text)
    if op == "ends_with":
        return a_text.endswith(b_text)
    if op == "matches":
        return await _matches(a_text, b_text, regex_timeout_ms)
    return a_text == b_text


async def _element_present(
    action: ConditionalAction, world: IsolatedWorld, variables: JsonObject
) -> bool:
    """Type ``selector`` (Figranium's editor): whether the element ``selector`` names (else
    ``conditionVar``) is in the page; ``not_exists`` turns it round."""
    selector = substitute(action.selector or action.conditionVar or "", variables).strip()
    present = bool(selector) and bool(
        await world.evaluate("(s) => !!document.querySelector(s)", selector)
    )
    return not present if action.conditionOp == "not_exists" else present


def has_structured(action: ConditionalAction) -> bool:
    return any(
        value not in (None, "")
        for value in (
            action.conditionVarType,
            action.conditionOp,
            action.conditionVar,
            action.conditionValue,
        )
    )


async def evaluate(
    action: ConditionalAction,
    world: IsolatedWorld,
    variables: JsonObject,
    regex_timeout_ms: int,
) -> bool:
    if action.conditionVarType == "selector":
        return await _element_present(action, world, variables)
    if has_structured(action):
        return await structured(action, variables, regex_timeout_ms)
    expression = substitute(str(action.value or ""), variables)
    if not expression.strip():
        return False
    block = variables.get("block")
    output = block.get("output") if isinstance(block, dict) else None
    return bool(
        await world.evaluate(
            _CONDITION_JS,
            {"expression": expression, "vars": variables, "blockOutput": output},
        )
    )
