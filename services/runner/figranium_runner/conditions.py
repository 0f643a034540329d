"""``if`` / ``while`` conditions: structured comparisons, or a JavaScript expression."""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.async_api import Page

from figranium_common.models import Action
from figranium_runner.variables import lookup, substitute

_VAR_REF = re.compile(r"^\{\$([\w.]+)\}$")
_REGEX_LIMIT = 1000  # characters of pattern and subject: no catastrophic backtracking budget

# The expression sees the helpers Figranium documents: exists(sel), text(sel), url(), vars,
# block (with block.output) and html.
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


def parse_value(text: str) -> Any:
    """Figranium's literal parsing: booleans, numbers and JSON, else the string itself."""
    stripped = text.strip()
    if stripped.lower() in ("true", "false"):
        return stripped.lower() == "true"
    try:
        return json.loads(stripped)
    except ValueError:
        return text


def var_name(raw: str) -> str:
    """``{$name}`` or ``name`` → ``name``."""
    match = _VAR_REF.match(raw.strip())
    return match.group(1) if match else raw.strip()


def _operand(raw: Any, variables: dict[str, Any]) -> Any:
    if not isinstance(raw, str):
        return raw
    name = var_name(raw)
    found = lookup(variables, name) if name else None
    if found is not None:
        return found
    return substitute(raw, variables)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        parsed = parse_value(value)
        if isinstance(parsed, int | float) and not isinstance(parsed, bool):
            return float(parsed)
    return None


def _boolean(value: Any) -> bool:
    if isinstance(value, str):
        parsed = parse_value(value)
        if isinstance(parsed, bool):
            return parsed
        return bool(value.strip())
    return bool(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def structured(action: Action, variables: dict[str, Any]) -> bool:
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
        if len(b_text) > _REGEX_LIMIT or len(a_text) > 100 * _REGEX_LIMIT:
            return False
        try:
            return re.search(b_text, a_text) is not None
        except re.error:
            return False
    return a_text == b_text


def has_structured(action: Action) -> bool:
    return any(
        value not in (None, "")
        for value in (
            action.conditionVarType,
            action.conditionOp,
            action.conditionVar,
            action.conditionValue,
        )
    )


async def evaluate(action: Action, page: Page, variables: dict[str, Any]) -> bool:
    if has_structured(action):
        return structured(action, variables)
    expression = substitute(str(action.value or ""), variables)
    if not expression.strip():
        return False
    block = variables.get("block")
    output = block.get("output") if isinstance(block, dict) else None
    return bool(
        await page.evaluate(
            _CONDITION_JS,
            {"expression": expression, "vars": variables, "blockOutput": output},
        )
    )
