"""The web console's foundation: sign-in sessions, CSRF, its pages and static files, and
the task list driven in Chromium (checked with axe)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from figranium_devstack.postgres import LocalPostgres
from tests.integration.console_browser import (
    SIGN_IN,
    SharedChromium,
    accessible,
    console_page,
    signed_in,
)
from tests.integration.stack import API_KEY, Stack, fetch_rows, own_stack, wait_until

STORED_KEY = "console-key-0123456789abcdef"  # the replicas' stored key
_STORED = {"x-api-key": STORED_KEY}


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    """Each cookie the answer sets → its whole Set-Cookie header."""
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


def test_the_console_asks_for_a_sign_in_and_the_api_is_unchanged(api: httpx.Client) -> None:
    with httpx.Client(base_url=api.base_url, timeout=30) as anonymous:
        home = anonymous.get("/")
        assert home.status_code == 303 and home.headers["location"] == SIGN_IN
        assert anonymous.post("/console/tasks", data={"name": "x"}).status_code == 303
        assert anonymous.get("/api/tasks").status_code == 401
        page = anonymous.get(SIGN_IN)
        assert page.status_code == 200 and 'name="apiKey"' in page.text
    assert api.get("/").status_code == 200  # the key in a header opens it too


def test_sign_in_sets_a_strict_session_cookie(
    api: httpx.Client, stack: tuple[Stack, httpx.Client]
) -> None:
    with httpx.Client(base_url=api.base_url, timeout=30) as client:
        client.get(SIGN_IN)
        token = client.cookies["figranium_csrf"]
        answer = client.post(SIGN_IN, data={"apiKey": API_KEY, "csrf_token": token})
        assert answer.status_code == 303 and API_KEY not in answer.headers["location"]
        cookies = _set_cookies(answer)
        session = cookies["figranium_session"]
        assert "HttpOnly" in session and "SameSite=Strict" in session and "Path=/" in session
        assert "Secure" not in session  # plain http here; see the forwarded https test
        assert "HttpOnly" not in cookies["figranium_csrf"]
        secret = client.cookies["figranium_session"]
        stored = fetch_rows(stack[0].env["DATABASE_URL"], "SELECT id_digest FROM console_sessions")
        digests = [row[0] for row in stored]
        assert secret not in digests and all(len(d) == 64 for d in digests)
        assert client.get("/").status_code == 200


def test_a_wrong_key_opens_no_session(api: httpx.Client) -> None:
    with httpx.Client(base_url=api.base_url, timeout=30) as client:
        client.get(SIGN_IN)
        token = client.cookies["figranium_csrf"]
        answer = client.post(SIGN_IN, data={"apiKey": "not-the-key", "csrf_token": token})
        assert answer.status_code == 401
        assert "not the API key" in answer.text
        assert "figranium_session" not in client.cookies
        without_token = client.post(SIGN_IN, data={"apiKey": API_KEY})
        assert without_token.status_code == 403
        assert without_token.json()["error"] == "CSRF_TOKEN_MISSING"


def test_the_cookie_needs_the_csrf_token_to_change_state(
    api: httpx.Client, browser_like: httpx.Client
) -> None:
    task = {"id": "csrf-probe", "name": "probe", "url": "https://example.com"}
    missing = browser_like.post("/api/tasks", json=task)
    assert missing.status_code == 403 and missing.json()["error"] == "CSRF_TOKEN_MISSING"
    wrong = browser_like.post("/api/tasks", json=task, headers={"X-CSRF-Token": "forged"})
    assert wrong.status_code == 403 and wrong.json()["error"] == "CSRF_TOKEN_INVALID"
    assert api.get("/api/tasks/csrf-probe").status_code == 404  # nothing was saved
    assert browser_like.get("/api/tasks/list").status_code == 200  # reading needs none

    token = browser_like.cookies["figranium_csrf"]
    saved = browser_like.post("/api/tasks", json=task, headers={"X-CSRF-Token": token})
    assert saved.status_code == 200, saved.text
    deleted = browser_like.delete("/api/tasks/csrf-probe", headers={"X-CSRF-Token": token})
    assert deleted.status_code == 200

    # A token planted in the cookie (double submit alone) is not the session's: refused.
    planted = httpx.Cookies({"figranium_session": browser_like.cookies["figranium_session"]})
    planted.set("figranium_csrf", "planted")
    with httpx.Client(base_url=api.base_url, cookies=planted, timeout=30) as forger:
        forged = forger.post("/api/tasks", json=task, headers={"X-CSRF-Token": "planted"})
        assert forged.status_code == 403 and forged.json()["error"] == "CSRF_TOKEN_INVALID"

    # The API key path is unchanged: no token needed.
    assert api.post("/api/tasks", json=task).status_code == 200
    assert api.delete("/api/tasks/csrf-probe").status_code == 200
    # Plain console forms carry the token in a field.
    form = browser_like.post("/console/tasks", data={"name": "no token"})
    assert form.status_code == 403 and form.json()["error"] == "CSRF_TOKEN_MISSING"


def test_sign_out_ends_the_session(api: httpx.Client) -> None:
    client = signed_in(str(api.base_url))
    secret = client.cookies["figranium_session"]
    out = client.post("/console/sign-out", data={"csrf_token": client.cookies["figranium_csrf"]})
    assert out.status_code == 303 and out.headers["location"] == SIGN_IN
    with httpx.Client(
        base_url=api.base_url, cookies={"figranium_session": secret}, timeout=30
    ) as replay:
        assert replay.get("/").status_code == 303
        assert replay.get("/api/tasks/list").status_code == 401
    client.close()


def test_pages_are_strict_and_assets_fingerprinted(browser_like: httpx.Client) -> None:
    page = browser_like.get("/")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "unsafe" not in policy and page.headers["cache-control"] == "no-store"
    scripts = re.findall(r"<script\b[^>]*>", page.text)
    assert scripts and all('type="module"' in tag and " src=" in tag for tag in scripts)
    assert "<style" not in page.text and " style=" not in page.text
    urls = re.findall(r'(?:src|href)="(/console/static/[^"]+)"', page.text)
    assert {url.rsplit(".", 1)[1] for url in urls} == {"js", "css"}
    for url in urls:
        asset = browser_like.get(url)
        assert asset.status_code == 200
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert re.search(r"\.[0-9a-f]{12}\.(js|css)$", url)
    assert browser_like.get("/console/static/console.js").status_code == 404
    with httpx.Client(base_url=browser_like.base_url, timeout=30) as anonymous:
        assert anonymous.get(urls[0]).status_code == 200  # the sign-in page needs them too


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory, postgres: LocalPostgres
) -> Iterator[tuple[Stack, str, str]]:
    """Two gateways sharing a database, with a stored key and a low lockout, for the module."""
    with own_stack(tmp_path_factory.mktemp("console"), postgres) as stack:
        del stack.env["FIGRANIUM_API_KEY"]
        limits = {
            "TRUST_FORWARDED_FOR": "true",
            "AUTH_SLOW_AFTER_FAILURES": "100",
            "AUTH_LOCKOUT_AFTER_FAILURES": "3",
            "AUTH_LOCKOUT_SECONDS": "60",
        }
        _, a = stack.start_gateway(**limits)
        _, b = stack.start_gateway(**limits)
        with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
            conn.execute(
                "UPDATE settings SET value = to_jsonb(%s::text) WHERE key = 'api_key'",
                (STORED_KEY,),
            )
        # Each probe from an address of its own: the failures until the gateways re-read
        # the key must not lock the test's clients out.
        probes = itertools.count()

        def accepted(client: httpx.Client) -> bool:
            probe = {**_STORED, "X-Forwarded-For": f"10.0.0.{next(probes) % 250}"}
            return client.get("/api/tasks/list", headers=probe).status_code == 200

        for client in (a, b):
            wait_until(lambda c=client: accepted(c), 20, "the stored key")
        yield stack, str(a.base_url), str(b.base_url)
        a.close()
        b.close()


@pytest.mark.stack
def test_sessions_span_replicas_and_end_when_the_key_changes(
    replicas: tuple[Stack, str, str],
) -> None:
    stack, a_url, b_url = replicas
    browser = signed_in(a_url, STORED_KEY, **{"X-Forwarded-For": "192.0.2.10"})
    secret = browser.cookies["figranium_session"]
    token = browser.cookies["figranium_csrf"]
    cookies = {"figranium_session": secret, "figranium_csrf": token}
    with httpx.Client(base_url=b_url, cookies=cookies, timeout=30) as other:
        assert other.get("/").status_code == 200  # replica B knows A's session

        # Rotating the key through the API, with the session and its token, ends them all.
        rotated = other.post("/api/settings/api-key", json={}, headers={"X-CSRF-Token": token})
        assert rotated.status_code == 200, rotated.text
        new_key = rotated.json()["apiKey"]
        assert other.get("/").status_code == 303
    assert browser.get("/").status_code == 303
    assert fetch_rows(stack.env["DATABASE_URL"], "SELECT * FROM console_sessions") == []
    browser.close()
    # The new key opens a new session; behind a trusted https proxy its cookie is Secure.
    with httpx.Client(base_url=a_url, timeout=30) as proxied:
        proxied.headers.update({"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.11"})
        proxied.get(SIGN_IN)
        # Its cookies are Secure, so httpx (on http) keeps but does not send them.
        token = proxied.cookies["figranium_csrf"]
        answer = proxied.post(
            SIGN_IN,
            data={"apiKey": new_key, "csrf_token": token},
            headers={"Cookie": f"figranium_csrf={token}"},
        )
        assert answer.status_code == 303
        assert "Secure" in _set_cookies(answer)["figranium_session"]


@pytest.mark.stack
def test_wrong_keys_at_sign_in_count_towards_the_api_lockout(
    replicas: tuple[Stack, str, str],
) -> None:
    _, a_url, _ = replicas
    address = {"X-Forwarded-For": "203.0.113.50"}
    with httpx.Client(base_url=a_url, timeout=30, headers=address) as client:
        client.get(SIGN_IN)
        token = client.cookies["figranium_csrf"]
        statuses = [
            client.post(SIGN_IN, data={"apiKey": f"guess-{n}", "csrf_token": token}).status_code
            for n in range(3)
        ]
        assert statuses == [401, 401, 429]
        # The same lockout as the API's: the API refuses this client too, even a right key.
        refused = client.get("/api/tasks/list", headers=_STORED)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0


def test_a_person_manages_tasks_in_the_console(api: httpx.Client, chromium: SharedChromium) -> None:
    """Sign in, see the list, create, search, duplicate, delete, sign out, in Chromium,
    light and dark, each page checked with axe and no policy violation reported."""
    base = str(api.base_url)
    name = "Console walk-through"
    axe = Axe()
    with console_page(chromium, color_scheme="dark", viewport={"width": 390, "height": 800}) as (
        page,
        violations,
    ):
        page.goto(base + "/")
        expect(page).to_have_url(base + SIGN_IN)
        accessible(page, axe)
        page.get_by_label("API key").fill("wrong-key")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("not the API key")
        accessible(page, axe)
        page.get_by_label("API key").fill(API_KEY)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_visible()
        accessible(page, axe)

        page.get_by_label("Name", exact=True).fill(name)
        page.get_by_label("Start URL").fill("https://example.com/")
        page.get_by_role("button", name="Create").click()
        expect(page.get_by_role("button", name=f"Duplicate {name}", exact=True)).to_be_visible()
        created = api.get("/api/tasks/list").json()["tasks"]
        task_id = next(t["id"] for t in created if t["name"] == name)
        assert api.get(f"/api/tasks/{task_id}").json()["url"] == "https://example.com/"

        # Search as one types (the module), then a plain submit finds it by id too.
        page.get_by_label("Search by name or id").fill("no such task at all")
        expect(page.get_by_text("No task matches")).to_be_visible()
        page.get_by_label("Search by name or id").fill(task_id)
        page.get_by_label("Search by name or id").press("Enter")
        expect(page.get_by_role("button", name=f"Duplicate {name}", exact=True)).to_be_visible()

        page.get_by_role("button", name=f"Duplicate {name}", exact=True).click()
        expect(page.get_by_role("button", name=f"Duplicate {name} (copy)")).to_be_visible()
        copies = [t for t in api.get("/api/tasks/list").json()["tasks"] if "(copy)" in t["name"]]
        copy_id = next(t["id"] for t in copies if t["name"] == f"{name} (copy)")

        page.get_by_role("link", name=f"Delete {name} (copy)").click()
        expect(page.get_by_role("heading", name=re.compile("Delete"))).to_be_visible()
        accessible(page, axe)
        page.get_by_role("button", name="Delete").click()
        expect(page).to_have_url(base + "/")
        assert api.get(f"/api/tasks/{copy_id}").status_code == 404

        # The page's module calls the API with the session and its token.
        csrf_module = page.locator("script[type=module]").get_attribute("src") or ""
        status = page.evaluate(
            """async ([id]) => {
                const scripts = [...document.scripts].map(s => s.src);
                const main = await (await fetch(scripts[0])).text();
                const lib = main.match(/\\.\\/(csrf\\.[0-9a-f]+\\.js)/)[1];
                const { apiFetch } = await import(`/console/static/${lib}`);
                const plain = await fetch(`/api/tasks/${id}`, { method: "DELETE" });
                const withToken = await apiFetch(`/api/tasks/${id}`, { method: "DELETE" });
                return [plain.status, withToken.status];
            }""",
            [task_id],
        )
        assert csrf_module and status == [403, 200]

        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(base + SIGN_IN)
        page.goto(base + "/")
        expect(page).to_have_url(base + SIGN_IN)
    assert not violations, violations
