"""docs/tasks.md's table of actions names every action type and the fields each requires."""

from __future__ import annotations

import re
from pathlib import Path

from figranium_common.action_models import ACTION_MODELS

TASKS_DOC = Path(__file__).resolve().parents[3] / "docs" / "tasks.md"
COMMON = {"type", "id", "disabled", "timeout"}


def _rows() -> dict[str, str]:
    """Each documented action type → the fields cell of its row."""
    section = TASKS_DOC.read_text(encoding="utf-8").split("## Actions", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        for name in re.findall(r"`([a-z_]+)`", cells[0]):
            rows[name] = cells[1]
    return rows


def test_every_action_type_is_documented_and_nothing_else() -> None:
    assert set(_rows()) == set(ACTION_MODELS)


def test_the_fields_a_type_requires_are_documented_as_required() -> None:
    rows = _rows()
    for name, model in ACTION_MODELS.items():
        required = {
            field for field, info in model.model_fields.items() if info.is_required()
        } - COMMON
        for field in required:
            assert f"`{field}`" in rows[name], f"{name}: required field {field} not listed"
            assert f"`{field}?`" not in rows[name], f"{name}: {field} is required"
