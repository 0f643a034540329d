"""The action palette says what the action models say: every type, every field, nothing else."""

from __future__ import annotations

from typing import Literal, get_args

import pytest
from pydantic import TypeAdapter

from figranium_common.action_models import (
    ACTION_MODELS,
    Action,
    ActionBase,
    ClickAction,
    ConditionalAction,
    ConditionOp,
    TypeAction,
)
from figranium_common.action_palette import (
    ACTION_PALETTE,
    GROUPS,
    LABELS,
    ActionPalette,
    PaletteAction,
    PaletteError,
    build_palette,
)
from figranium_common.blocks import BlockStructureError, build_blocks


def _entry(kind: str, palette: ActionPalette = ACTION_PALETTE) -> PaletteAction:
    (entry,) = [action for action in palette.actions if kind in action.types]
    return entry


def _fields(kind: str) -> dict[str, dict[str, object]]:
    return {field.name: field.model_dump() for field in _entry(kind).fields}


def test_the_palette_offers_every_action_type_once() -> None:
    offered = [kind for action in ACTION_PALETTE.actions for kind in action.types]
    assert sorted(offered) == sorted(ACTION_MODELS)
    for action in ACTION_PALETTE.actions:
        assert len({ACTION_MODELS[kind] for kind in action.types}) == 1, action.types
    assert _entry("goto").types == ["navigate", "goto"]
    assert _entry("noop").types == ["do_nothing", "noop", "pass"]


def test_every_field_a_model_declares_is_offered_as_the_model_says() -> None:
    for kind, model in ACTION_MODELS.items():
        offered = {field.name: field for field in _entry(kind).fields}
        assert set(offered) == set(model.model_fields) - {"type"}, kind
        for name, field in offered.items():
            info = model.model_fields[name]
            assert field.required == info.is_required(), (kind, name)
            assert field.common == (name in ActionBase.model_fields), (kind, name)
            if not field.required:
                assert field.default == info.default, (kind, name)


def test_every_field_is_described() -> None:
    for action in ACTION_PALETTE.actions:
        for field in action.fields:
            assert field.description, f"{action.types[0]}.{field.name} has no description"


def test_every_type_has_a_label_and_a_group_and_nothing_else_has() -> None:
    firsts = {action.types[0] for action in ACTION_PALETTE.actions}
    assert set(LABELS) == firsts
    assert all(group in GROUPS for _, group in LABELS.values())
    assert all(action.label for action in ACTION_PALETTE.actions)
    order = [action.group for action in ACTION_PALETTE.actions]
    assert order == sorted(order, key=list(GROUPS).index)
    assert [group.name for group in ACTION_PALETTE.groups] == list(GROUPS)


def test_a_field_kind_follows_its_type() -> None:
    click = _fields("click")
    assert click["selector"]["kind"] == "selector" and click["selector"]["required"]
    assert click["clickType"]["kind"] == "select"
    assert click["clickType"]["options"] == list(
        get_args(get_args(ClickAction.model_fields["clickType"].annotation)[0])
    )
    assert click["disabled"] == {**click["disabled"], "kind": "boolean", "default": False}
    assert click["timeout"]["kind"] == "number" and click["timeout"]["options"] is None
    typing = _fields("fill")
    assert typing["value"]["kind"] == "text" and typing["value"]["required"]
    assert typing["typeMode"]["options"] == list(
        get_args(get_args(TypeAction.model_fields["typeMode"].annotation)[0])
    )
    condition = _fields("while")
    assert condition["conditionOp"]["options"] == list(get_args(ConditionOp))
    assert condition["conditionVarType"]["options"] == list(
        get_args(get_args(ConditionalAction.model_fields["conditionVarType"].annotation)[0])
    )
    assert condition["conditionValue"]["kind"] == "text"
    assert _fields("set")["varName"] == {
        **_fields("set")["varName"],
        "kind": "variable-name",
        "required": True,
    }
    assert _fields("drag_and_drop")["targetSelector"]["kind"] == "selector"
    assert _fields("http_request")["headers"]["kind"] == "json"
    assert _fields("upload")["markAsUploaded"]["kind"] == "boolean"


def test_a_new_action_type_enters_the_palette_with_its_fields() -> None:
    class FlyAction(ActionBase):
        """Flies."""

        type: Literal["fly", "soar"]
        height: int
        """Metres."""
        style: Literal["glide", "flap"] | None = "glide"

    models = {**ACTION_MODELS, "fly": FlyAction, "soar": FlyAction}
    with pytest.raises(PaletteError, match="'fly'"):
        build_palette(models)
    palette = build_palette(models, {**LABELS, "fly": ("Fly", "page")})
    fly = _entry("soar", palette)
    assert (fly.types, fly.label, fly.group, fly.description) == (
        ["fly", "soar"],
        "Fly",
        "page",
        "Flies.",
    )
    height, style = fly.fields[:2]
    assert (height.name, height.kind, height.required, height.description) == (
        "height",
        "number",
        True,
        "Metres.",
    )
    assert (style.kind, style.options, style.default) == ("select", ["glide", "flap"], "glide")
    assert len(palette.actions) == len(ACTION_PALETTE.actions) + 1


def _action(kind: str) -> Action:
    """An action of ``kind`` with its required fields empty, as an editor saves a new one."""
    required = {
        name for name, info in ACTION_MODELS[kind].model_fields.items() if info.is_required()
    }
    given = {name: "" for name in required - {"type"}}
    return TypeAdapter(Action).validate_python({"type": kind, **given})


def test_block_roles_are_those_the_block_check_applies() -> None:
    for kind in ACTION_MODELS:
        role = _entry(kind).block
        opened = [_action(kind), _action("end")]
        if role == "open":
            assert build_blocks(opened).by_start[0].end == 1, kind
        elif role == "continue":
            blocks = build_blocks([_action("if"), _action(kind), _action("end")])
            assert blocks.by_start[0].else_at == 1, kind
        elif role == "close":
            assert build_blocks([_action("repeat"), _action(kind)]).by_start[0].end == 1
        else:
            assert role is None
            with pytest.raises(BlockStructureError, match="without an open block"):
                build_blocks(opened)


def test_the_palette_is_json_that_reads_back() -> None:
    text = ACTION_PALETTE.model_dump_json()
    assert ActionPalette.model_validate_json(text) == ACTION_PALETTE
