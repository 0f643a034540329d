"""Settings routes: the API key across replicas, selector finder, headful status
(proxies: test_proxy_routes.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from figranium_devstack.postgres import LocalPostgres
from tests.integration.stack import Stack, own_stack

CHOSEN = "chosen-key-0123456789abcdef"


def _status(client: httpx.Client, key: str) -> int:
    return client.get("/api/tasks", headers={"x-api-key": key}).status_code


def _eventually(check: object, timeout: float) -> float:
    """Seconds until ``check()`` held; fails after ``timeout``."""
    started = time.monotonic()
    while not check():  # type: ignore[operator]
        if time.monotonic() - started > timeout:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def replica_pair(
    tmp_path_factory: pytest.TempPathFactory, postgres: LocalPostgres
) -> Iterator[tuple[Stack, httpx.Client, httpx.Client]]:
    """Two gateways of their own with a stored (not environment) key, for the module."""
    with own_stack(tmp_path_factory.mktemp("replicas"), postgres) as stack:
        del stack.env["FIGRANIUM_API_KEY"]
        _, a = stack.start_gateway()
        _, b = stack.start_gateway()
        for client in (a, b):
            client.headers.pop("x-api-key")
        yield stack, a, b


@pytest.fixture
def replicas(
    replica_pair: tuple[Stack, httpx.Client, httpx.Client],
) -> tuple[Stack, httpx.Client, httpx.Client, str]:
    """The pair, and a key stored afresh that both accept (a test before may have changed
    the key): written to the table, each replica finds it within its 2 s re-read."""
    stack, a, b = replica_pair
    key = f"fresh-{uuid.uuid4().hex}"
    with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("UPDATE settings SET value = to_jsonb(%s::text) WHERE key = 'api_key'", (key,))
    _eventually(lambda: _status(a, key) == 200 and _status(b, key) == 200, timeout=20)
    return stack, a, b, key


@pytest.mark.stack
def test_new_key_replaces_the_old_one_on_every_replica(
    replicas: tuple[Stack, httpx.Client, httpx.Client, str],
) -> None:
    _, a, b, old = replicas
    assert _status(a, old) == 200 and _status(b, old) == 200

    response = a.post(
        "/api/settings/api-key", headers={"x-api-key": old}, json={"apiKey": f"  {CHOSEN}  "}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"apiKey": CHOSEN}
    assert _status(a, old) == 401  # the replica that changed it: at once
    assert _status(a, CHOSEN) == 200
    # The other replica hears the NATS notice; well within the 2 s fallback.
    assert _eventually(lambda: _status(b, old) == 401, timeout=1.5) < 1.5
    assert _status(b, CHOSEN) == 200

    # {} generates one.
    generated = b.post("/api/settings/api-key", headers={"x-api-key": CHOSEN}, json={})
    assert generated.status_code == 200, generated.text
    new = generated.json()["apiKey"]
    assert new.startswith("fig_") and len(new) > 32
    _eventually(lambda: _status(a, new) == 200 and _status(a, CHOSEN) == 401, 3)


@pytest.mark.stack
def test_replicas_agree_without_a_notice(
    replicas: tuple[Stack, httpx.Client, httpx.Client, str],
) -> None:
    stack, a, b, old = replicas
    # Changed behind the gateways' backs (no notice at all): the 2 s re-read must find it.
    with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("UPDATE settings SET value = '\"db-key\"' WHERE key = 'api_key'")
    for client in (a, b):
        waited = _eventually(lambda c=client: _status(c, old) == 401, timeout=4)
        assert waited < 3
        assert _status(client, "db-key") == 200


@pytest.mark.stack
def test_body_key_rules(replicas: tuple[Stack, httpx.Client, httpx.Client, str]) -> None:
    _, a, _, old = replicas
    too_long = a.post(
        "/api/settings/api-key", headers={"x-api-key": old}, json={"apiKey": "k" * 513}
    )
    assert too_long.status_code == 400
    assert too_long.json()["error"] == "API_KEY_TOO_LONG"
    for bad in ({"apiKey": 5}, {"apiKey": "has space"}, {"apiKey": "tab\tkey"}):
        response = a.post("/api/settings/api-key", headers={"x-api-key": old}, json=bad)
        assert response.status_code == 400, bad
        assert "apiKey" in response.json()["details"]
    assert _status(a, old) == 200  # refusals changed nothing

    # Authenticated by the body's apiKey: that is the credential, so a new key is generated.
    by_body = a.post("/api/settings/api-key", json={"apiKey": old})
    assert by_body.status_code == 200, by_body.text
    new = by_body.json()["apiKey"]
    assert new != old and new.startswith("fig_")
    assert _status(a, old) == 401 and _status(a, new) == 200

    # Set through the API, a key has at least 24 characters (one from the environment
    # may be shorter, with a warning at start).
    short = a.post("/api/settings/api-key", headers={"x-api-key": new}, json={"apiKey": "k" * 23})
    assert short.status_code == 400
    assert short.json()["error"] == "API_KEY_TOO_SHORT" and "24" in short.json()["details"]
    assert _status(a, new) == 200
    shortest = "k" * 24
    ok = a.post("/api/settings/api-key", headers={"x-api-key": new}, json={"apiKey": shortest})
    assert ok.json() == {"apiKey": shortest}
    new = shortest

    # Exactly 512 characters is accepted.
    longest = "k" * 512
    ok = a.post("/api/settings/api-key", headers={"x-api-key": new}, json={"apiKey": longest})
    assert ok.json() == {"apiKey": longest}
    assert a.post("/api/settings/api-key", json={}).status_code == 401  # no key, no change


def test_environment_key_wins(api: httpx.Client, stack: tuple[Stack, httpx.Client]) -> None:
    # The test stacks' FIGRANIUM_API_KEY is shorter than 24 characters: it still works,
    # with a warning at start.
    assert "auth.api_key_short" in stack[0].services[0].log_text()
    response = api.post("/api/settings/api-key", json={"apiKey": "other"})
    assert response.status_code == 409
    assert response.json()["error"] == "API_KEY_FROM_ENVIRONMENT"
    assert "FIGRANIUM_API_KEY" in response.json()["details"]
    assert api.get("/api/tasks").status_code == 200


@pytest.mark.stack
def test_key_can_be_set_while_auth_is_off(isolated: Stack) -> None:
    isolated.env = {k: v for k, v in isolated.env.items() if k != "FIGRANIUM_API_KEY"}
    _, client = isolated.start_gateway(FIGRANIUM_AUTH="off")
    response = client.post("/api/settings/api-key", json={"apiKey": "stored-for-later-0123456789"})
    assert response.status_code == 200, response.text
    assert response.json() == {"apiKey": "stored-for-later-0123456789"}
    assert httpx.get(f"{client.base_url}/api/tasks").status_code == 200  # still off
    with psycopg.connect(isolated.env["DATABASE_URL"]) as conn:
        row = conn.execute("SELECT value FROM settings WHERE key = 'api_key'").fetchone()
    # Only a digest keyed by the master key is stored: a database dump does not reveal the
    # key, nor allow guesses to be tested offline.
    assert row is not None and row[0].startswith("hmac-sha256:")
    assert "stored-for-later" not in row[0]


@pytest.fixture
def clean_settings(stack: tuple[Stack, httpx.Client]) -> Iterator[None]:
    def clean() -> None:
        with psycopg.connect(stack[0].env["DATABASE_URL"], autocommit=True) as conn:
            conn.execute("DELETE FROM settings WHERE key IN ('proxies', 'selector_finder')")

    clean()
    yield
    clean()


def test_selector_finder(api: httpx.Client, clean_settings: None) -> None:
    path = "/api/settings/selector-finder"
    assert api.get(path).json() == {"selectorFinder": "highlight"}
    assert api.post(path, json={"selectorFinder": "ai"}).json() == {"selectorFinder": "ai"}
    assert api.get(path).json() == {"selectorFinder": "ai"}
    # The field's earlier name is still read.
    assert api.post(path, json={"mode": "highlight"}).json() == {"selectorFinder": "highlight"}
    assert api.get(path).json() == {"selectorFinder": "highlight"}
    for bad, code, field in (
        ({"selectorFinder": "magic"}, "INVALID_BODY", "selectorFinder"),
        ({"mode": "magic"}, "INVALID_BODY", "mode"),
        ({"selectorFinder": ["ai"]}, "INVALID_BODY", "selectorFinder"),
        ({}, "MISSING_FIELDS", "selectorFinder"),
        ({"selectorFinder": None}, "MISSING_FIELDS", "selectorFinder"),
    ):
        response = api.post(path, json=bad)
        assert response.status_code == 400, bad
        assert response.json()["error"] == code, bad
        assert field in response.json()["details"]
    assert api.get(path).json() == {"selectorFinder": "highlight"}


def test_headful_status(api: httpx.Client) -> None:
    """No headful runner on the shared stack (tests/integration/test_headful.py has one)."""
    assert api.get("/api/headful/status").json() == {
        "useNovnc": False,
        "novncPort": None,
        "isRunning": False,
        "executionId": None,
        "runners": [],
    }
