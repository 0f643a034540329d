"""``stack.json`` in the data folder: every process of `make run` with its role, name, pid and
main port, kept current as processes (re)start. Tools and fault tests find processes only
through it, so it is replaced whole (written beside, then renamed): a reader never sees half
of it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TypedDict

STACK_FILE = "stack.json"


class StackEntry(TypedDict):
    """One running process. ``port``: its main port (NATS: the client port; a runner or
    scheduler: its metrics port), None when it has none."""

    role: str
    name: str
    pid: int
    port: int | None


def write_stack(path: Path, entries: list[StackEntry]) -> None:
    """Replace ``path`` with ``entries`` atomically."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps({"processes": entries}, indent=2) + "\n")
    temporary.replace(path)


def read_stack(path: Path) -> list[StackEntry]:
    """The entries of ``path`` (what :func:`write_stack` wrote)."""
    processes: list[StackEntry] = json.loads(path.read_text())["processes"]
    return processes
