"""The action palette: every action type with its fields, as a task editor offers them.

Generated from ``ACTION_MODELS``, the models the API validates actions with, so the
palette cannot offer a field the API refuses nor leave out one it reads. What the models
cannot say is kept here in one explicit table: each type's label and group. A field's kind
follows from its type: a ``Literal`` is a ``select`` of its values, a boolean a
``boolean``, a number a ``number``, a field that takes lists or objects ``json``; by name,
``selector`` and ``…Selector`` hold CSS selectors and ``varName`` a variable's name;
anything else is ``text`` (text that may also be a number, since ``{$variables}`` are
allowed in it).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Mapping
from typing import Annotated, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

from figranium_common.action_models import ACTION_MODELS, ActionBase
from figranium_common.blocks import OPENERS

FieldKind = Literal["text", "number", "boolean", "select", "json", "selector", "variable-name"]
Group = Literal["page", "input", "wait", "data", "logic", "flow", "captcha", "files"]
BlockRole = Literal["open", "continue", "close"]
Default = str | int | float | bool | None

GROUPS: dict[Group, str] = {
    "page": "Page",
    "input": "Input",
    "wait": "Waiting",
    "data": "Data",
    "logic": "Logic",
    "flow": "Flow",
    "captcha": "Captchas",
    "files": "Files",
}
# Each action model's label and group, by the first type its model names.
LABELS: dict[str, tuple[str, Group]] = {
    "navigate": ("Go to URL", "page"),
    "reload": ("Reload", "page"),
    "scroll": ("Scroll", "page"),
    "screenshot": ("Screenshot", "page"),
    "javascript": ("Run JavaScript", "page"),
    "click": ("Click", "input"),
    "type": ("Type", "input"),
    "hover": ("Hover", "input"),
    "press": ("Press a key", "input"),
    "select": ("Choose an option", "input"),
    "check": ("Check", "input"),
    "drag_and_drop": ("Drag and drop", "input"),
    "wait": ("Wait", "wait"),
    "wait_selector": ("Wait for an element", "wait"),
    "wait_downloads": ("Wait for downloads", "wait"),
    "get_content": ("Get content", "data"),
    "set": ("Set a variable", "data"),
    "merge": ("Merge", "data"),
    "csv": ("Parse CSV", "data"),
    "http_request": ("HTTP request", "data"),
    "if": ("If", "logic"),
    "else": ("Else", "logic"),
    "end": ("End", "logic"),
    "while": ("While", "logic"),
    "repeat": ("Repeat", "logic"),
    "foreach": ("For each", "logic"),
    "on_error": ("On error", "flow"),
    "stop": ("Stop", "flow"),
    "start": ("Start a task", "flow"),
    "do_nothing": ("Do nothing", "flow"),
    "wait_captcha": ("Wait for a captcha", "captcha"),
    "solve_captcha": ("Solve a captcha", "captcha"),
    "upload": ("Upload a file", "files"),
    "finalize_uploads": ("Finalize uploads", "files"),
}
BLOCK_ROLES: dict[str, BlockRole] = {
    **{kind: "open" for kind in OPENERS},
    "else": "continue",
    "end": "close",
}
VARIABLE_FIELDS = frozenset({"varName"})


class PaletteError(ValueError):
    """An action model the palette cannot describe (a type without a label, say)."""


class PaletteField(BaseModel):
    name: str
    kind: FieldKind
    required: bool = Field(description="the API refuses the action without it")
    options: list[str] | None = Field(description="a select's choices, else null")
    default: Default = Field(description="the value taken when the field is left out")
    description: str
    common: bool = Field(description="every action type has it (id, disabled, timeout)")


class PaletteAction(BaseModel):
    types: list[str] = Field(description="the type an editor writes first, then its aliases")
    label: str
    group: Group
    description: str
    block: BlockRole | None = Field(
        description="open: starts a block; continue: else inside an if; close: end"
    )
    fields: list[PaletteField] = Field(description="the type's own fields, then the common")


class PaletteGroup(BaseModel):
    name: Group
    label: str


class ActionPalette(BaseModel):
    """Every action type, in its group's order, with the fields its model declares."""

    groups: list[PaletteGroup]
    actions: list[PaletteAction]


def build_palette(
    models: Mapping[str, type[ActionBase]] = ACTION_MODELS,
    labels: Mapping[str, tuple[str, Group]] = LABELS,
) -> ActionPalette:
    """The palette of ``models`` (type → model); aliases sharing a model share an entry."""
    kinds_of: dict[type[ActionBase], list[str]] = {}
    for kind, model in models.items():
        kinds_of.setdefault(model, []).append(kind)
    actions = [_action(model, kinds, labels) for model, kinds in kinds_of.items()]
    order = list(GROUPS)
    actions.sort(key=lambda action: order.index(action.group))
    return ActionPalette(
        groups=[PaletteGroup(name=name, label=label) for name, label in GROUPS.items()],
        actions=actions,
    )


def _action(
    model: type[ActionBase], kinds: list[str], labels: Mapping[str, tuple[str, Group]]
) -> PaletteAction:
    if kinds[0] not in labels:
        raise PaletteError(f"action type {kinds[0]!r} has no label and group in LABELS")
    label, group = labels[kinds[0]]
    common = ActionBase.model_fields
    own = [name for name in model.model_fields if name not in common]
    shared = [name for name in common if name != "type"]
    return PaletteAction(
        types=kinds,
        label=label,
        group=group,
        description=_text(_docstring(model)),
        block=BLOCK_ROLES.get(kinds[0]),
        fields=[_field(name, model.model_fields[name], name in common) for name in own + shared],
    )


def _field(name: str, info: FieldInfo, common: bool) -> PaletteField:
    required = info.is_required()
    options = _literal_options(info.annotation)
    return PaletteField(
        name=name,
        kind="select" if options else _kind(name, _members(info.annotation)),
        required=required,
        options=options or None,
        default=None if required else info.get_default(call_default_factory=True),
        description=_text(info.description or ""),
        common=common,
    )


def _kind(name: str, members: list[object]) -> FieldKind:
    if name == "selector" or name.endswith("Selector"):
        return "selector"
    if name in VARIABLE_FIELDS:
        return "variable-name"
    if members == [bool]:
        return "boolean"
    if members and all(member in (int, float) for member in members):
        return "number"
    if any(get_origin(member) in (list, dict) for member in members):
        return "json"
    return "text"


def _members(annotation: object) -> list[object]:
    """The types a field takes, ``None`` and ``Annotated`` constraints left out."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [member for arg in get_args(annotation) for member in _members(arg)]
    return [] if annotation is type(None) else [annotation]


def _literal_options(annotation: object) -> list[str]:
    return [
        str(value)
        for member in _members(annotation)
        if get_origin(member) is Literal
        for value in get_args(member)
    ]


def _docstring(model: type[ActionBase]) -> str:
    """The model's own docstring (its bases' describe their fields, not this type)."""
    own = vars(model).get("__doc__")
    return inspect.cleandoc(own) if isinstance(own, str) else ""


def _text(doc: str) -> str:
    """One line, with the models' ``code`` marks as single backquotes."""
    return " ".join(doc.split()).replace("``", "`")


ACTION_PALETTE = build_palette()
