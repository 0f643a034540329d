"""Replacing cabinet items by the archive or folder made of them: one transaction, or
nothing changed."""

from __future__ import annotations

import pytest

from figranium_common import db
from figranium_common.cabinet_models import item_object
from figranium_gateway.store import cabinets
from figranium_gateway.store.cabinet_archives import (
    ItemsChanged,
    OverQuota,
    items_in,
    replace_items,
)
from figranium_gateway.store.cabinets import NewItem, Quotas

ROOMY = Quotas(cabinet=10**9, total=10**9)


async def _file(pool: db.Pool, cabinet_id: str, name: str, size: int) -> str:
    item_id = cabinets.new_item_id()
    async with pool.connection() as conn, conn.transaction():
        await cabinets.lock_cabinet(conn, cabinet_id)
        new = NewItem(item_id, cabinet_id, name, "file", size, object=item_object(item_id))
        await cabinets.insert_item(conn, new)
    return item_id


async def _cabinet(pool: db.Pool) -> str:
    created = await cabinets.create_cabinet(pool, f"Store {cabinets.new_cabinet_id()}")
    return str(created["id"])


def _archive(cabinet_id: str, name: str, size: int) -> NewItem:
    item_id = cabinets.new_item_id()
    return NewItem(item_id, cabinet_id, name, "file", size, object=item_object(item_id))


async def _names(pool: db.Pool, cabinet_id: str) -> set[str]:
    listed = await cabinets.list_items(pool, cabinet_id)
    assert listed is not None
    return {str(item["name"]) for item in listed}


async def test_replace_swaps_rows_and_answers_the_old_objects(pool: db.Pool) -> None:
    cabinet_id = await _cabinet(pool)
    a, b = await _file(pool, cabinet_id, "a.csv", 10), await _file(pool, cabinet_id, "b.csv", 20)
    await _file(pool, cabinet_id, "a.zip", 5)
    replaced = await replace_items(pool, [a, b], _archive(cabinet_id, "a.zip", 25), ROOMY)
    assert replaced.row["name"] == "a (2).zip"
    assert sorted(replaced.doomed) == sorted([item_object(a), item_object(b)])
    assert await _names(pool, cabinet_id) == {"a.zip", "a (2).zip"}


async def test_an_item_gone_meanwhile_changes_nothing(pool: db.Pool) -> None:
    cabinet_id = await _cabinet(pool)
    a = await _file(pool, cabinet_id, "a.csv", 10)
    with pytest.raises(ItemsChanged):
        await replace_items(pool, [a, "item_gone"], _archive(cabinet_id, "x.zip", 5), ROOMY)
    assert await _names(pool, cabinet_id) == {"a.csv"}


@pytest.mark.parametrize(
    ("quotas", "setting"),
    [(Quotas(cabinet=100, total=10**9), "CABINET_MAX_BYTES"), (Quotas(10**9, 1), "TOTAL")],
)
async def test_a_result_over_a_quota_changes_nothing(
    pool: db.Pool, quotas: Quotas, setting: str
) -> None:
    cabinet_id = await _cabinet(pool)
    await _file(pool, cabinet_id, "other.bin", 60)
    a = await _file(pool, cabinet_id, "a.csv", 30)
    # Without a.csv the cabinet holds 60 bytes: a 41-byte result passes 100.
    with pytest.raises(OverQuota, match=setting):
        await replace_items(pool, [a], _archive(cabinet_id, "a.zip", 41), quotas)
    assert await _names(pool, cabinet_id) == {"other.bin", "a.csv"}
    fits = await replace_items(pool, [a], _archive(cabinet_id, "a.zip", 40), Quotas(100, 10**9))
    assert fits.row["name"] == "a.zip"


async def test_items_in_answers_the_cabinet_s_items_oldest_first(pool: db.Pool) -> None:
    cabinet_id, other = await _cabinet(pool), await _cabinet(pool)
    first = await _file(pool, cabinet_id, "1.txt", 1)
    second = await _file(pool, cabinet_id, "2.txt", 1)
    elsewhere = await _file(pool, other, "3.txt", 1)
    rows = await items_in(pool, cabinet_id, [second, elsewhere, first])
    assert rows is not None and [row["id"] for row in rows] == [first, second]
    assert await items_in(pool, "cab_00000000000000000000", [first]) is None
