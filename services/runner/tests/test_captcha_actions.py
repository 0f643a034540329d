"""Captcha actions, autoSolveCaptcha and the cabinet actions, in a real Chromium, against
local pages rendering each widget's DOM and a local fake of a solving service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Route

from figranium_common.models import CaptchaSolver, RunResult, Task
from figranium_runner.engine import Limits, execute
from tests.integration.captcha_fake import (
    TOKEN,
    FakeSolver,
    serve_captcha_pages,
    serve_solver,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
KEY = "client-key-9f8e7d"
TURNSTILE_FRAME = "<!doctype html><body><label><input type=checkbox>Verify</label></body>"


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    with serve_captcha_pages() as url:
        yield url


@pytest_asyncio.fixture(loop_scope="module")
async def widgets(context: BrowserContext) -> AsyncIterator[BrowserContext]:
    """The context, with Cloudflare's challenge frame answered locally."""

    async def turnstile(route: Route) -> None:
        await route.fulfill(body=TURNSTILE_FRAME, content_type="text/html")

    await context.route("https://challenges.cloudflare.com/**", turnstile)
    yield context


async def run(
    context: BrowserContext,
    task: dict[str, Any],
    *,
    solver: FakeSolver | None = None,
    detect_ms: int = 30_000,
) -> RunResult:
    """Run ``task``; autoSolveCaptcha waits up to ``detect_ms`` for a widget: long by
    default, since a busy machine may take seconds to make one ready."""
    page = await context.new_page()
    service = None if solver is None else CaptchaSolver(base_url=solver.url, client_key=KEY)

    async def emit(line: str) -> None:
        pass

    result, _ = await execute(
        page,
        Task.model_validate(task),
        {},
        execution_id="exec_captcha",
        limits=Limits(allow_private=True, default_timeout_ms=2000, captcha_detect_ms=detect_ms),
        emit=emit,
        captcha_solver=service,
    )
    return result


def said(result: RunResult, fragment: str) -> bool:
    return any(fragment in line for line in result.logs)


@pytest.mark.parametrize(
    ("path", "challenge", "site_key"),
    [
        ("/recaptcha", "recaptcha_v2", "site-rc"),
        ("/hcaptcha", "hcaptcha", "site-hc"),
        ("/turnstile", "turnstile", "0x4AAAAAAAturnstileKey"),
        ("/invisible", "recaptcha_v2", "site-inv"),
    ],
)
async def test_wait_captcha_answers_once_the_widget_is_ready(
    widgets: BrowserContext, pages: str, path: str, challenge: str, site_key: str
) -> None:
    result = await run(
        widgets,
        {
            "url": pages + path,
            "actions": [{"type": "wait_captcha", "varName": "w", "timeout": 0}],
            "extractionScript": "return {$w}",
        },
    )
    # The widget is still unsolved: the run's outcome is anti_bot, as in Figranium.
    assert isinstance(result.data, dict), result.logs
    assert result.data.pop("duration") >= (250 if path == "/recaptcha" else 0)
    assert result.data == {"ready": True, "challenge": challenge, "siteKey": site_key}
    assert said(result, f"Captcha ready: {challenge}")


async def test_wait_captcha_fails_past_its_timeout_and_the_error_policy_decides(
    widgets: BrowserContext, pages: str
) -> None:
    result = await run(
        widgets,
        {
            "url": pages + "/hcaptcha",
            "actions": [
                {"type": "on_error"},
                {"type": "set", "varName": "handled", "value": "{$error.message}"},
                {"type": "end"},
                {"type": "wait_captcha", "captchaType": "recaptcha_v2", "timeout": 400},
                {"type": "set", "varName": "handled", "value": "never"},
            ],
            "extractionScript": "return '{$handled}'",
        },
    )
    assert result.data == "wait_captcha: no ready recaptcha_v2 CAPTCHA found within 400ms"
    unknown = await run(
        widgets,
        {"url": pages + "/hcaptcha", "actions": [{"type": "wait_captcha", "captchaType": "x"}]},
    )
    assert said(unknown, "unsupported captchaType 'x'"), unknown.logs


async def test_solve_captcha_without_a_solver_says_so_and_fails(
    widgets: BrowserContext, pages: str
) -> None:
    result = await run(
        widgets,
        {
            "url": pages + "/recaptcha",
            "actions": [
                {"type": "on_error"},
                {"type": "set", "varName": "handled", "value": "yes"},
                {"type": "end"},
                {"type": "solve_captcha"},
            ],
            "extractionScript": "return '{$handled}'",
        },
    )
    assert said(result, "FAILED action solve_captcha: no captcha solver is configured"), result.logs
    assert result.data == "yes"  # the task's error policy decides what follows


@pytest.mark.parametrize(
    ("path", "task_type", "field", "called"),
    [
        ("/recaptcha", "RecaptchaV2TaskProxyless", "g-recaptcha-response", "solved:"),
        ("/hcaptcha", "HCaptchaTaskProxyless", "h-captcha-response", None),
        ("/turnstile", "TurnstileTaskProxyless", "cf-turnstile-response", "turnstile:"),
    ],
)
async def test_solve_captcha_asks_the_solver_and_puts_the_token_in_the_page(
    widgets: BrowserContext,
    pages: str,
    path: str,
    task_type: str,
    field: str,
    called: str | None,
) -> None:
    with serve_solver(FakeSolver()) as solver:
        result = await run(
            widgets,
            {
                "url": pages + path,
                "actions": [{"type": "solve_captcha", "varName": "solved"}],
                "extractionScript": (
                    f"return [document.querySelector('[name=\"{field}\"]').value,"
                    " document.title, {$solved}]"
                ),
            },
            solver=solver,
        )
    assert result.outcome == "success", result.logs
    value, title, solved = result.data  # type: ignore[misc]
    assert value == TOKEN
    assert title == (f"{called}{TOKEN}" if called else "start")
    assert solved["success"] is True and solved["provider"] == "remote"
    created = solver.created()
    assert created["type"] == task_type
    assert created["websiteURL"] == pages + path
    assert created["websiteKey"] and created["userAgent"]
    assert all(body["clientKey"] == KEY for _, body in solver.calls)
    assert [path for path, _ in solver.calls] == ["/createTask", "/getTaskResult", "/getTaskResult"]


async def test_a_solver_error_fails_the_action_without_showing_the_key(
    widgets: BrowserContext, pages: str
) -> None:
    with serve_solver(FakeSolver(error=f"ERROR_KEY_DOES_NOT_EXIST ({KEY})")) as solver:
        result = await run(
            widgets,
            {"url": pages + "/hcaptcha", "actions": [{"type": "solve_captcha"}]},
            solver=solver,
        )
    assert said(result, "the remote solver failed: /createTask: ERROR_KEY_DOES_NOT_EXIST"), (
        result.logs
    )
    assert not any(KEY in line for line in result.logs)


async def test_auto_solve_after_the_start_page_and_after_a_click(
    widgets: BrowserContext, pages: str
) -> None:
    read = "return document.querySelector('[name=\"g-recaptcha-response\"]').value"
    with serve_solver(FakeSolver(processing=0)) as solver:
        at_start = await run(
            widgets,
            {"url": pages + "/recaptcha", "autoSolveCaptcha": True, "extractionScript": read},
            solver=solver,
        )
        after_click = await run(
            widgets,
            {
                "url": pages + "/click-captcha",
                "autoSolveCaptcha": True,
                "actions": [{"type": "click", "selector": "#login"}],
                "extractionScript": read,
            },
            solver=solver,
            # The start page has no widget, so it is looked for this long in vain; the
            # widget the click adds is ready at once, well inside the production default.
            detect_ms=5000,
        )
        not_asked = await run(
            widgets,
            {"url": pages + "/recaptcha", "extractionScript": read},
            solver=solver,
        )
    assert at_start.data == TOKEN and said(at_start, "Auto-solved captcha: recaptcha_v2")
    assert after_click.data == TOKEN, after_click.logs
    assert not_asked.data == ""
    assert [
        task["websiteKey"]
        for path, body in solver.calls
        if path == "/createTask"
        for task in [body["task"]]
    ] == ["site-rc", "site-click"]


async def test_auto_solve_says_nothing_without_a_widget_and_logs_a_failure(
    widgets: BrowserContext, pages: str
) -> None:
    quiet = await run(
        widgets,
        {"url": pages + "/no-captcha", "autoSolveCaptcha": True, "actions": []},
        detect_ms=300,  # no widget ever comes: how long it is looked for does not matter
    )
    assert not said(quiet, "[CAPTCHA") and not said(quiet, "Auto-solved"), quiet.logs
    failed = await run(widgets, {"url": pages + "/hcaptcha", "autoSolveCaptcha": True})
    assert failed.error is None  # logged; neither the action nor the run failed
    assert said(failed, "[CAPTCHA ERROR] Auto-solve attempt failed: no captcha solver")


async def test_upload_without_items_fails_as_figranium_and_finalize_uploads_marks_none(
    widgets: BrowserContext, pages: str
) -> None:
    result = await run(
        widgets,
        {
            "url": pages + "/no-captcha",
            "actions": [
                {"type": "upload", "selector": "", "cabinetId": "c1"},
                {"type": "upload", "selector": "#f", "cabinetId": "c1", "markAsUploaded": True},
                {"type": "finalize_uploads"},
            ],
        },
    )
    assert said(result, "FAILED action upload: Upload selector is required."), result.logs
    assert said(result, "FAILED action upload: No unuploaded items in this cabinet.")
    assert said(result, "Finalized 0 upload(s)")


@pytest.mark.parametrize(
    ("op", "selector", "expected"),
    [
        ("exists", "#next", "yes"),
        ("exists", "#missing", "no"),
        ("not_exists", "#missing", "yes"),
        ("not_exists", "{$button}", "no"),
    ],
)
async def test_selector_conditions_and_selector_variables(
    widgets: BrowserContext, pages: str, op: str, selector: str, expected: str
) -> None:
    result = await run(
        widgets,
        {
            "url": pages + "/no-captcha",
            "variables": {"button": {"type": "selector", "value": "#next"}},
            "actions": [
                {"type": "set", "varName": "r", "value": "no"},
                {
                    "type": "if",
                    "conditionVarType": "selector",
                    "conditionOp": op,
                    "selector": selector,
                },
                {"type": "set", "varName": "r", "value": "yes"},
                {"type": "end"},
            ],
            "extractionScript": "return '{$r}'",
        },
    )
    assert result.data == expected, result.logs


async def test_a_task_sets_its_own_loop_cap_and_the_error_names_the_loop(
    widgets: BrowserContext, pages: str
) -> None:
    result = await run(
        widgets,
        {
            "url": pages + "/no-captcha",
            "maxLoopIterations": 3,
            "actions": [
                {"type": "repeat", "value": "2"},
                {"type": "end"},
                {"id": "poll", "type": "while", "value": "true"},
                {"type": "noop"},
                {"type": "end"},
            ],
        },
    )
    assert result.outcome == "error"
    assert result.error is not None
    assert "the while loop at action 3 (id 'poll') went past 3 iterations" in result.error
