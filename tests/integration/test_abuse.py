"""Abuse limits: wrong API keys are slowed, then refused for a while; large bodies get 413."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.stack import API_KEY, Stack

pytestmark = pytest.mark.stack  # every test here starts services of its own


def _as(client: httpx.Client, address: str, key: str) -> httpx.Response:
    return client.get("/api/tasks", headers={"x-api-key": key, "X-Forwarded-For": address})


def test_repeated_wrong_keys_lock_out_one_client_only(isolated: Stack) -> None:
    _, client = isolated.start_gateway(
        TRUST_FORWARDED_FOR="true",
        AUTH_SLOW_AFTER_FAILURES="2",
        AUTH_LOCKOUT_AFTER_FAILURES="5",
        AUTH_LOCKOUT_SECONDS="60",
    )
    attacker, neighbour = "203.0.113.7", "198.51.100.9"

    statuses = []
    started = time.monotonic()
    for attempt in range(4):
        statuses.append(_as(client, attacker, f"guess-{attempt}").status_code)
    slowed = time.monotonic() - started
    assert statuses == [401, 401, 401, 401]
    # Failures 3 and 4 were delayed (0.25 s and 0.5 s): the refusals got slower.
    assert slowed >= 0.7

    fifth = _as(client, attacker, "guess-5")
    assert fifth.status_code == 429
    assert fifth.json()["error"] == "TOO_MANY_FAILED_AUTHENTICATIONS"
    assert 0 < int(fifth.headers["Retry-After"]) <= 60
    # Locked out: even the right key is refused, or a right guess would stand out.
    assert _as(client, attacker, API_KEY).status_code == 429

    # Another client is unaffected, and health needs no key at all.
    assert _as(client, neighbour, API_KEY).status_code == 200
    assert _as(client, neighbour, "one-typo").status_code == 401
    assert _as(client, neighbour, API_KEY).status_code == 200
    assert client.get("/api/health", headers={"X-Forwarded-For": attacker}).status_code == 200


def test_body_over_the_limit_is_refused_and_changes_nothing(isolated: Stack) -> None:
    _, client = isolated.start_gateway(MAX_BODY_BYTES="65536")
    saved = client.post("/api/tasks", json={"id": "kept", "name": "kept", "url": "https://e.com"})
    assert saved.status_code == 200, saved.text

    big = {"id": "kept", "name": "x" * 70_000, "url": "https://e.com"}
    response = client.post("/api/tasks", json=big)
    assert response.status_code == 413
    assert response.json()["error"] == "PAYLOAD_TOO_LARGE"
    assert "65536" in response.json()["details"]

    assert client.get("/api/tasks/kept").json()["name"] == "kept"
    just_under = {"id": "kept", "name": "y" * 60_000, "url": "https://e.com"}
    assert client.post("/api/tasks", json=just_under).status_code == 200
