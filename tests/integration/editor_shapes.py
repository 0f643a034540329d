"""Tasks and actions in the shapes Figranium's own editor saves them.

A new task is what its ``buildNewTask`` (src/utils/taskUtils.ts) makes, saved with
``last_opened``; a new action is what its ``addActionByType`` (src/components/
EditorScreen.tsx) adds before the user fills anything in: ``selector`` and ``value``
already there as "", plus the defaults of some types. Tests build on these to save what
Figranium's users' editors wrote.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

STEALTH_OPTIONS = (
    "allowTypos",
    "idleMovements",
    "overscroll",
    "deadClicks",
    "fatigue",
    "naturalTyping",
    "cursorGlide",
    "randomizeClicks",
)

_sequence = itertools.count()


def editor_task(name: str, url: str, *, stealth: bool = False, **fields: Any) -> dict[str, Any]:
    """A task as the editor saves a new one (no ``id``: the server gives it one), with
    every ``stealth`` option set to ``stealth``; ``fields`` are added or replace these."""
    return {
        "name": name,
        "url": url,
        "mode": "agent",
        "wait": 0,
        "selector": "",
        "rotateUserAgents": False,
        "rotateProxies": False,
        "rotateViewport": False,
        "humanTyping": False,
        "stealth": dict.fromkeys(STEALTH_OPTIONS, stealth),
        "actions": [],
        "variables": {},
        "extractionFormat": "json",
        "includeHtml": False,
        "includeShadowDom": True,
        "disableRecording": False,
        "statelessExecution": False,
        "translation": {"enabled": False, "targetLanguage": "english"},
        "downloadCabinetId": "cab_basic",
        "last_opened": int(time.time() * 1000),
        **fields,
    }


def editor_action(kind: str, **fields: Any) -> dict[str, Any]:
    """An action of type ``kind`` as the editor adds it, then configured with ``fields``."""
    action: dict[str, Any] = {
        "id": f"act_{int(time.time() * 1000)}_{next(_sequence)}",
        "type": kind,
        "selector": "",
        "value": "",
    }
    if kind in ("set", "merge"):
        action["varName"] = ""
    if kind == "type":
        action["typeMode"] = "replace"
    if kind in ("if", "while"):
        action.update(conditionVar="", conditionVarType="string", conditionOp="equals")
        action["conditionValue"] = ""
    if kind == "wait_downloads":
        action["value"] = "30"
    return {**action, **fields}
