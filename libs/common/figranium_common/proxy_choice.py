"""Which saved proxy a run goes through, chosen when the run is dispatched.

Figranium's rules: the choices are the host itself ("no proxy", id ``host``) and the saved
proxies; one of them is the default (the host unless a proxy is marked ``default``). A task
without ``rotateProxies`` goes through the default. A task with it rotates through the
choices, the default left out unless ``includeDefaultInRotation``, in turn
(``round-robin``) or at random (``random``); when nothing is left to rotate through, the
default is used.

The turn is a counter in the ``settings`` table, advanced by one atomic statement on the
caller's connection, so every gateway replica and the scheduler (inside its claim
transaction) share one rotation. The run request carries the chosen proxy only, or none.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import ValidationError

from figranium_common.db import Connection
from figranium_common.jsontypes import JsonObject, JsonValue
from figranium_common.models import ProxyConfig, Task
from figranium_common.runs import PROXIES_SETTING
from figranium_common.secretbox import SecretBox

PROXY_PASSWORD = "proxy-password"
ROTATION_SETTING = "proxy_rotation"
TURN_SETTING = "proxy_rotation_turn"
HOST_ID = "host"

RotationMode = Literal["round-robin", "random"]
ROTATION_MODES: tuple[RotationMode, ...] = get_args(RotationMode)

# The next turn, 1 for the first; a value that is not a number starts the count again.
_NEXT_TURN = (
    "INSERT INTO settings (key, value) VALUES (%s, '1'::jsonb) ON CONFLICT (key) DO UPDATE"
    " SET value = to_jsonb(CASE WHEN jsonb_typeof(settings.value) = 'number'"
    " THEN (settings.value #>> '{}')::bigint + 1 ELSE 1 END), updated_at = now()"
    " RETURNING (value #>> '{}')::bigint AS turn"
)
_RANDOM = random.SystemRandom()


@dataclass(frozen=True)
class Rotation:
    """How tasks with ``rotateProxies`` rotate (the ``proxy_rotation`` setting)."""

    include_default: bool = False
    mode: RotationMode = "round-robin"

    @classmethod
    def from_stored(cls, stored: JsonValue) -> Rotation:
        if not isinstance(stored, dict):
            return cls()
        mode = stored.get("rotationMode")
        return cls(
            include_default=stored.get("includeDefaultInRotation") is True,
            mode="random" if mode == "random" else "round-robin",
        )

    def stored(self) -> JsonObject:
        return {"includeDefaultInRotation": self.include_default, "rotationMode": self.mode}


@dataclass(frozen=True)
class Saved:
    """One usable saved proxy (password still sealed) and whether it is the default."""

    proxy: ProxyConfig
    default: bool


def saved_proxies(stored: JsonValue) -> list[Saved]:
    """The usable entries of the ``proxies`` setting, in their saved order."""
    if not isinstance(stored, list):
        return []
    saved = []
    for entry in stored:
        try:
            proxy = ProxyConfig.model_validate(entry)
        except ValidationError:
            continue  # checked when proxies are saved; an odd old entry is just not used
        saved.append(Saved(proxy, isinstance(entry, dict) and entry.get("default") is True))
    return saved


def rotation_pool(saved: list[Saved], include_default: bool) -> list[ProxyConfig | None]:
    """What a rotating task rotates through, in order; None stands for the host."""
    pool: list[Saved | None] = [None, *saved]
    if not include_default:
        default = next((entry for entry in saved if entry.default), None)
        pool.remove(default)  # the host when no proxy is the default
    return [None if entry is None else entry.proxy for entry in pool]


async def next_turn(conn: Connection) -> int:
    """Advance the shared round-robin counter; returns the new turn (1, 2, 3…)."""
    cur = await conn.execute(_NEXT_TURN, (TURN_SETTING,))
    row = await cur.fetchone()
    assert row is not None  # an upsert with RETURNING always answers one row
    return int(row["turn"])


async def choose_proxy(conn: Connection, box: SecretBox, task: Task) -> list[ProxyConfig]:
    """The proxy ``task``'s run goes through, password opened: one, or none for the host."""
    cur = await conn.execute(
        "SELECT key, value FROM settings WHERE key = ANY(%s)",
        ([PROXIES_SETTING, ROTATION_SETTING],),
    )
    values = {row["key"]: row["value"] for row in await cur.fetchall()}
    saved = saved_proxies(values.get(PROXIES_SETTING))
    chosen = next((entry.proxy for entry in saved if entry.default), None)
    if task.rotateProxies:
        rotation = Rotation.from_stored(values.get(ROTATION_SETTING))
        pool = rotation_pool(saved, rotation.include_default)
        if len(pool) == 1:
            chosen = pool[0]
        elif pool and rotation.mode == "random":
            chosen = _RANDOM.choice(pool)
        elif pool:
            chosen = pool[(await next_turn(conn) - 1) % len(pool)]
    if chosen is None:
        return []
    opened = chosen.model_copy()
    if opened.password:
        opened.password = box.open(opened.password, PROXY_PASSWORD)
    return [opened]
