from __future__ import annotations

import asyncio
import hashlib
import json
import stat
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from figranium_common.secretbox import SecretBox
from figranium_gateway import dispatch
from figranium_gateway.api_key import SUBKEY_PURPOSE, KeyHasher
from figranium_gateway.errors import ApiError, error_middleware
from figranium_gateway.execution_query import _limit
from figranium_gateway.request_input import read_json_object
from figranium_gateway.routes.runs import run_answer as _run_answer
from figranium_gateway.secret_file import write_secret_file
from figranium_gateway.throttle import AuthThrottle
from figranium_gateway.waiters import Waiters


def _hasher(master: bytes = b"m" * 32) -> KeyHasher:
    return KeyHasher(SecretBox(master).subkey(SUBKEY_PURPOSE))


def test_key_matching() -> None:
    hasher = _hasher()
    expected = hasher.digest("secret")
    assert expected.startswith("hmac-sha256:") and "secret" not in expected
    assert hasher.matches(expected, ["", "nope", "secret"])
    assert not hasher.matches(expected, [])
    assert not hasher.matches(expected, ["secre", "secret ", expected])
    # A key stored in clear by an earlier version still matches.
    assert hasher.matches(hasher.from_stored("secret"), ["secret"])
    assert hasher.from_stored(expected) == expected


def test_stored_key_digest_is_keyed_by_the_master_key() -> None:
    bare = hashlib.sha256(b"secret").hexdigest()
    expected = _hasher().digest("secret")
    # Not the bare SHA-256 a database dump could be searched against offline.
    assert bare not in expected
    # Another master key, another digest: the dump alone is not enough to test guesses.
    assert _hasher(b"n" * 32).digest("secret") != expected
    # The bare digest of an earlier version migrates to exactly the new digest of its key.
    assert _hasher().from_stored("sha256:" + bare) == expected


def test_secret_file_is_owner_only(tmp_path: Path) -> None:
    target = tmp_path / "data" / "api-key"
    target.parent.mkdir()
    target.write_text("left over")
    target.chmod(0o644)
    assert write_secret_file(target, "fig_abc") == target
    assert target.read_text() == "fig_abc\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_limit_parsing() -> None:
    assert _limit(None) == 50
    assert _limit("10") == 10
    for bad in ("0", "-1", "x", "100000"):
        with pytest.raises(ApiError):
            _limit(bad)


def test_run_answer_shapes() -> None:
    ok = _run_answer(
        {"id": "e1", "status": 200, "outcome": "success", "result": {"data": [1], "logs": []}}
    )
    assert ok.status == 200
    assert ok.body is not None
    assert json.loads(ok.body) == {
        "data": [1],
        "logs": [],
        "executionId": "e1",
        "runId": "e1",
        "outcome": "success",
        "success": True,
    }
    failed = _run_answer(
        {"id": "e2", "status": 422, "outcome": "error", "result": {"error": "boom"}}
    )
    assert failed.status == 422
    assert failed.body is not None
    body = json.loads(failed.body)
    assert body["error"] == "RUN_FAILED" and body["details"] == "boom"
    assert body["executionId"] == "e2"


async def test_error_middleware_never_leaks_tracebacks() -> None:
    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(await read_json_object(request))

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/boom", boom)
    app.router.add_post("/echo", echo)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/boom")
        assert response.status == 500
        body = await response.json()
        assert body["error"] == "INTERNAL_ERROR"
        assert "secret" not in json.dumps(body)
        response = await client.post("/echo", data=b"{oops")
        assert response.status == 400
        assert (await response.json())["error"] == "INVALID_JSON"
        response = await client.get("/missing")
        assert response.status == 404
        assert set(await response.json()) == {"error", "details"}


def test_auth_throttle_slows_then_locks_and_forgets() -> None:
    throttle = AuthThrottle(slow_after=2, lock_after=5, window_seconds=60, lockout_seconds=30)
    delays = [throttle.failed("a", now=float(t)) for t in range(4)]
    assert delays == [0.0, 0.0, 0.25, 0.5]
    assert throttle.retry_after("a", now=4) == 0
    assert throttle.failed("a", now=4) == 0.0  # the fifth failure locks the client out
    assert throttle.retry_after("a", now=4) == 30
    assert throttle.retry_after("a", now=33.5) == 1
    assert throttle.retry_after("a", now=34) == 0
    assert throttle.retry_after("b", now=4) == 0  # other clients are not affected
    # Failures older than the window no longer count.
    assert [throttle.failed("c", now=t) for t in (0.0, 1.0, 2.0)] == [0.0, 0.0, 0.25]
    assert throttle.failed("c", now=200.0) == 0.0


async def test_waiters_woken_for_their_execution_only() -> None:
    """The ingester wakes this replica's callers itself, without waiting for the notice,
    and hands them the outcome it stored; a notice from elsewhere only wakes them."""
    waiters = Waiters()
    outcome = {"id": "exec_1", "phase": "finished", "outcome": "success"}
    with waiters.waiting("exec_1") as mine, waiters.waiting("exec_2") as other:
        waiters.finished("exec_1", outcome)
        assert mine.done.is_set() and mine.outcome == outcome
        assert not other.done.is_set()
        waiters.finished("exec_2")
        assert other.done.is_set() and other.outcome is None
    waiters.finished("exec_1")  # nobody waits any more: nothing to do, nothing raised
    assert not waiters._waiting


async def test_a_sync_caller_handed_the_outcome_does_not_read_it_back() -> None:
    class NoDatabase:
        def connection(self) -> None:
            raise AssertionError("the outcome was read back")

    waiters = Waiters()
    outcome = {"id": "exec_1", "phase": "finished", "outcome": "success", "status": 200}
    with waiters.waiting("exec_1") as waiter:
        asyncio.get_running_loop().call_later(0.05, waiters.finished, "exec_1", outcome)
        answer = await dispatch.wait_finished(NoDatabase(), waiter, "exec_1", 5)  # type: ignore[arg-type]
    assert answer == outcome
