"""Block structure of a task's actions: ``if``/``else``/``end`` and the loops.

Checked when a task is saved (the gateway answers 400 with the action's index) and again
by the runner before it starts, so an unbalanced task never half-runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from figranium_common.action_models import Action
from figranium_common.errors import FigraniumError

OPENERS = frozenset({"if", "while", "repeat", "foreach", "on_error"})


class BlockStructureError(FigraniumError):
    code = "INVALID_BLOCKS"

    def __init__(self, index: int, kind: str, problem: str) -> None:
        super().__init__(f"action {index + 1} ({kind}): {problem}")
        self.index = index


@dataclass
class Block:
    start: int
    end: int = -1
    else_at: int | None = None


@dataclass
class BlockMap:
    by_start: dict[int, Block] = field(default_factory=dict)
    by_marker: dict[int, Block] = field(default_factory=dict)  # else/end index → its block


def build_blocks(actions: list[Action]) -> BlockMap:
    """Match every opener with its ``end`` (and an ``if`` with its ``else``), or raise."""
    blocks = BlockMap()
    stack: list[Block] = []
    for index, action in enumerate(actions):
        kind = action.type
        if kind in OPENERS:
            block = Block(start=index)
            blocks.by_start[index] = block
            stack.append(block)
        elif kind == "else":
            if not stack or actions[stack[-1].start].type != "if":
                raise BlockStructureError(index, kind, "'else' without an open 'if'")
            if stack[-1].else_at is not None:
                raise BlockStructureError(index, kind, "a second 'else' for the same 'if'")
            stack[-1].else_at = index
            blocks.by_marker[index] = stack[-1]
        elif kind == "end":
            if not stack:
                raise BlockStructureError(index, kind, "'end' without an open block")
            block = stack.pop()
            block.end = index
            blocks.by_marker[index] = block
    if stack:
        block = stack[-1]
        raise BlockStructureError(
            block.start, actions[block.start].type, "block is never closed with 'end'"
        )
    return blocks
