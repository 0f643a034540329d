"""What the task editor's template shows: each action with the palette's fields for its
type and its depth in the block structure, the variables, and the errors of a refused save
placed at the action they name."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import cast

from pydantic import ValidationError

from figranium_common.action_models import ACTION_MODELS, Action
from figranium_common.action_palette import ACTION_PALETTE
from figranium_common.blocks import BlockStructureError, build_blocks
from figranium_common.jsontypes import JsonObject
from figranium_common.models import Task
from figranium_gateway.console.editor_form import (
    ENTRIES,
    FLAGS,
    STEALTH,
    original_json,
    shown,
)
from figranium_gateway.errors import ApiError, field_path

MAX_DEPTH = 8  # deeper blocks are drawn at this indent (the stylesheet's last step)


@dataclass
class Problems:
    """A refused save's errors: those naming an action (by index), and the others."""

    general: list[str] = field(default_factory=list)
    at: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    fields: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))

    @classmethod
    def of(cls, exc: ValidationError | ApiError) -> Problems:
        problems = cls()
        if isinstance(exc, ApiError):
            index = exc.extra.get("actionIndex")
            if isinstance(index, int):
                problems.at[index].append(exc.details)
            else:
                problems.general.append(exc.details)
            return problems
        for error in exc.errors():
            loc = error["loc"]
            if len(loc) >= 2 and loc[0] == "actions" and isinstance(loc[1], int):
                named = field_path(loc[2:]) if len(loc) > 2 else "action"
                problems.at[loc[1]].append(f"{named}: {error['msg']}")
                problems.fields[loc[1]].update(str(part) for part in loc[2:3])
            else:
                problems.general.append(f"{field_path(loc)}: {error['msg']}")
        return problems

    def __bool__(self) -> bool:
        return bool(self.general or self.at)


@dataclass
class FieldView:
    name: str  # the palette's field name
    kind: str
    value: str
    checked: bool
    options: list[str]
    required: bool
    description: str
    invalid: bool


@dataclass
class ActionView:
    index: int
    type: str
    label: str
    depth: int
    fields: list[FieldView]
    original: str
    errors: list[str]
    type_invalid: bool


def depths(actions: list[JsonObject]) -> tuple[list[int], BlockStructureError | None]:
    """Each action's nesting depth, matched by the API's own block code; all 0 (and the
    problem) while the blocks do not match."""
    typed = [
        cast(Action, ACTION_MODELS[kind].model_construct(type=kind))
        for kind in (str(a.get("type", "")) for a in actions)
        if kind in ACTION_MODELS
    ]
    if len(typed) != len(actions):
        return [0] * len(actions), None
    try:
        blocks = build_blocks(typed)
    except BlockStructureError as exc:
        return [0] * len(actions), exc
    spans = list(blocks.by_start.values())
    result = []
    for i, action in enumerate(actions):
        depth = sum(1 for b in spans if b.start < i < b.end)
        result.append(depth - 1 if action.get("type") == "else" else depth)
    return result, None


def action_views(actions: list[JsonObject], problems: Problems) -> list[ActionView]:
    levels, mismatch = depths(actions)
    if mismatch is not None and mismatch.index not in problems.at:
        problems.at[mismatch.index].append(str(mismatch.details))
    views = []
    for i, action in enumerate(actions):
        kind = str(action.get("type", ""))
        entry = ENTRIES.get(kind)
        bad = problems.fields.get(i, set())
        fields = [
            FieldView(
                name=f.name,
                kind=f.kind,
                value=shown(action.get(f.name)),
                checked=action.get(f.name, f.default) is True,
                options=f.options or [],
                required=f.required,
                description=f.description,
                invalid=f.name in bad,
            )
            for f in (entry.fields if entry else [])
        ]
        views.append(
            ActionView(
                index=i,
                type=kind,
                label=entry.label if entry else kind,
                depth=min(levels[i], MAX_DEPTH),
                fields=fields,
                original=original_json(action),
                errors=problems.at.get(i, []),
                type_invalid=bool(problems.at.get(i)) and not any(f.invalid for f in fields),
            )
        )
    return views


def type_choices() -> list[tuple[str, str, str]]:
    """(group label, type, label) for the type selects: each palette entry's own type."""
    groups = {g.name: g.label for g in ACTION_PALETTE.groups}
    return [(groups[a.group], a.types[0], a.label) for a in ACTION_PALETTE.actions]


@dataclass
class VariableView:
    index: int
    name: str
    type: str
    value: str
    original: str


def variable_views(variables: JsonObject) -> list[VariableView]:
    """The declared variables, then one empty row for a new one."""
    rows = []
    for j, (name, spec) in enumerate(variables.items()):
        given: JsonObject = spec if isinstance(spec, dict) else {"value": spec}
        kind = str(given.get("type", "string"))
        rows.append(VariableView(j, name, kind, shown(given.get("value")), original_json(given)))
    rows.append(VariableView(len(rows), "", "string", "", "{}"))
    return rows


FLAG_LABELS = {
    "rotateUserAgents": "Rotate user agents",
    "rotateViewport": "Rotate the viewport",
    "rotateProxies": "Rotate proxies",
    "disableRecording": "No recording",
    "statelessExecution": "Stateless execution (no saved cookies or storage)",
    "includeHtml": "Include the page's HTML in the result",
    "includeShadowDom": "Include shadow DOM",
    "humanTyping": "Type like a person",
    "autoSolveCaptcha": "Solve captchas by themselves",
}


def switches(task: JsonObject) -> list[tuple[str, str, bool]]:
    """(field, label, on) of the behaviour settings; a field left out shows its default."""
    return [
        (name, FLAG_LABELS[name], task.get(name, Task.model_fields[name].default) is True)
        for name in FLAGS
    ]


def stealth_switches(task: JsonObject) -> list[tuple[str, bool]]:
    given = task.get("stealth")
    options = given if isinstance(given, dict) else {}
    return [(name, options.get(name) is True) for name in STEALTH]
