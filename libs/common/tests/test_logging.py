"""Every line a service writes when not on a terminal is one JSON object."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import structlog

from figranium_common.redact import SECRET_MASK


def test_library_and_structlog_lines_are_json_with_the_same_keys(
    json_log: Callable[[], list[dict[str, Any]]],
) -> None:
    structlog.get_logger("t").warning("run.started", execution_id="e1")
    logging.getLogger("aiohttp.access").warning("GET %s %d", "/api/health", 200)
    logging.getLogger("psycopg.pool").info("below the warning level: not shown")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")

    ours, access, failure = json_log()
    common = {"timestamp", "level", "event", "service"}
    assert common <= ours.keys() and common <= access.keys() and common <= failure.keys()
    assert ours["event"] == "run.started" and ours["execution_id"] == "e1"
    assert access == {**access, "event": "GET /api/health 200", "level": "warning"}
    assert access["logger"] == "aiohttp.access" and access["service"] == "tests"
    assert failure["level"] == "error" and "RuntimeError: boom" in failure["exception"]


def test_library_lines_never_show_url_passwords(
    json_log: Callable[[], list[dict[str, Any]]],
) -> None:
    logging.getLogger("nats").warning("reconnecting to nats://runner:s3cret@127.0.0.1:4222")
    (line,) = json_log()
    assert line["event"] == f"reconnecting to nats://{SECRET_MASK}@127.0.0.1:4222"
