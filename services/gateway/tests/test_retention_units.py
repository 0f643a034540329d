from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nats.js.api import ObjectInfo

from figranium_common.changelog import CHANGES_LOCK_ID
from figranium_common.db import MIGRATION_LOCK_ID
from figranium_gateway.retention import RETENTION_LOCK_ID, doomed_captures, owner, parse_mtime


def _info(name: str, mtime: str | None = None, *, deleted: bool = False) -> ObjectInfo:
    return ObjectInfo(name=name, bucket="captures", nuid="n", mtime=mtime, deleted=deleted)


def test_owner_is_the_longest_prefix() -> None:
    ids = {"nightly", "nightly_2", "exec_1_ab"}
    assert owner("nightly_agent_1.png", ids) == "nightly"
    assert owner("nightly_2_agent_1.png", ids) == "nightly_2"
    assert owner("exec_1_ab_agent_5_x.png", ids) == "exec_1_ab"
    assert owner("exec_1_agent_5.png", ids) is None
    assert owner("nightly", ids) is None  # a prefix needs the "_" after it


def test_mtime_parsing() -> None:
    assert parse_mtime("2024-05-01T12:00:00.123456789Z") == datetime(
        2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC
    )
    assert parse_mtime("2024-05-01T12:00:00") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert parse_mtime("") is None
    assert parse_mtime(None) is None
    assert parse_mtime("yesterday") is None


def test_doomed_captures() -> None:
    now = datetime.now(UTC)
    old = (now - timedelta(days=10)).isoformat()
    fresh = now.isoformat()
    objects = [
        _info("gone_agent_1.png", fresh),
        _info("gone_2_agent_1.png", fresh),  # a kept execution that extends "gone"
        _info("stays_agent_1.png", fresh),
        _info("stays_agent_0.png", old),  # too old, whoever owns it
        _info("orphan.png", None),
        _info("gone_agent_2.png", fresh, deleted=True),
    ]
    names = doomed_captures(
        objects, deleted_ids={"gone"}, kept_ids={"gone_2"}, older_than=now - timedelta(days=7)
    )
    assert names == ["gone_agent_1.png", "stays_agent_0.png"]
    assert doomed_captures(objects, deleted_ids=set()) == []


def test_a_retention_round_does_not_hold_the_change_log_lock() -> None:
    """Every change-writing commit takes the change log's lock; a round holds its own."""
    assert len({RETENTION_LOCK_ID, CHANGES_LOCK_ID, MIGRATION_LOCK_ID}) == 3
