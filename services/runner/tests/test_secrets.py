"""Secrets stay out of what a run says: password fields, secret variables, URL credentials;
and CSV output a spreadsheet would run as formulas is neutralised."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from playwright.async_api import BrowserContext

from figranium_common.models import RunResult, Task
from figranium_common.redact import SECRET_MASK
from figranium_runner.engine import Limits, execute
from figranium_runner.extraction import as_csv

in_browser = pytest.mark.asyncio(loop_scope="module")

LOGIN = """<!doctype html><html><body>
<input id="user"><input id="pw" type="password"><input id="pin" autocomplete="current-password">
<input id="shown">
</body></html>"""


async def run(
    context: BrowserContext,
    task: dict[str, Any],
    variables: dict[str, Any] | None = None,
    *,
    content: str | None = None,
    subtasks: dict[str, dict[str, Any]] | None = None,
    neutralise_csv: bool = True,
) -> tuple[RunResult, list[str]]:
    """The result and every line emitted (what the log events, the SSE stream and the
    stored logs are made of)."""
    emitted: list[str] = []

    async def emit(line: str) -> None:
        emitted.append(line)

    page = await context.new_page()
    if content is not None:
        await page.set_content(content)
    result, _ = await execute(
        page,
        Task.model_validate(task),
        variables or {},
        execution_id="exec_s",
        limits=Limits(allow_private=True, default_timeout_ms=2000, neutralise_csv=neutralise_csv),
        emit=emit,
        subtasks={name: Task.model_validate(body) for name, body in (subtasks or {}).items()},
    )
    await page.close()
    return result, emitted


def shown(result: RunResult, emitted: list[str]) -> str:
    """Everything a run lets out, as one text to search."""
    return "\n".join(emitted) + "\n" + result.model_dump_json()


@in_browser
async def test_text_typed_into_a_password_field_is_masked(context: BrowserContext) -> None:
    task = {
        "actions": [
            {"type": "type", "selector": "#user", "value": "alice"},
            {"type": "type", "selector": "#pw", "value": "hunter2-pw"},
            {"type": "type", "selector": "#pin", "value": "pin-7731"},
            {"type": "click", "selector": "#pw"},
            {"type": "type", "value": "-more", "typeMode": "append"},
            # The page copies the password elsewhere; the result still does not show it.
            {"type": "javascript", "value": "shown.value = pw.value; return pw.value"},
        ],
        "extractionScript": "return [user.value, pw.value, pw.value.length, pin.value,"
        " shown.value]",
    }
    result, emitted = await run(context, task, content=LOGIN)
    assert result.outcome == "success", result.logs
    text = shown(result, emitted)
    for secret in ("hunter2-pw", "pin-7731", "-more"):
        assert secret not in text
    # The field got the real text; only what is shown of it is masked.
    both = SECRET_MASK * 2  # what was typed in two goes is hidden as two secrets
    assert result.data == ["alice", both, len("hunter2-pw-more"), SECRET_MASK, both]
    assert any(line.startswith(f"Typing into #pw: {SECRET_MASK} (") for line in emitted)
    assert any(line.startswith(f"Typing (global): {SECRET_MASK} (") for line in emitted)
    assert any(line.startswith("Typing into #user: alice (") for line in emitted)


@in_browser
async def test_secret_variables_never_show(context: BrowserContext, base: str) -> None:
    child = {
        "id": "child",
        "url": f"{base}/form",
        "variables": {"pin": {"type": "secret", "value": "child-pin-55"}},
        "actions": [{"type": "type", "selector": "#q", "value": "{$pin}/{$token}"}],
        "extractionScript": "return document.querySelector('#q').value",
    }
    task = {
        "variables": {
            "token": {"type": "secret", "value": "default-token-1"},
            "name": {"type": "string", "value": "visible-name"},
        },
        "actions": [
            {"type": "type", "selector": "#user", "value": "{$name}:{$token}"},
            {"type": "set", "varName": "copy", "value": "copy of {$token}"},
            {"type": "navigate", "value": "{$token}"},  # fails: its error names the value
            {"type": "start", "value": "child"},
        ],
        "extractionScript": "return {typed: user.value, reversed:"
        " user.value.split('').reverse().join(''), copy: '{$copy}'}",
    }
    result, emitted = await run(
        context, task, {"token": "run-token-2"}, content=LOGIN, subtasks={"child": child}
    )
    assert result.outcome == "success", result.logs
    text = shown(result, emitted)
    for secret in ("run-token-2", "default-token-1", "child-pin-55"):
        assert secret not in text
    assert result.data["typed"] == f"visible-name:{SECRET_MASK}"
    assert result.data["copy"] == f"copy of {SECRET_MASK}"
    # What the page got is the run's value (shown reversed, so the mask cannot hide it).
    assert result.data["reversed"] == "visible-name:run-token-2"[::-1]
    assert any(f"Typing into #user: visible-name:{SECRET_MASK}" in line for line in emitted)
    assert any(line.startswith("FAILED action navigate") for line in emitted)
    assert any(f"Typing into #q: {SECRET_MASK}/{SECRET_MASK}" in line for line in emitted)


@in_browser
async def test_url_credentials_are_masked_in_lines_and_result(
    context: BrowserContext, base: str
) -> None:
    host = base.removeprefix("http://")
    task = {
        "url": f"http://opener:first-pass@{host}/form",
        "actions": [
            {"type": "navigate", "value": f"http://walker:second-pass@{host}/items"},
            {"type": "http_request", "value": f"http://caller:third-pass@{host}/api/data"},
        ],
        "extractionScript": "return location.href",
    }
    result, emitted = await run(context, task)
    text = shown(result, emitted)
    for secret in ("first-pass", "second-pass", "third-pass", "opener:", "walker:", "caller:"):
        assert secret not in text
    assert f"Navigating to http://{SECRET_MASK}@{host}/form" in emitted
    assert any(f"Navigating to http://{SECRET_MASK}@{host}/items (" in line for line in emitted)
    assert any(f"HTTP GET http://{SECRET_MASK}@{host}/api/data" in line for line in emitted)


# --- CSV --------------------------------------------------------------------------------


def cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_csv_cells_that_would_run_as_formulas_are_neutralised() -> None:
    link = '=HYPERLINK("x")'
    rows = [
        {link: "=1+1", "b": "+cmd", "c": "-2+3+cmd|' /C calc'!A0", "d": "@SUM(A1)"},
        {link: "\tlead", "b": "x", "c": "-5", "d": "+1.5e3"},
        {link: -5, "b": -2.5, "c": "plain - text", "d": None},
    ]
    assert cells(as_csv(rows)) == [
        ["'" + link, "b", "c", "d"],
        ["'=1+1", "'+cmd", "'-2+3+cmd|' /C calc'!A0", "'@SUM(A1)"],
        ["'\tlead", "x", "-5", "+1.5e3"],  # plain numbers, as text too, stay numbers
        ["-5", "-2.5", "plain - text", ""],
    ]
    assert cells(as_csv([["=x", -1, "-1"], "@y"])) == [["'=x", "-1", "-1"], ["'@y"]]
    assert as_csv(["\rcr"]) == "'\rcr\n"
    assert cells(as_csv(rows, neutralise=False))[:2] == [
        [link, "b", "c", "d"],
        ["=1+1", "+cmd", "-2+3+cmd|' /C calc'!A0", "@SUM(A1)"],
    ]


@in_browser
async def test_csv_extraction_is_neutralised_unless_turned_off(
    context: BrowserContext,
) -> None:
    task = {
        "extractionScript": "return [{name: '=cmd|\\' /C calc\\'!A0', n: -3, s: '-3'}]",
        "extractionFormat": "csv",
    }
    result, _ = await run(context, task)
    assert result.data == "name,n,s\n'=cmd|' /C calc'!A0,-3,-3\n"
    result, _ = await run(context, task, neutralise_csv=False)
    assert result.data == "name,n,s\n=cmd|' /C calc'!A0,-3,-3\n"


def test_secret_variables_are_a_declared_type() -> None:
    task = Task.model_validate({"variables": {"t": {"type": "secret", "value": "x"}}})
    assert json.loads(task.model_dump_json())["variables"]["t"]["type"] == "secret"
