"""Every authentication form Figranium clients use is accepted; anything else is refused."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.stack import API_KEY
from tests.integration.test_bad_input import assert_error


@pytest.fixture
def anonymous(api: httpx.Client) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=str(api.base_url), timeout=30) as client:
        yield client


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"x-api-key": API_KEY}, None),
        ({"key": API_KEY}, None),
        ({"Authorization": f"Bearer {API_KEY}"}, None),
        ({"authorization": f"bearer {API_KEY}"}, None),
        ({}, {"apiKey": API_KEY}),
        ({}, {"key": API_KEY}),
    ],
    ids=["x-api-key", "key-header", "bearer", "bearer-lowercase", "body-apiKey", "body-key"],
)
def test_every_auth_form_is_accepted(
    anonymous: httpx.Client, headers: dict[str, str], body: dict[str, str] | None
) -> None:
    if body is None:
        response = anonymous.get("/api/tasks", headers=headers)
    else:
        response = anonymous.post(
            "/api/tasks", headers=headers, json={**body, "id": "auth-probe", "name": "p"}
        )
    assert response.status_code == 200, response.text
    if body is not None:
        assert "apiKey" not in response.json() and "key" not in response.json()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "wrong"},
        {"x-api-key": API_KEY[:-1]},
        {"Authorization": "Bearer wrong"},
        {"Authorization": API_KEY},
        {"key": ""},
    ],
    ids=["none", "wrong", "prefix", "wrong-bearer", "no-scheme", "empty"],
)
def test_missing_or_wrong_key_is_refused(anonymous: httpx.Client, headers: dict[str, str]) -> None:
    for method, path in (("GET", "/api/tasks"), ("GET", "/api/executions")):
        response = anonymous.request(method, path, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "UNAUTHORIZED"
        assert response.json()["details"]


def test_wrong_key_in_body_is_refused_and_nothing_saved(anonymous: httpx.Client) -> None:
    response = anonymous.post("/api/tasks", json={"apiKey": "nope", "id": "sneaky", "name": "x"})
    assert response.status_code == 401
    check = anonymous.get("/api/tasks/sneaky", headers={"x-api-key": API_KEY})
    assert check.status_code == 404


def test_health_needs_no_key(anonymous: httpx.Client) -> None:
    assert anonymous.get("/api/health").status_code == 200


DEEP = b"[" * 200_000


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-api-key": "wrong"}, {"Authorization": "Bearer wrong"}],
    ids=["no-key", "wrong-header-key", "wrong-bearer"],
)
def test_a_deeply_nested_body_without_the_key_is_refused(
    anonymous: httpx.Client, headers: dict[str, str]
) -> None:
    response = anonymous.post(
        "/api/tasks", content=DEEP, headers={**headers, "content-type": "application/json"}
    )
    assert_error(response, 401, "UNAUTHORIZED")


def test_deep_nesting_with_the_key_is_invalid_json(anonymous: httpx.Client) -> None:
    key = {"x-api-key": API_KEY, "content-type": "application/json"}
    assert_error(anonymous.post("/api/tasks", content=DEEP, headers=key), 400, "INVALID_JSON")
    # Shallow enough for the parser, still too deep for everything after it.
    nested = b'{"id": "deep", "name": "d", "variables": {"v": {"value": ' + b"[" * 900
    nested += b"]" * 900 + b"}}}"
    assert_error(anonymous.post("/api/tasks", content=nested, headers=key), 400, "INVALID_JSON")
    # In the body, where the key is looked for too.
    body_key = b'{"apiKey": "' + API_KEY.encode() + b'", "x": ' + b"[" * 900 + b"]" * 900 + b"}"
    response = anonymous.post(
        "/api/tasks", content=body_key, headers={"content-type": "application/json"}
    )
    assert_error(response, 401, "UNAUTHORIZED")  # too deep to carry a key
    assert anonymous.get("/api/tasks/deep", headers=key).status_code == 404


def test_a_key_in_a_header_settles_authentication(anonymous: httpx.Client) -> None:
    """The body is only consulted for a key when no header carries one."""
    response = anonymous.post(
        "/api/tasks",
        headers={"x-api-key": "wrong"},
        json={"apiKey": API_KEY, "id": "header-first", "name": "h"},
    )
    assert_error(response, 401, "UNAUTHORIZED")
    assert (
        anonymous.get("/api/tasks/header-first", headers={"x-api-key": API_KEY}).status_code == 404
    )
