"""SQL for the ``credentials`` table, and the one place its tokens are sealed and opened.

A row's ``config`` is ``{"baseUrl": "...", "token": "enc:v1:..."}``: the token is sealed
with the credential's own purpose (``queue.credential_purpose``), so it cannot be opened
as anything else, and nothing outside this module ever handles the sealed form.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from figranium_common.db import Pool
from figranium_common.queue import credential_purpose
from figranium_common.secretbox import SecretBox


@dataclass(frozen=True)
class Credential:
    """A stored credential; ``sealed_token`` stays sealed until ``open_token``."""

    id: str
    name: str
    provider: str
    base_url: str
    sealed_token: str

    @property
    def has_token(self) -> bool:
        return bool(self.sealed_token)

    def open_token(self, box: SecretBox) -> str:
        """The token in clear; raises SecretError when the master key cannot open it."""
        if not self.sealed_token:
            return ""
        return box.open(self.sealed_token, credential_purpose(self.id))


def _credential(row: DictRow) -> Credential:
    config = row["config"] if isinstance(row["config"], dict) else {}
    return Credential(
        id=row["id"],
        name=row["name"],
        provider=row["provider"],
        base_url=str(config.get("baseUrl") or ""),
        sealed_token=str(config.get("token") or ""),
    )


def _sealed(box: SecretBox, credential_id: str, token: str) -> str:
    return box.seal(token, credential_purpose(credential_id))


_COLUMNS = "id, name, provider, config"


async def list_credentials(pool: Pool) -> list[Credential]:
    async with pool.connection() as conn:
        cur = await conn.execute(f"SELECT {_COLUMNS} FROM credentials ORDER BY created_at, id")
        return [_credential(row) for row in await cur.fetchall()]


async def get_credential(pool: Pool, credential_id: str) -> Credential | None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM credentials WHERE id = %s", (credential_id,)
        )
        row = await cur.fetchone()
        return None if row is None else _credential(row)


async def insert_credential(
    pool: Pool,
    box: SecretBox,
    *,
    credential_id: str,
    name: str,
    provider: str,
    base_url: str,
    token: str,
) -> Credential:
    config = {"baseUrl": base_url, "token": _sealed(box, credential_id, token)}
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO credentials (id, name, provider, config) VALUES (%s, %s, %s, %s)"
            f" RETURNING {_COLUMNS}",
            (credential_id, name, provider, Jsonb(config)),
        )
        row = await cur.fetchone()
        assert row is not None
        return _credential(row)


async def update_credential(
    pool: Pool,
    box: SecretBox,
    credential_id: str,
    *,
    name: str | None = None,
    base_url: str | None = None,
    token: str | None = None,
) -> Credential | None:
    """Change the given fields (None: keep); None when there is no such credential.

    The config is merged in SQL, so the stored token is kept without ever being opened.
    """
    patch: dict[str, str] = {}
    if base_url is not None:
        patch["baseUrl"] = base_url
    if token is not None:
        patch["token"] = _sealed(box, credential_id, token)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE credentials SET name = COALESCE(%s, name), config = config || %s,"
            f" updated_at = now() WHERE id = %s RETURNING {_COLUMNS}",
            (name, Jsonb(patch), credential_id),
        )
        row = await cur.fetchone()
        return None if row is None else _credential(row)


async def delete_credential(pool: Pool, credential_id: str) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute("DELETE FROM credentials WHERE id = %s", (credential_id,))
        return bool(cur.rowcount == 1)
