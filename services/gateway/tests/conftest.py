"""A PostgreSQL per test module, for the gateway's tests against a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from figranium_common import db
from figranium_devstack.ports import free_port
from figranium_devstack.postgres import LocalPostgres


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    with LocalPostgres(tmp_path_factory.mktemp("pg") / "pg", free_port(), fast=True) as server:
        yield server


@pytest.fixture
async def pool(postgres: LocalPostgres) -> AsyncIterator[db.Pool]:
    """A small pool on the module's database, its migrations applied."""
    async with await db.open_pool(postgres.url, max_size=2) as opened:
        await db.apply_migrations(opened)
        yield opened
