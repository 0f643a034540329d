"""Secure by default: a generated key on first start, and an explicit way to turn auth off."""

from __future__ import annotations

import json
import os

import httpx

from tests.integration.stack import Stack


def _generated_keys(log: str) -> list[str]:
    keys = []
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "auth.api_key_generated":
            keys.append(entry["api_key"])
    return keys


def test_first_start_generates_a_key_once(isolated: Stack) -> None:
    env = {k: v for k, v in isolated.env.items() if k != "FIGRANIUM_API_KEY"}
    isolated.env = env
    first, client = isolated.start_gateway()
    keys = _generated_keys(first.log_text())
    assert len(keys) == 1
    key = keys[0]
    assert len(key) >= 32
    assert client.get("/api/tasks").status_code == 401  # the test's key is not this one
    assert client.get("/api/tasks", headers={"x-api-key": key}).status_code == 200
    first.stop()

    second, client = isolated.start_gateway()
    assert _generated_keys(second.log_text()) == []
    assert client.get("/api/tasks", headers={"x-api-key": key}).status_code == 200


def test_auth_off_is_explicit_and_warned(isolated: Stack) -> None:
    gateway, client = isolated.start_gateway(FIGRANIUM_AUTH="off")
    anonymous = httpx.get(str(client.base_url) + "/api/tasks")
    assert anonymous.status_code == 200
    assert "auth.disabled" in gateway.log_text()
    assert os.environ.get("FIGRANIUM_AUTH") is None
