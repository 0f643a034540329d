"""Secure by default: a generated key on first start, and an explicit way to turn auth off."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.integration.stack import Stack

pytestmark = pytest.mark.stack  # every test here starts services of its own


def _generated(log: str, event: str) -> list[dict[str, str]]:
    entries = []
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == event:
            entries.append(entry)
    return entries


def read_secret_file(path: Path) -> str:
    """A generated secret, from the 0600 file the gateway wrote it to."""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return path.read_text().strip()


def test_first_start_generates_a_key_once(isolated: Stack) -> None:
    env = {k: v for k, v in isolated.env.items() if k != "FIGRANIUM_API_KEY"}
    isolated.env = env
    first, client = isolated.start_gateway()
    (announced,) = _generated(first.log_text(), "auth.api_key_generated")
    key_file = Path(env["FIGRANIUM_DATA_DIR"]) / "api-key"
    assert Path(announced["path"]) == key_file.absolute()
    key = read_secret_file(key_file)
    assert len(key) >= 32
    first.wait_for_log("webhooks.secret_generated")
    webhook_secret = read_secret_file(Path(env["FIGRANIUM_DATA_DIR"]) / "webhook-secret")
    assert webhook_secret.startswith("whsec_")
    # Only the paths are logged, never the secrets themselves.
    assert key not in first.log_text() and webhook_secret not in first.log_text()
    assert client.get("/api/tasks").status_code == 401  # the test's key is not this one
    assert client.get("/api/tasks", headers={"x-api-key": key}).status_code == 200
    first.stop()

    second, client = isolated.start_gateway()
    assert _generated(second.log_text(), "auth.api_key_generated") == []
    assert client.get("/api/tasks", headers={"x-api-key": key}).status_code == 200


def test_a_bare_sha256_key_digest_is_migrated_on_start(isolated: Stack) -> None:
    """A row written by an earlier version (``sha256:<hex>``) is re-keyed under the master
    key on the first start, and the key it was made from keeps working."""
    isolated.env = {k: v for k, v in isolated.env.items() if k != "FIGRANIUM_API_KEY"}
    old_key = "an-old-key-stored-before-0123"
    old_digest = "sha256:" + hashlib.sha256(old_key.encode()).hexdigest()
    first, _ = isolated.start_gateway()  # creates the schema (and a key, replaced below)
    first.stop()
    with psycopg.connect(isolated.env["DATABASE_URL"]) as conn:
        conn.execute(
            "UPDATE settings SET value = to_jsonb(%s::text) WHERE key = 'api_key'", (old_digest,)
        )

    second, client = isolated.start_gateway()
    client.headers.pop("x-api-key")
    assert client.get("/api/tasks", headers={"x-api-key": old_key}).status_code == 200
    assert client.get("/api/tasks", headers={"x-api-key": old_key + "x"}).status_code == 401
    assert _generated(second.log_text(), "auth.api_key_digest_migrated")
    with psycopg.connect(isolated.env["DATABASE_URL"]) as conn:
        row = conn.execute("SELECT value FROM settings WHERE key = 'api_key'").fetchone()
    assert row is not None
    stored = row[0]
    assert stored.startswith("hmac-sha256:")
    assert old_digest[len("sha256:") :] not in stored  # the bare digest is gone
    second.stop()

    # Once migrated, later starts leave it alone and the key still opens the API.
    third, client = isolated.start_gateway()
    assert _generated(third.log_text(), "auth.api_key_digest_migrated") == []
    assert client.get("/api/tasks", headers={"x-api-key": old_key}).status_code == 200


def test_auth_off_is_explicit_and_warned(isolated: Stack) -> None:
    gateway, client = isolated.start_gateway(FIGRANIUM_AUTH="off")
    anonymous = httpx.get(str(client.base_url) + "/api/tasks")
    assert anonymous.status_code == 200
    assert "auth.disabled" in gateway.log_text()
    assert os.environ.get("FIGRANIUM_AUTH") is None
