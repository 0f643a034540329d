"""Bounds on the work a task or a page can make a runner do: patterns, variables, logs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from playwright.async_api import BrowserContext

from figranium_common.action_models import IfAction
from figranium_common.models import RunResult, Task
from figranium_runner.bounds import Bounds, LimitExceeded, LogBudget, json_size
from figranium_runner.conditions import structured
from figranium_runner.engine import Limits, execute
from figranium_runner.variables import substitute, text_limit

# The browser tests share the module's Chromium, on the module's event loop.
in_module_loop = pytest.mark.asyncio(loop_scope="module")

# Backtracks exponentially in Python's `re` and in the `regex` package alike.
CATASTROPHIC = r"(a|aa)+$"


async def run(
    context: BrowserContext, task: dict[str, Any], bounds: Bounds
) -> tuple[RunResult, list[str]]:
    lines: list[str] = []

    async def emit(line: str) -> None:
        lines.append(line)

    page = await context.new_page()
    try:
        result, _ = await execute(
            page,
            Task.model_validate(task),
            {},
            execution_id="exec_bounds",
            limits=Limits(allow_private=True, default_timeout_ms=2000, bounds=bounds),
            emit=emit,
        )
    finally:
        await page.close()
    return result, lines


class Ticker:
    """Measures the longest the event loop went without running a 10 ms timer."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.ticks = 0

    async def run(self, until: asyncio.Future[Any]) -> None:
        last = time.monotonic()
        while not until.done():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            self.longest = max(self.longest, now - last)
            self.ticks += 1
            last = now


@in_module_loop
async def test_a_pattern_past_its_time_fails_off_the_event_loop() -> None:
    # 34 characters: Python's `re` on the loop would block it for seconds and then answer
    # "no match"; here the match runs in a thread and stops at the bound.
    action = IfAction.model_validate(
        {
            "type": "if",
            "conditionVarType": "string",
            "conditionVar": "{$subject}",
            "conditionOp": "matches",
            "conditionValue": CATASTROPHIC,
        }
    )
    variables = {"subject": "a" * 34 + "!"}
    ticker = Ticker()
    matching = asyncio.ensure_future(structured(action, variables, 1000))
    watching = asyncio.ensure_future(ticker.run(matching))
    started = time.monotonic()
    with pytest.raises(LimitExceeded) as raised:
        await matching
    elapsed = time.monotonic() - started
    await watching
    assert "RUNNER_REGEX_TIMEOUT_MS (1000 ms)" in raised.value.details
    assert 0.9 < elapsed < 5
    assert ticker.ticks >= 20 and ticker.longest < 0.5, ticker.longest


@in_module_loop
async def test_javascript_pattern_syntax_still_matches() -> None:
    async def matches(subject: str, pattern: str) -> bool:
        action = IfAction.model_validate(
            {
                "type": "if",
                "conditionVar": "{$s}",
                "conditionOp": "matches",
                "conditionValue": pattern,
            }
        )
        return await structured(action, {"s": subject}, 250)

    assert await matches("price: 42 EUR", r"(?<=price: )\d+(?= EUR)")
    assert not await matches("price: 42 USD", r"(?<=price: )\d+(?= EUR)")
    assert await matches("abab", r"^(ab)\1$")
    assert await matches("xyxy", r"^(?<pair>xy)\k<pair>$")
    assert not await matches("xyxz", r"^(?<pair>xy)\k<pair>$")
    assert not await matches("abc", r"(unbalanced")  # a broken pattern matches nothing


@in_module_loop
async def test_catastrophic_pattern_fails_its_action_and_stalls_nothing(
    context: BrowserContext, base: str
) -> None:
    def condition(pattern: str, name: str) -> list[dict[str, Any]]:
        return [
            {
                "type": "if",
                "conditionVarType": "string",
                "conditionVar": "{$subject}",
                "conditionOp": "matches",
                "conditionValue": pattern,
            },
            {"type": "set", "varName": name, "value": "matched"},
            {"type": "else"},
            {"type": "set", "varName": name, "value": "no match"},
            {"type": "end"},
        ]

    task = {
        "url": f"{base}/form",
        "variables": {"subject": {"type": "string", "value": "a" * 40 + "!"}},
        "actions": [
            *condition(r"^(a+)+$", "nested"),
            *condition(CATASTROPHIC, "alternation"),
            {"type": "set", "varName": "after", "value": "went on"},
        ],
        "extractionScript": "return ['{$nested}', '{$alternation}', '{$after}']",
    }
    ticker = Ticker()
    running = asyncio.ensure_future(run(context, task, Bounds(regex_timeout_ms=500)))
    watching = asyncio.ensure_future(ticker.run(running))
    started = time.monotonic()
    result, lines = await running
    await watching
    assert time.monotonic() - started < 30
    # The nested quantifier is one the `regex` package answers at once; the alternation
    # backtracks for ever and fails its `if` (neither branch runs), and the run goes on.
    assert result.data == ["no match", "", "went on"], result.logs
    errors = [line for line in result.logs if line.startswith("[ERROR]")]
    assert len(errors) == 1 and "RUNNER_REGEX_TIMEOUT_MS (500 ms)" in errors[0], result.logs
    assert any(line.startswith("FAILED action if: condition:") for line in result.logs)
    assert errors[0] in lines
    assert ticker.longest < 0.4, ticker.longest


@in_module_loop
async def test_merge_doubling_in_a_loop_stops_at_the_variable_bound(
    context: BrowserContext, base: str
) -> None:
    limit = 64 * 1024
    task = {
        "url": f"{base}/form",
        "actions": [
            {"type": "set", "varName": "a", "value": "[1]"},
            {"type": "repeat", "value": "20"},
            {"type": "merge", "value": "{$a},{$a}", "varName": "a"},
            {"type": "end"},
        ],
    }
    started = time.monotonic()
    result, _ = await run(context, task, Bounds(max_variable_bytes=limit))
    assert time.monotonic() - started < 30
    merged = [int(line.split()[1]) for line in result.logs if line.startswith("Merged ")]
    # 2, 4, … 16384 items (each one at least a digit and a comma as JSON); then refused.
    assert merged == [2**n for n in range(1, 15)], merged
    errors = [line for line in result.logs if line.startswith("[ERROR]")]
    assert len(errors) == 6, result.logs
    assert all(
        f"merged value is larger than RUNNER_MAX_VARIABLE_BYTES ({limit}" in e for e in errors
    )


@in_module_loop
async def test_substitution_and_total_variables_are_bounded(
    context: BrowserContext, base: str
) -> None:
    chunk = "x" * 20_000
    task = {
        "url": f"{base}/form",
        "variables": {"chunk": {"type": "string", "value": chunk}},
        "actions": [
            # Four copies (80 kB) of a 20 kB variable: past a 64 kB bound.
            {"type": "set", "varName": "big", "value": "{$chunk}{$chunk}{$chunk}{$chunk}"},
            {"type": "repeat", "value": "8"},
            {"type": "set", "varName": "copy{$loop.index}", "value": "{$chunk}"},
            {"type": "end"},
        ],
        "extractionScript": "return ['{$big}'.length, '{$copy4}'.length, '{$copy5}'.length]",
    }
    result, _ = await run(
        context, task, Bounds(max_variable_bytes=64 * 1024, max_variables_bytes=130_000)
    )
    # Five copies and the last action's output (another copy) fit in the 130 kB in all;
    # the sixth copy and the ones after it do not.
    assert result.data == [0, 20_000, 0], result.logs
    errors = [line for line in result.logs if line.startswith("[ERROR]")]
    assert "substitution is larger than RUNNER_MAX_VARIABLE_BYTES (65536 bytes)" in errors[0]
    assert len(errors) == 4 and all(
        "RUNNER_MAX_VARIABLES_BYTES (130000 bytes)" in e for e in errors[1:]
    ), errors


@in_module_loop
async def test_log_lines_are_cut_and_counted(context: BrowserContext, base: str) -> None:
    task = {
        "url": f"{base}/form",
        "actions": [
            {"type": "fill", "selector": "#q", "value": "y" * 5000},
            {"type": "repeat", "value": "100"},
            {"type": "noop"},
            {"type": "end"},
            {"type": "stop", "value": "error"},
        ],
        "extractionScript": "for (let i = 0; i < 100000; i++) console.log('z'); return 1",
    }
    result, lines = await run(context, task, Bounds(max_log_lines=30, max_log_line_chars=200))
    assert len(result.logs) == 31, result.logs  # 30, and how the run ended
    assert all(len(line) <= 200 for line in result.logs)
    assert "[cut at RUNNER_MAX_LOG_LINE_CHARS (200)]" in result.logs[1], result.logs[1]
    assert result.logs[29].startswith("[ERROR]") and "RUNNER_MAX_LOG_LINES (30)" in result.logs[29]
    assert result.logs[30].startswith("Run failed:")
    assert lines == result.logs


@in_module_loop
async def test_text_and_elements_taken_from_the_page_are_bounded(
    context: BrowserContext, base: str
) -> None:
    task = {
        "url": f"{base}/scroll",
        "actions": [
            {"type": "get_content", "varName": "text"},
            {"type": "foreach", "selector": "*"},
            {"type": "noop"},
            {"type": "end"},
        ],
    }
    result, _ = await run(context, task, Bounds(max_variable_bytes=100))
    errors = [line for line in result.logs if line.startswith("[ERROR]")]
    assert len(errors) == 2, result.logs
    assert "the text of the page is larger than RUNNER_MAX_VARIABLE_BYTES (100" in errors[0]
    assert "the matched elements is larger than RUNNER_MAX_VARIABLE_BYTES (100" in errors[1]


def test_json_size_stops_counting_past_the_limit() -> None:
    shared = ["x" * 1000] * 1000
    huge = [shared] * 1_000_000  # a billion strings as JSON; a few pointers in memory
    started = time.monotonic()
    assert json_size(huge, 10_000) > 10_000
    assert time.monotonic() - started < 0.5
    exact = len('{"a":[1,"é",null,true]}'.encode())
    assert exact <= json_size({"a": [1, "é", None, True]}, 1000) <= exact + 8


def test_substitution_is_bounded_only_inside_a_run() -> None:
    variables = {"a": "x" * 600}
    assert len(substitute("{$a}{$a}", variables)) == 1200
    with text_limit(1000), pytest.raises(LimitExceeded) as raised:
        substitute("{$a}{$a}", variables)
    assert "RUNNER_MAX_VARIABLE_BYTES (1000 bytes)" in raised.value.details


def test_log_budget_always_says_how_a_run_ended() -> None:
    budget = LogBudget(Bounds(max_log_lines=3, max_log_line_chars=100))
    said = [budget.admit(f"line {n}") for n in range(5)]
    assert said[:2] == ["line 0", "line 1"]
    assert said[2] is not None and said[2].startswith("[ERROR]")
    assert said[3:] == [None, None]
    assert budget.admit("Run failed: x", always=True) == "Run failed: x"
