"""The console's proxies and credentials settings pages: every form goes through the
API's own checks and store (the API then answers the change), secrets are never shown
(their masks keep them), refusals show the API's code with a 4xx and change nothing, and
every form needs the CSRF token. One walk-through in Chromium, checked with axe."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.integration.console_browser import SIGN_IN, SharedChromium, accessible, console_page
from tests.integration.stack import API_KEY, Stack

PROXIES = "/console/settings/proxies"
CREDENTIALS = "/console/settings/credentials"
MASK = "••••••••"
SERVERS = ("127.0.0.61", "127.0.0.62", "127.0.0.63", "127.0.0.64", "127.0.0.65")


def _listing(api: httpx.Client) -> dict[str, Any]:
    answer = api.get("/api/settings/proxies")
    assert answer.status_code == 200, answer.text
    listing: dict[str, Any] = answer.json()
    return listing


def _mine(api: httpx.Client) -> dict[str, dict[str, Any]]:
    """This module's proxies, by host."""
    return {
        host: proxy
        for proxy in _listing(api)["proxies"]
        for host in SERVERS
        if f"//{host}:" in proxy["server"]
    }


@pytest.fixture
def proxies_restored(api: httpx.Client) -> Iterator[None]:
    """Whatever a test changes, the shared stack gets its default and rotation back and
    loses this module's proxies."""
    before = _listing(api)
    try:
        yield
    finally:
        ids = [proxy["id"] for proxy in _mine(api).values()]
        if ids:
            assert api.request("DELETE", "/api/settings/proxies", json={"ids": ids}).is_success
        api.post("/api/settings/proxies/default", json={"id": before["defaultProxyId"]})
        rotation = {
            "rotationMode": before["rotationMode"],
            "includeDefaultInRotation": before["includeDefaultInRotation"],
        }
        assert api.post("/api/settings/proxies/rotation", json=rotation).is_success


def _sealed_passwords(stack: tuple[Stack, httpx.Client]) -> dict[str, Any]:
    with psycopg.connect(stack[0].env["DATABASE_URL"]) as conn:
        row = conn.execute("SELECT value FROM settings WHERE key = 'proxies'").fetchone()
    assert row is not None
    return {entry["id"]: entry.get("password") for entry in row[0]}


def _refused(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert 'role="alert"' in answer.text and code in answer.text


def test_proxy_forms(
    api: httpx.Client,
    browser_like: httpx.Client,
    stack: tuple[Stack, httpx.Client],
    proxies_restored: None,
) -> None:
    token = {"csrf_token": browser_like.cookies["figranium_csrf"]}
    first = {"server": f"{SERVERS[0]}:8080", "username": "alice", "label": "Console A"}
    secret = "pr0xy-s3cret"

    refused = browser_like.post(PROXIES, data={**first, "password": secret})
    assert refused.status_code == 403 and refused.json()["error"] == "CSRF_TOKEN_MISSING"
    _refused(browser_like.post(PROXIES, data={**token, "label": "x"}), 400, "MISSING_SERVER")
    _refused(
        browser_like.post(PROXIES, data={**token, **first, "estimatedPoolSize": "0"}),
        400,
        "estimatedPoolSize",
    )
    assert _mine(api) == {}

    added = browser_like.post(PROXIES, data={**token, **first, "password": secret})
    assert added.status_code == 303 and added.headers["location"] == PROXIES
    proxy = _mine(api)[SERVERS[0]]
    assert proxy["server"] == f"http://{SERVERS[0]}:8080" and proxy["hasPassword"]
    assert (proxy["username"], proxy["label"], proxy["default"]) == ("alice", "Console A", False)
    page = browser_like.get(PROXIES)
    assert page.status_code == 200 and "Console A" in page.text and secret not in page.text
    assert '/console/settings/proxies" aria-current="page"' in page.text

    lines = f"{SERVERS[1]}:3128:bob:b0b-pass\n\n  socks5://{SERVERS[2]}:1080  \n"
    assert browser_like.post(f"{PROXIES}/import", data={**token, "lines": lines}).is_redirect
    mine = _mine(api)
    assert mine[SERVERS[1]]["username"] == "bob" and mine[SERVERS[1]]["hasPassword"]
    assert mine[SERVERS[2]]["server"] == f"socks5://{SERVERS[2]}:1080"
    bad = f"{SERVERS[3]}:3128\n\nnot-a-proxy"
    refused_import = browser_like.post(f"{PROXIES}/import", data={**token, "lines": bad})
    _refused(refused_import, 400, "line 3")
    assert "not-a-proxy" in refused_import.text  # what was typed stays in the box
    assert SERVERS[3] not in _mine(api)
    _refused(browser_like.post(f"{PROXIES}/import", data={**token, "lines": " "}), 400, "MISSING")

    # Editing: the form holds the mask, never the password; the mask keeps it.
    edit = f"{PROXIES}/{proxy['id']}/edit"
    form = browser_like.get(edit)
    assert form.status_code == 200 and f'value="{MASK}"' in form.text and secret not in form.text
    sealed = _sealed_passwords(stack)[proxy["id"]]
    kept = {**token, **first, "label": "Console A2", "password": MASK, "isRotatingPool": "on"}
    assert browser_like.post(edit, data={**kept, "estimatedPoolSize": "40"}).is_redirect
    changed = _mine(api)[SERVERS[0]]
    assert (changed["label"], changed["isRotatingPool"], changed["estimatedPoolSize"]) == (
        "Console A2",
        True,
        40,
    )
    assert _sealed_passwords(stack)[proxy["id"]] == sealed
    _refused(browser_like.post(edit, data={**kept, "server": "ftp://x:1"}), 400, "INVALID_BODY")
    assert _mine(api)[SERVERS[0]] == changed
    assert browser_like.post(edit, data={**kept, "password": ""}).is_redirect
    assert not _mine(api)[SERVERS[0]]["hasPassword"]

    # The default and the rotation.
    default = f"{PROXIES}/default"
    assert browser_like.post(default, data={**token, "id": proxy["id"]}).is_redirect
    assert _listing(api)["defaultProxyId"] == proxy["id"]
    _refused(browser_like.post(default, data={**token, "id": "proxy_nope"}), 404, "PROXY_NOT")
    assert _listing(api)["defaultProxyId"] == proxy["id"]
    rotation = f"{PROXIES}/rotation"
    on = {**token, "rotationMode": "random", "includeDefaultInRotation": "on"}
    assert browser_like.post(rotation, data=on).is_redirect
    listing = _listing(api)
    assert (listing["rotationMode"], listing["includeDefaultInRotation"]) == ("random", True)
    _refused(browser_like.post(rotation, data={**on, "rotationMode": "sideways"}), 400, "rotation")
    assert browser_like.post(rotation, data={**token, "rotationMode": "round-robin"}).is_redirect
    listing = _listing(api)
    assert (listing["rotationMode"], listing["includeDefaultInRotation"]) == ("round-robin", False)

    # Deleting: a confirmation page, then the form.
    delete = f"{PROXIES}/{proxy['id']}/delete"
    confirm = browser_like.get(delete)
    assert confirm.status_code == 200 and "Console A2" in confirm.text
    assert browser_like.post(delete, data={}).status_code == 403
    assert browser_like.post(delete, data=token).is_redirect
    assert SERVERS[0] not in _mine(api) and _listing(api)["defaultProxyId"] == "host"
    missing = browser_like.post(delete, data=token)
    assert missing.status_code == 404 and missing.json()["error"] == "PROXY_NOT_FOUND"
    assert browser_like.get(f"{PROXIES}/proxy_nope/edit").status_code == 404
    assert browser_like.get(f"{PROXIES}/host/edit").status_code == 400


def _credentials(api: httpx.Client) -> dict[str, dict[str, Any]]:
    answer = api.get("/api/credentials")
    assert answer.status_code == 200, answer.text
    return {credential["name"]: credential for credential in answer.json()}


def _sealed_token(stack: tuple[Stack, httpx.Client], credential_id: str) -> str:
    with psycopg.connect(stack[0].env["DATABASE_URL"]) as conn:
        row = conn.execute(
            "SELECT config->>'token' FROM credentials WHERE id = %s", (credential_id,)
        ).fetchone()
    assert row is not None
    return str(row[0])


def test_credential_forms(
    api: httpx.Client, browser_like: httpx.Client, stack: tuple[Stack, httpx.Client]
) -> None:
    token = {"csrf_token": browser_like.cookies["figranium_csrf"]}
    secret = "br-t0ken-console"
    fields = {"name": "Console Baserow", "provider": "baserow", "token": secret}
    fields["baseUrl"] = "http://127.0.0.1:8631"

    refused = browser_like.post(CREDENTIALS, data=fields)
    assert refused.status_code == 403 and refused.json()["error"] == "CSRF_TOKEN_MISSING"
    _refused(
        browser_like.post(CREDENTIALS, data={**token, **fields, "name": ""}), 400, "MISSING_FI"
    )
    _refused(
        browser_like.post(CREDENTIALS, data={**token, **fields, "provider": "basic"}),
        400,
        "UNSUPPORTED_PROVIDER",
    )
    bad_url = browser_like.post(CREDENTIALS, data={**token, **fields, "baseUrl": "ftp://x"})
    _refused(bad_url, 400, "INVALID_BASE_URL")
    assert secret not in bad_url.text and "Console Baserow" in bad_url.text  # name kept
    assert "Console Baserow" not in _credentials(api)

    assert browser_like.post(CREDENTIALS, data={**token, **fields}).is_redirect
    credential = _credentials(api)["Console Baserow"]
    assert credential["config"] == {"baseUrl": "http://127.0.0.1:8631", "token": MASK}
    page = browser_like.get(CREDENTIALS)
    assert "Console Baserow" in page.text and secret not in page.text
    assert '/console/settings/credentials" aria-current="page"' in page.text
    sealed = _sealed_token(stack, credential["id"])

    edit = f"{CREDENTIALS}/{credential['id']}/edit"
    form = browser_like.get(edit)
    assert form.status_code == 200 and f'value="{MASK}"' in form.text and secret not in form.text
    renamed = {**token, "name": "Console Baserow 2", "baseUrl": "http://127.0.0.1:8631/"}
    assert browser_like.post(edit, data={**renamed, "token": MASK}).is_redirect
    assert _credentials(api)["Console Baserow 2"]["id"] == credential["id"]
    assert _sealed_token(stack, credential["id"]) == sealed
    # Another server with the kept token: refused, nothing changed.
    moved = {**renamed, "name": "Moved", "baseUrl": "http://127.0.0.1:8632", "token": MASK}
    _refused(browser_like.post(edit, data=moved), 400, "TOKEN_REQUIRED")
    assert "Moved" not in _credentials(api)
    assert browser_like.post(edit, data={**moved, "token": "n3w-token"}).is_redirect
    assert _credentials(api)["Moved"]["config"]["baseUrl"] == "http://127.0.0.1:8632"
    assert _sealed_token(stack, credential["id"]) != sealed

    delete = f"{CREDENTIALS}/{credential['id']}/delete"
    assert browser_like.get(delete).status_code == 200
    assert browser_like.post(delete, data={}).status_code == 403
    assert browser_like.post(delete, data=token).is_redirect
    assert "Moved" not in _credentials(api)
    for path in (edit, delete):
        assert browser_like.get(path).status_code == 404
        missing = browser_like.post(path, data={**token, "name": "x"})
        assert missing.status_code == 404 and missing.json()["error"] == "CREDENTIAL_NOT_FOUND"


def test_a_person_sets_a_default_proxy_and_a_credential(
    api: httpx.Client, chromium: SharedChromium, proxies_restored: None
) -> None:
    """Add a proxy and make it the default, add a credential, delete both: in Chromium at
    phone width, with axe on every page."""
    base = str(api.base_url)
    axe = Axe()
    with console_page(chromium, viewport={"width": 390, "height": 900}) as (page, violations):
        page.goto(base + PROXIES)
        expect(page).to_have_url(base + SIGN_IN)
        page.get_by_label("API key").fill(API_KEY)
        page.keyboard.press("Enter")
        expect(page).to_have_url(base + "/")
        page.goto(base + PROXIES)
        expect(page.get_by_role("heading", name="Proxies", exact=True)).to_be_visible()
        accessible(page, axe)
        page.get_by_label("Server", exact=True).fill(f"{SERVERS[4]}:3128")
        page.get_by_label("Label", exact=True).fill("Walk proxy")
        page.get_by_label("Password", exact=True).fill("walk-pass")
        page.get_by_role("button", name="Add the proxy").click()
        expect(page.get_by_role("row").filter(has_text="Walk proxy")).to_be_visible()
        page.get_by_role("button", name="Make Walk proxy the default").click()
        expect(page.get_by_role("row").filter(has_text="Walk proxy")).to_contain_text("Default")
        proxy = _mine(api)[SERVERS[4]]
        assert proxy["default"] and proxy["hasPassword"]
        assert "walk-pass" not in page.content()

        page.get_by_role("link", name="Credentials").click()
        expect(page.get_by_role("heading", name="Credentials", exact=True)).to_be_visible()
        page.get_by_label("Name", exact=True).fill("Walk Baserow")
        page.get_by_label("Base URL", exact=True).fill("http://127.0.0.1:8633")
        page.get_by_label("Database token", exact=True).fill("walk-token")
        page.get_by_role("button", name="Add the credential").click()
        expect(page.get_by_role("row").filter(has_text="Walk Baserow")).to_be_visible()
        assert "walk-token" not in page.content()
        accessible(page, axe)
        page.get_by_role("link", name="Delete Walk Baserow").click()
        expect(
            page.get_by_role("heading", name="Delete the credential “Walk Baserow”?")
        ).to_be_visible()
        accessible(page, axe)
        page.get_by_role("button", name="Delete").click()
        expect(page).to_have_url(base + CREDENTIALS)
        assert "Walk Baserow" not in _credentials(api)

        page.get_by_role("link", name="Proxies").click()
        page.get_by_role("link", name="Delete Walk proxy").click()
        page.get_by_role("button", name="Delete").click()
        expect(page).to_have_url(base + PROXIES)
        expect(page.get_by_role("row").filter(has_text="Walk proxy")).to_have_count(0)
        expect(page.get_by_role("row").filter(has_text="Host IP")).to_contain_text("Default")
        accessible(page, axe)
        assert SERVERS[4] not in _mine(api)
    assert not violations, violations
