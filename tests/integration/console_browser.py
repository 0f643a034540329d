"""Shared pieces of the console tests: a signed-in HTTP client, and a Chromium page whose
Content-Security-Policy reports are collected, checked with axe."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, sync_playwright

from figranium_runner.browser import find_chromium
from tests.integration.stack import API_KEY

SIGN_IN = "/console/sign-in"


def signed_in(base_url: str, key: str = API_KEY, **headers: str) -> httpx.Client:
    """A browser-like client (no API key header) holding a console session."""
    client = httpx.Client(base_url=base_url, timeout=30, headers=headers)
    client.get(SIGN_IN)
    answer = client.post(
        SIGN_IN, data={"apiKey": key, "csrf_token": client.cookies["figranium_csrf"]}
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/"
    return client


def accessible(page: Page, axe: Axe) -> None:
    """No serious or critical axe violation on the page as it is now."""
    results = axe.run(page)
    bad = [
        f"{v['id']}: {v['help']}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"{page.url}: {bad}"


@contextmanager
def console_page(**context_options: Any) -> Iterator[tuple[Page, list[str]]]:
    """A page of a fresh Chromium context (``context_options``: viewport, color scheme),
    and the Content-Security-Policy violations its console reports, as they come."""
    violations: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=find_chromium(None), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_context(**context_options).new_page()
            page.on(
                "console",
                lambda m: violations.append(m.text) if "Content Security" in m.text else None,
            )
            yield page, violations
        finally:
            browser.close()
