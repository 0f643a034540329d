"""How saved browser states are shown: values masked, each entry naming its task.

Cookies and local storage are credentials (a session cookie logs anyone in), so no route
answers their values: each shows ``SECRET_MASK`` in their place. Names, domains, paths,
expiry and flags stay, which is what choosing a cookie to delete needs.
"""

from __future__ import annotations

from typing import cast

from figranium_common.jsontypes import JsonMapping, JsonObject, JsonValue, StorageState
from figranium_common.redact import SECRET_MASK


def masked_cookies(state: StorageState, task_id: str) -> list[JsonObject]:
    out: list[JsonObject] = []
    for cookie in state.get("cookies") or []:
        # Playwright's cookie, with whatever fields it added: JSON either way.
        shown: JsonObject = {**cast(JsonMapping, cookie), "value": SECRET_MASK, "taskId": task_id}
        out.append(shown)
    return out


def masked_origins(state: StorageState, task_id: str) -> list[JsonObject]:
    out: list[JsonObject] = []
    for origin in state.get("origins") or []:
        entries: list[JsonValue] = [
            {"name": entry.get("name"), "value": SECRET_MASK}
            for entry in origin.get("localStorage") or []
        ]
        out.append({"origin": origin.get("origin"), "localStorage": entries, "taskId": task_id})
    return out


def masked_state(state: StorageState, task_id: str) -> JsonObject:
    return {
        "cookies": list[JsonValue](masked_cookies(state, task_id)),
        "origins": list[JsonValue](masked_origins(state, task_id)),
    }


def counts(state: StorageState) -> tuple[int, int]:
    return len(state.get("cookies") or []), len(state.get("origins") or [])
