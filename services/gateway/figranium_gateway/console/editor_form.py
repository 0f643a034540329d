"""The task editor's form read back into task fields, and its edit operations.

Every action's fields come from the action palette (``figranium_common.action_palette``),
so the form names exactly the fields the API validates. Each action and variable also
carries its value as it was (a hidden ``…-original`` field holding JSON): a field left as
shown keeps that value as it was (a number stays a number), fields the form does not show
are kept, and a changed field is read by its palette kind.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

from figranium_common.action_palette import ACTION_PALETTE, PaletteAction, PaletteField
from figranium_common.jsontypes import JsonObject, JsonValue
from figranium_common.models import StealthOptions, Task

# The palette entry of every action type, aliases included.
ENTRIES: Final[dict[str, PaletteAction]] = {
    kind: action for action in ACTION_PALETTE.actions for kind in action.types
}
# Every field some action type shows: kept from an action's original only when its
# (new) type shows it too.
KNOWN_FIELDS: Final = frozenset(f.name for a in ACTION_PALETTE.actions for f in a.fields)
TEXT_FIELDS: Final = ("name", "description", "url", "extractionScript")
CHOICE_FIELDS: Final = ("mode", "extractionFormat")
FLAGS: Final = (
    "rotateUserAgents",
    "rotateViewport",
    "rotateProxies",
    "disableRecording",
    "statelessExecution",
    "includeHtml",
    "includeShadowDom",
    "humanTyping",
    "autoSolveCaptcha",
)
STEALTH: Final = tuple(StealthOptions.model_fields)
VARIABLE_TYPES: Final = ("string", "number", "boolean", "secret", "selector")

Form = Mapping[str, str]
_OMIT: Final = object()


def shown(value: JsonValue) -> str:
    """A stored value as a text field shows it."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=2, ensure_ascii=False)
    return json.dumps(value)


def original_json(value: JsonObject) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def text(form: Form, name: str) -> str:
    """A field's text, with the CRLF line ends browsers send turned back into LF."""
    return form.get(name, "").replace("\r\n", "\n")


def _object(raw: str) -> JsonObject:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _number(raw: str) -> JsonValue:
    """A number as typed; text that is none is kept, for validation to name."""
    for parse in (int, float):
        try:
            return parse(raw)
        except ValueError:
            continue
    return raw


def _by_kind(field: PaletteField, raw: str) -> JsonValue:
    if field.kind == "number":
        return _number(raw.strip())
    if field.kind == "json":
        try:
            parsed = json.loads(raw)
        except ValueError:
            return raw
        return parsed if isinstance(parsed, (dict, list)) else raw
    return raw


def _field_value(field: PaletteField, submitted: str | None, before: JsonObject) -> object:
    """The value of one action field, or ``_OMIT`` to leave it out."""
    had = field.name in before
    if field.kind == "boolean":
        checked = submitted is not None
        if had and before[field.name] is checked:
            return before[field.name]
        return checked if checked or had or field.default is not False else _OMIT
    raw = (submitted or "").replace("\r\n", "\n")
    if had and shown(before[field.name]) == raw:
        return before[field.name]
    return _OMIT if raw == "" else _by_kind(field, raw)


def read_action(form: Form, index: int) -> JsonObject:
    """Action ``index`` of the form: its type, the palette's fields for that type, and
    whatever else its original held that no action type shows."""
    prefix = f"actions-{index}-"
    before = _object(text(form, prefix + "original"))
    kind = text(form, prefix + "type").strip()
    action: JsonObject = {k: v for k, v in before.items() if k not in KNOWN_FIELDS}
    action["type"] = kind
    entry = ENTRIES.get(kind)
    for field in entry.fields if entry else ():
        value = _field_value(field, form.get(prefix + field.name), before)
        if value is not _OMIT:
            action[field.name] = value  # type: ignore[assignment]
    return action


def read_actions(form: Form) -> list[JsonObject]:
    return [read_action(form, i) for i in range(_count(form, "actions-count"))]


def _count(form: Form, name: str) -> int:
    raw = form.get(name, "0")
    return int(raw) if raw.isdigit() else 0


def _variable_value(kind: str, raw: str) -> JsonValue:
    if kind == "number":
        return _number(raw.strip())
    if kind == "boolean" and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    return raw


def read_variables(form: Form) -> JsonObject:
    """The variables rows; a row whose name is empty is left out (that removes it)."""
    variables: JsonObject = {}
    for j in range(_count(form, "variables-count")):
        prefix = f"variables-{j}-"
        name = text(form, prefix + "name").strip()
        if not name:
            continue
        spec = _object(text(form, prefix + "original"))
        kind = text(form, prefix + "type") or "string"
        if "type" in spec or kind != "string":
            spec["type"] = kind
        raw = text(form, prefix + "value")
        if "value" in spec and shown(spec["value"]) == raw:
            pass
        elif raw or "value" in spec:
            spec["value"] = _variable_value(kind, raw)
        variables[name] = spec
    return variables


def _default(name: str) -> JsonValue:
    default: JsonValue = Task.model_fields[name].get_default(call_default_factory=True)
    return default


def _task_field(stored: JsonObject, name: str, value: JsonValue) -> object:
    """``value`` for a top-level field; left out when the task never had the field and
    the form shows its default (so an unchanged form changes nothing)."""
    if name in stored:
        return stored[name] if shown(stored[name]) == shown(value) else value
    return _OMIT if value in ("", _default(name)) else value


def read_task(form: Form, stored: JsonObject) -> JsonObject:
    """The fields the editor shows, read from ``form``; ``stored`` is the task as saved."""
    given: dict[str, JsonValue] = {name: text(form, name) for name in TEXT_FIELDS}
    given.update({name: text(form, name) for name in CHOICE_FIELDS})
    given["wait"] = _number(text(form, "wait").strip() or "0")
    given.update({flag: flag in form for flag in FLAGS})
    changes: JsonObject = {}
    for name, value in given.items():
        kept = _task_field(stored, name, value)
        if kept is not _OMIT:
            changes[name] = kept  # type: ignore[assignment]
    stealth = {option: f"stealth-{option}" in form for option in STEALTH}
    before = stored.get("stealth")
    given = before if isinstance(before, dict) else {}
    options = {k: on for k, on in stealth.items() if on or k in given}
    if options or before is not None:
        changes["stealth"] = {**given, **options}
    variables = read_variables(form)
    if variables or "variables" in stored:
        changes["variables"] = variables
    changes["actions"] = read_actions(form)
    return changes


def apply_op(op: str, actions: list[JsonObject], add_type: str) -> bool:
    """Apply an edit operation (``add``, ``up:i``, ``down:i``, ``remove:i``) to
    ``actions`` in place; False when ``op`` names none of them."""
    if op == "add":
        actions.append({"type": add_type if add_type in ENTRIES else "click"})
        return True
    verb, _, where = op.partition(":")
    if not where.isdigit() or int(where) >= len(actions):
        return False
    i = int(where)
    if verb == "remove":
        del actions[i]
    elif verb == "up" and i > 0:
        actions[i - 1], actions[i] = actions[i], actions[i - 1]
    elif verb == "down" and i + 1 < len(actions):
        actions[i], actions[i + 1] = actions[i + 1], actions[i]
    else:
        return verb in ("up", "down")
    return True
