"""The captcha solver setting (Figranium's /api/settings/captcha) and a solve_captcha run
through the whole stack, against a local fake of a solving service."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest

from tests.integration.captcha_fake import TOKEN, FakeSolver, serve_captcha_pages, serve_solver
from tests.integration.stack import Stack, fetch_rows

KEY = "solver-key-5b1e9a"
MASK = "••••••••"


def _clear(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("DELETE FROM settings WHERE key = 'captcha_solver'")


@pytest.fixture
def no_solver(stack: tuple[Stack, httpx.Client]) -> Iterator[str]:
    """No stored solver before and after; yields the database URL."""
    database_url = stack[0].env["DATABASE_URL"]
    _clear(database_url)
    yield database_url
    _clear(database_url)


def _stored(database_url: str) -> object:
    rows = fetch_rows(database_url, "SELECT value FROM settings WHERE key = 'captcha_solver'")
    return rows[0][0] if rows else None


def test_the_setting_is_answered_masked_and_stored_sealed(
    api: httpx.Client, no_solver: str
) -> None:
    assert api.get("/api/settings/captcha").json() == {"baseUrl": "", "clientKey": ""}
    body = {"baseUrl": "http://127.0.0.1:9/solver", "clientKey": KEY}
    saved = api.post("/api/settings/captcha", json=body)
    assert saved.status_code == 200, saved.text
    assert saved.json() == {"baseUrl": body["baseUrl"], "clientKey": MASK}
    assert api.get("/api/settings/captcha").json() == saved.json()
    stored = _stored(no_solver)
    assert isinstance(stored, dict) and KEY not in str(stored) and stored["clientKey"]
    # The masked key sent back keeps the stored one; an empty one clears it.
    kept = api.post("/api/settings/captcha", json={**body, "clientKey": MASK})
    assert kept.json()["clientKey"] == MASK and _stored(no_solver) == stored
    cleared = api.post("/api/settings/captcha", json={"baseUrl": "", "clientKey": ""})
    assert cleared.json() == {"baseUrl": "", "clientKey": ""}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"baseUrl": 12}, "INVALID_BODY"),
        ({"baseUrl": "ftp://solver.example"}, "INVALID_BASE_URL"),
        ({"baseUrl": "http://169.254.169.254/latest"}, "INVALID_BASE_URL"),
        ({"baseUrl": "http://127.0.0.1:9", "clientKey": "clé"}, "INVALID_BODY"),
        ({"clientKey": ["k"]}, "INVALID_BODY"),
    ],
)
def test_bad_settings_are_refused(
    api: httpx.Client, no_solver: str, body: dict[str, object], code: str
) -> None:
    answer = api.post("/api/settings/captcha", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == code
    assert _stored(no_solver) is None


def test_a_run_solves_the_captcha_with_the_stored_solver(api: httpx.Client, no_solver: str) -> None:
    with serve_captcha_pages() as pages, serve_solver(FakeSolver()) as solver:
        api.post("/api/settings/captcha", json={"baseUrl": solver.url, "clientKey": KEY})
        task = {
            "id": "captcha-e2e",
            "url": f"{pages}/hcaptcha",
            "actions": [{"type": "solve_captcha", "captchaType": "hcaptcha", "varName": "s"}],
            "extractionScript": (
                "return [document.querySelector('[name=\"h-captcha-response\"]').value,"
                " '{$s.challenge}']"
            ),
        }
        assert api.post("/api/tasks", json=task).status_code == 200
        run = api.post("/api/tasks/captcha-e2e/api", json={})
    assert run.status_code == 200, run.text
    assert run.json()["data"] == [TOKEN, "hcaptcha"]
    assert solver.created()["websiteKey"] == "site-hc"
    assert {body["clientKey"] for _, body in solver.calls} == {KEY}
