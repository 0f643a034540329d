"""What a bot-detection script sees of a run (webdriver, plugins, languages, permissions,
WebGL, user agent), block pages ending a run as ``anti_bot``, and cookie banners."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page

from figranium_common.models import RunResult, Task
from figranium_runner import identity, stealth
from figranium_runner.browser import BrowserHost, ContextOptions
from figranium_runner.engine import Limits, execute
from services.runner.tests.stealth_site import serve
from services.runner.tests.test_identity import Pick

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    with serve() as url:
        yield url


class Lines(list[str]):
    """A run's lines as they are said; one can wait for a line to come."""

    def __init__(self) -> None:
        super().__init__()
        self.added = asyncio.Event()

    async def said(self, line: str) -> None:
        self.append(line)
        self.added.set()

    async def wait_for(self, line: str, seconds: float = 5.0) -> None:
        async with asyncio.timeout(seconds):
            while line not in self:
                self.added.clear()
                await self.added.wait()


async def report(page: Page, url: str) -> dict[str, Any]:
    await page.goto(f"{url}/detect")
    await page.wait_for_selector("#report[data-done]", state="attached")
    found: dict[str, Any] = json.loads(await page.text_content("#report") or "{}")
    return found


@pytest_asyncio.fixture(loop_scope="module")
async def disguised(
    host: BrowserHost, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Page, identity.UserAgent]]:
    """A page opened as run.py opens a stealth run's: options (``request.param``: the
    task's), a Chrome agent, the init script, then the page's DevTools identity."""
    task = Task.model_validate({"stealth": {"cursorGlide": True}, **request.param})
    options: ContextOptions = identity.context_options(task, [], Pick(0))
    agent = stealth.disguise(options)
    context = await host.new_context(**options)
    await stealth.prepare(context, agent)
    page = await context.new_page()
    await identity.emulate(page, options)
    yield page, agent
    await context.close()


async def test_webdriver_is_false_in_every_run(context: BrowserContext, pages: str) -> None:
    found = await report(await context.new_page(), pages)
    assert found["webdriver"] is False
    # Without stealth, nothing else is disguised: the run is as it was.
    assert found["plugins"] == 0
    assert "HeadlessChrome" in found["userAgent"]


@pytest.mark.parametrize("disguised", [{}], indirect=True)
async def test_a_stealth_run_looks_like_chrome_on_linux(
    disguised: tuple[Page, identity.UserAgent], pages: str
) -> None:
    page, agent = disguised
    found = await report(page, pages)
    assert found["webdriver"] is False
    assert "HeadlessChrome" not in found["userAgent"]
    assert found["userAgent"] == agent.user_agent and "X11; Linux x86_64" in agent.user_agent
    assert found["platform"] == "Linux x86_64" and found["uaPlatform"] == "Linux"
    assert "Google Chrome" in found["brands"] and "HeadlessChrome" not in found["brands"]
    assert found["languages"] == ["en-US", "en"]
    assert found["plugins"] == 5 and found["mimeTypes"] == 2 and found["pluginsIsArray"]
    assert "Chrome PDF Viewer" in found["pluginNames"] and found["pdfViewerEnabled"] is True
    assert found["chrome"] is True
    # One answer to "may this page notify?", however it is asked.
    assert found["permission"] == ("prompt" if found["notification"] == "default" else "denied")
    assert found["notification"] == "denied"
    assert (found["webglVendor"], found["webglRenderer"]) == stealth.WEBGL["Linux"]
    assert "SwiftShader" not in found["webglRenderer"]
    assert found["getParameterSource"] == "function getParameter() { [native code] }"
    assert found["pluginsGetter"] == "function get plugins() { [native code] }"
    assert found["ownNavigatorProps"] == []
    assert found["frame"] > 0


@pytest.mark.parametrize("disguised", [{"rotateUserAgents": True}], indirect=True)
async def test_a_rotated_agent_comes_with_its_platform_and_gpu(
    disguised: tuple[Page, identity.UserAgent], pages: str
) -> None:
    page, agent = disguised
    assert agent.platform == "Windows" and agent.browser == "Chrome"
    found = await report(page, pages)
    assert found["userAgent"] == agent.user_agent
    assert found["platform"] == "Win32" and found["uaPlatform"] == "Windows"
    assert (found["webglVendor"], found["webglRenderer"]) == stealth.WEBGL["Windows"]
    assert found["languages"] == ["en-US", "en"]


# --- block pages ---------------------------------------------------------------------


async def run(
    context: BrowserContext, task: dict[str, Any], lines: Lines | None = None
) -> tuple[RunResult, Page]:

    page = await context.new_page()
    result, _ = await execute(
        page,
        Task.model_validate(task),
        {},
        execution_id="exec_stealth",
        limits=Limits(allow_private=True, default_timeout_ms=3000),
        emit=(Lines() if lines is None else lines).said,
        rng=random.Random(7),
    )
    return result, page


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/blocked", "main document returned HTTP 403"),
        ("/limited", "main document returned HTTP 429"),
        ("/captcha", "unresolved CAPTCHA challenge detected"),
        ("/challenge", "browser verification challenge page detected"),
    ],
)
async def test_a_run_that_ends_on_a_block_page_is_anti_bot(
    context: BrowserContext, pages: str, path: str, reason: str
) -> None:
    result, _ = await run(context, {"url": f"{pages}{path}"})
    assert result.outcome == "anti_bot"
    assert result.logs[-1] == f"[OUTCOME] Anti-bot detected: {reason}."


async def test_the_status_is_the_last_document_s_and_a_solved_captcha_passes(
    context: BrowserContext, pages: str
) -> None:
    # Blocked first, then navigated on to a page that answered: not a block page.
    moved_on = {
        "url": f"{pages}/blocked",
        "actions": [{"type": "navigate", "value": f"{pages}/plain"}],
    }
    result, _ = await run(context, moved_on)
    assert result.outcome == "success"
    result, _ = await run(context, {"url": f"{pages}/captcha-solved"})
    assert result.outcome == "success"
    assert not any("Anti-bot" in line for line in result.logs)


async def test_a_run_that_failed_on_a_block_page_is_anti_bot_with_its_error(
    context: BrowserContext, pages: str
) -> None:
    task = {
        "url": f"{pages}/blocked",
        "actions": [{"type": "click", "selector": "#buy", "timeout": 200}],
        "extractionScript": "throw new Error('no products')",
    }
    result, _ = await run(context, task)
    assert result.outcome == "anti_bot" and result.error


# --- cookie banners ------------------------------------------------------------------


async def test_a_stealth_run_accepts_the_cookie_banner(context: BrowserContext, pages: str) -> None:
    task = {
        "url": f"{pages}/banner",
        "stealth": {"randomizeClicks": True},
        "actions": [{"type": "wait_selector", "selector": "#accepted", "value": "3"}],
    }
    lines = Lines()
    result, page = await run(context, task, lines)
    assert result.outcome == "success", result.logs
    assert await page.query_selector("#onetrust-banner-sdk") is None
    # Said once the click is back from the page, which may be after the run's end.
    await lines.wait_for("Dismissed a cookie banner (OneTrust)")


async def test_without_stealth_the_banner_is_left_alone(
    context: BrowserContext, pages: str
) -> None:
    task = {
        "url": f"{pages}/banner",
        "actions": [{"type": "wait_selector", "selector": "#onetrust-accept-btn-handler"}],
        "extractionScript": "return !!document.getElementById('accepted')",
    }
    result, _ = await run(context, task)
    assert result.outcome == "success" and result.data is False
