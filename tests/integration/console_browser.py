"""Shared pieces of the console tests: a signed-in HTTP client, and a Chromium page whose
Content-Security-Policy reports are collected, checked with axe.

The console tests share one Chromium per test worker (``SharedChromium``, started once by
the ``chromium`` session fixture). Each test connects to it over the DevTools protocol
with a Playwright of its own and works in a fresh context: a Playwright kept open for the
whole session would hold an event loop that the worker's asyncio tests cannot share."""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

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


_DEVTOOLS = re.compile(r"DevTools listening on (ws://\S+)")


class SharedChromium:
    """One headless Chromium for a test worker, reachable over the DevTools protocol."""

    def __init__(self) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="console-chromium-")
        binary = find_chromium(None)
        if binary is None:  # Playwright's own build, where one was downloaded
            with sync_playwright() as playwright:
                binary = playwright.chromium.executable_path
        argv = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            f"--user-data-dir={self._profile.name}",
            "about:blank",
        ]
        self._process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        assert self._process.stderr is not None
        self._stderr = self._process.stderr
        self.endpoint = self._endpoint(self._stderr)
        # Chromium goes on writing to stderr: drained, so that a full pipe never blocks it.
        self._drain = threading.Thread(target=self._stderr.read, daemon=True)
        self._drain.start()

    def _endpoint(self, stream: IO[str]) -> str:
        for line in stream:  # Chromium says where it listens before anything else
            found = _DEVTOOLS.search(line)
            if found:
                return found.group(1)
        raise RuntimeError(f"Chromium exited ({self._process.wait()}) before listening")

    def close(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._drain.join(timeout=20)  # the pipe ends with the process
        self._stderr.close()
        self._profile.cleanup()


@contextmanager
def console_page(
    chromium: SharedChromium, **context_options: Any
) -> Iterator[tuple[Page, list[str]]]:
    """A page of a fresh context in the shared Chromium (``context_options``: viewport,
    color scheme), and the Content-Security-Policy violations its console reports."""
    violations: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.connect_over_cdp(chromium.endpoint)
        context = browser.new_context(**context_options)
        try:
            page = context.new_page()
            page.on(
                "console",
                lambda m: violations.append(m.text) if "Content Security" in m.text else None,
            )
            yield page, violations
        finally:
            context.close()
