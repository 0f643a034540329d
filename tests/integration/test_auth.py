"""Every authentication form Figranium clients use is accepted; anything else is refused."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.stack import API_KEY


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
