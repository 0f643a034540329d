"""Every action type and every condition operator, run through a real Chromium."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.async_api import BrowserContext

from figranium_common.cabinet_models import CabinetPlan, item_object
from figranium_common.models import RunResult, Task
from figranium_runner.cabinet_run import RunCabinets
from figranium_runner.engine import Limits, execute
from figranium_runner.state import Capture
from services.runner.tests.site import serve

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[str, list[str]]]:
    with serve() as served:
        yield served


@pytest.fixture(scope="module")
def base(site: tuple[str, list[str]]) -> str:
    return site[0]


async def run(
    context: BrowserContext,
    task: dict[str, Any],
    variables: dict[str, Any] | None = None,
    *,
    allow_private: bool = True,
    subtasks: dict[str, dict[str, Any]] | None = None,
    max_loop_iterations: int = 1000,
    max_download_bytes: int = 100 * 1024 * 1024,
    cabinets: RunCabinets | None = None,
) -> tuple[RunResult, list[Capture]]:
    lines: list[str] = []

    async def emit(line: str) -> None:
        lines.append(line)

    page = await context.new_page()
    result, captures = await execute(
        page,
        Task.model_validate(task),
        variables or {},
        execution_id="exec_t",
        limits=Limits(
            allow_private=allow_private,
            default_timeout_ms=2000,
            max_loop_iterations=max_loop_iterations,
            max_download_bytes=max_download_bytes,
        ),
        emit=emit,
        subtasks={name: Task.model_validate(body) for name, body in (subtasks or {}).items()},
        cabinets=cabinets,
    )
    assert [line for line in lines if not line.startswith("[")] == [
        line for line in result.logs if not line.startswith("[")
    ]
    return result, captures


def logged(result: RunResult, fragment: str) -> bool:
    """Whether any line of the run's log contains ``fragment``."""
    return any(fragment in line for line in result.logs)


def js(expression: str) -> str:
    return f"return {expression}"


# --- one task, one extracted value ----------------------------------------------------

# Each case: the page the task opens, the rest of the task, and what its extraction returns.
EXTRACTS: dict[str, tuple[str, dict[str, Any], Any]] = {
    "click_single_and_double": (
        "/form",
        {
            "actions": [
                {"type": "fill", "selector": "#q", "value": "cherry"},
                {"type": "click", "selector": "#add"},
                {"type": "click", "selector": "#clicks", "clickType": "double"},
                {"type": "set", "varName": "afterDouble", "value": "x"},
            ],
            "extractionScript": js(
                "[document.querySelectorAll('#items li').length,"
                " document.querySelector('#clicks').textContent]"
            ),
        },
        [3, "double"],
    ),
    "click_right": (
        "/form",
        {
            "actions": [{"type": "click", "selector": "#clicks", "clickType": "right"}],
            "extractionScript": js("document.querySelector('#clicks').textContent"),
        },
        "right",
    ),
    "type_replace_append_and_focus": (
        "/form",
        {
            "actions": [
                {"type": "type", "selector": "#q", "value": "hello"},
                {"type": "type", "selector": "#q", "value": " world", "typeMode": "append"},
                {"type": "click", "selector": "#notes"},
                {"type": "type", "value": "focused"},
            ],
            "extractionScript": js(
                "[document.querySelector('#q').value, document.querySelector('#notes').value]"
            ),
        },
        ["hello world", "focused"],
    ),
    "type_human": (
        "/form",
        {
            "humanTyping": True,
            "actions": [{"type": "type", "selector": "#q", "value": "slow"}],
            "extractionScript": js("document.querySelector('#q').value"),
        },
        "slow",
    ),
    "hover_press_select_check_uncheck": (
        "/form",
        {
            "actions": [
                {"type": "hover", "selector": "#hover"},
                {"type": "click", "selector": "#q"},
                {"type": "press", "key": "Control+Shift+K"},
                {"type": "select", "selector": "#fruit", "value": "b"},
                {"type": "check", "selector": "#agree"},
                {"type": "uncheck", "selector": "#news"},
            ],
            "extractionScript": js(
                "[document.querySelector('#hover').textContent,"
                " document.querySelector('#keys').textContent,"
                " document.querySelector('#fruit').value,"
                " document.querySelector('#agree').checked,"
                " document.querySelector('#news').checked]"
            ),
        },
        ["hovered", "Control+Shift+K", "b", True, False],
    ),
    "select_by_label": (
        "/form",
        {
            "actions": [{"type": "select", "selector": "#fruit", "value": "Banana"}],
            "extractionScript": js("document.querySelector('#fruit').value"),
        },
        "b",
    ),
    "drag_and_drop": (
        "/form",
        {
            "actions": [{"type": "drag_and_drop", "selector": "#src", "targetSelector": "#dst"}],
            "extractionScript": js("document.querySelector('#dropped').textContent"),
        },
        "dropped src",
    ),
    "scroll_page_and_container": (
        "/scroll",
        {
            "actions": [
                {"type": "scroll", "value": 3000, "key": "100"},
                {"type": "wait", "value": 0.3},
                {"type": "scroll", "selector": "#box", "value": 250, "key": "0"},
            ],
            "extractionScript": js(
                "[document.querySelectorAll('#feed li').length > 20,"
                " document.querySelector('#box').scrollTop]"
            ),
        },
        [True, 250],
    ),
    "javascript_output_feeds_block_output": (
        "/form",
        {
            "actions": [
                {"type": "javascript", "value": "document.title + '!'"},
                {"type": "type", "selector": "#q", "value": "{$block.output}"},
                {"type": "javascript", "value": "const n = 2; return n * 21;"},
                {"type": "set", "varName": "answer", "value": "{$block.output}"},
            ],
            "extractionScript": "return [document.querySelector('#q').value, '{$answer}']",
        },
        ["Form!", "42"],
    ),
    "get_content_set_merge_csv": (
        "/items",
        {
            "actions": [
                {"type": "get_content", "selector": "ul", "varName": "list"},
                {"type": "set", "varName": "a", "value": "[1, 2]"},
                {"type": "set", "varName": "b", "value": "[3]"},
                {"type": "merge", "value": "a, {$b}", "varName": "ab"},
                {"type": "set", "varName": "o1", "value": '{"x": 1}'},
                {"type": "set", "varName": "o2", "value": '{"y": true}'},
                {"type": "merge", "value": "o1,o2", "varName": "o"},
                {"type": "set", "varName": "raw", "value": 'name,qty\n"pear, green",2'},
                {"type": "csv", "value": "raw", "varName": "rows"},
            ],
            "extractionScript": "return {list: `{$list}`, ab: {$ab}, o: {$o}, rows: {$rows}}",
        },
        {
            "list": "one\ntwo\nthree",
            "ab": [1, 2, 3],
            "o": {"x": 1, "y": True},
            "rows": [{"name": "pear, green", "qty": "2"}],
        },
    ),
    "while_repeat_and_loop_variables": (
        "/form",
        {
            "actions": [
                {"type": "set", "varName": "n", "value": "0"},
                {"type": "while", "value": "vars.n < 3"},
                {"type": "javascript", "value": "{$n} + 1"},
                {"type": "set", "varName": "n", "value": "{$block.output}"},
                {"type": "end"},
                {"type": "repeat", "value": "2"},
                {"type": "fill", "selector": "#q", "value": "r{$loop.index}/{$loop.count}"},
                {"type": "click", "selector": "#add"},
                {"type": "end"},
            ],
            "extractionScript": "return [{$n}, [...document.querySelectorAll('#items li')]"
            ".slice(2).map(li => li.textContent)]",
        },
        [3, ["r0/2", "r1/2"]],
    ),
    "foreach_over_elements_and_variables": (
        "/items",
        {
            "extractionScript": "return [{$seen}, '{$last}']",
            "actions": [
                {"type": "set", "varName": "seen", "value": "[]"},
                {"type": "foreach", "selector": ".item"},
                {"type": "set", "varName": "one", "value": '["{$loop.text}"]'},
                {"type": "merge", "value": "seen,one", "varName": "seen"},
                {"type": "end"},
                {"type": "set", "varName": "list", "value": '["x", "y"]'},
                {"type": "foreach", "varName": "list"},
                {"type": "set", "varName": "last", "value": "{$loop.item}{$loop.index}"},
                {"type": "end"},
            ],
        },
        [["one", "two", "three"], "y1"],
    ),
    "loop_html_variable": (
        "/items",
        {
            "actions": [
                {"type": "foreach", "selector": ".item"},
                {"type": "set", "varName": "last", "value": "{$loop.html}"},
                {"type": "end"},
            ],
            "extractionScript": "return `{$last}`",
        },
        '<li class="item">three</li>',
    ),
    "extraction_sees_shadow_dom_and_csv": (
        "/shadow",
        {
            "extractionScript": "return data.shadowQueryAll('.p').map(e => ({fruit: e.textContent,"
            " note: 'a, \"b\"'}))",
            "extractionFormat": "csv",
        },
        'fruit,note\npear,"a, ""b"""\nplum,"a, ""b"""\n',
    ),
}


@pytest.mark.parametrize(("path", "task", "expected"), EXTRACTS.values(), ids=EXTRACTS)
async def test_task_extracts(
    context: BrowserContext, base: str, path: str, task: dict[str, Any], expected: Any
) -> None:
    result, _ = await run(context, {"url": f"{base}{path}", **task})
    assert result.data == expected, result.logs


# --- one test per action type -------------------------------------------------------


async def test_navigate_and_goto(context: BrowserContext, base: str) -> None:
    result, _ = await run(
        context,
        {
            "url": f"{base}/form",
            "actions": [
                {"type": "navigate", "value": f"{base}/items"},
                {"type": "goto", "value": "{$home}/form"},
            ],
            "variables": {"home": {"type": "string", "value": base}},
            "extractionScript": js("document.title"),
        },
    )
    assert result.outcome == "success", result.logs
    assert result.data == "Form"
    assert logged(result, "#1 navigate, ok")


async def test_reload_wait_and_wait_selector(context: BrowserContext, base: str) -> None:
    result, _ = await run(
        context,
        {
            "url": f"{base}/form",
            "actions": [
                {"type": "javascript", "value": "window.marker = 1"},
                {"type": "reload"},
                {"type": "wait", "value": "0.2"},
                {"type": "wait_selector", "selector": "#add", "value": 2},
            ],
            "extractionScript": js("window.marker === undefined"),
        },
    )
    assert result.data is True
    assert logged(result, "Waiting: 200ms")
    missing, _ = await run(
        context,
        {
            "url": f"{base}/form",
            "actions": [{"type": "wait_selector", "selector": "#no", "value": 0.3}],
        },
    )
    assert logged(missing, "FAILED action wait_selector")


# A button that appears 300 ms after the action that schedules it, and records its click.
LATE_BUTTON = (
    "setTimeout(() => { const b = document.createElement('button'); b.id = 'late';"
    " b.onclick = () => { window.clicked = 1 }; document.body.append(b) }, 300)"
)


@pytest.mark.parametrize(("timeout", "clicked"), [(0, True), (1.5, False)])
async def test_an_action_timeout_of_zero_is_the_default_and_fractions_are_kept(
    context: BrowserContext, base: str, timeout: float, clicked: bool
) -> None:
    result, _ = await run(
        context,
        {
            "url": f"{base}/form",
            "actions": [
                {"type": "javascript", "value": LATE_BUTTON},
                {"type": "click", "selector": "#late", "timeout": timeout},
            ],
            "extractionScript": js("window.clicked === 1"),
        },
    )
    assert result.data is clicked
    assert logged(result, "FAILED action click") is not clicked


# The form's #dl link downloads file.csv (8 bytes).
CLICK_AND_WAIT_FOR_DOWNLOAD = [
    {"type": "click", "selector": "#dl"},
    {"type": "wait_downloads", "value": 5},
]


async def test_wait_downloads(context: BrowserContext, base: str) -> None:
    plan = CabinetPlan(download_cabinet_id="cab_invoices", default_cabinet_id="cab_basic")
    cabinets = RunCabinets(plan=plan)
    result, captures = await run(
        context,
        {
            "url": f"{base}/form",
            "actions": CLICK_AND_WAIT_FOR_DOWNLOAD,
        },
        cabinets=cabinets,
    )
    assert [d.name for d in result.downloads] == ["file.csv"]
    # A download is a cabinet item, not a capture: kept on disk, to be streamed into the
    # cabinets bucket as its item's object, not read into memory.
    assert not any("_download_" in c.name for c in captures)
    [kept] = cabinets.downloads
    assert kept.path.read_bytes() == b"a,b\n1,2\n"
    kept.path.unlink()
    stored = kept.stored
    assert stored.item_id.startswith("item_") and len(stored.item_id) == 25
    assert stored.object == item_object(stored.item_id)
    assert (stored.cabinet_id, stored.name, stored.size) == ("cab_invoices", "file.csv", 8)
    assert stored.sha256 == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    entry = result.downloads[0]
    assert entry.path == f"/api/cabinets/cab_invoices/items/{stored.item_id}/download"
    assert (entry.cabinetId, entry.itemId, entry.kind, entry.size) == (
        "cab_invoices",
        stored.item_id,
        "file",
        8,
    )


async def test_a_download_over_max_download_bytes_is_dropped_and_the_run_goes_on(
    context: BrowserContext, base: str
) -> None:
    result, captures = await run(
        context,
        {
            "url": f"{base}/form",
            "actions": CLICK_AND_WAIT_FOR_DOWNLOAD,
            "extractionScript": "return document.title",
        },
        max_download_bytes=4,
    )
    assert result.outcome == "success" and result.data == "Form", result.error
    assert result.downloads == []
    assert not any("_download_" in c.name for c in captures)
    dropped = [line for line in result.logs if line.startswith("[DOWNLOAD ERROR]")]
    assert dropped == ["[DOWNLOAD ERROR] file.csv: 8 bytes exceeds MAX_DOWNLOAD_BYTES (4); dropped"]


async def test_screenshot_labels(context: BrowserContext, base: str) -> None:
    result, captures = await run(
        context,
        {"url": f"{base}/form", "actions": [{"type": "screenshot", "label": "after/click"}]},
    )
    names = [c.name for c in captures]
    assert names[0].startswith("exec_t_agent_") and names[0].endswith("_after-click.png")
    assert result.screenshot_url == f"/captures/{names[-1]}"
    assert all(c.data.startswith(b"\x89PNG") for c in captures)


async def test_http_request(context: BrowserContext, base: str) -> None:
    result, _ = await run(
        context,
        {
            "actions": [
                {"type": "http_request", "value": f"{base}/api/data", "varName": "got"},
                {
                    "type": "http_request",
                    "method": "POST",
                    "value": f"{base}/api/echo",
                    "headers": '{"X-Token": "{$token}"}',
                    "body": '{"n": {$got.items.2}}',
                    "varName": "echo",
                },
            ],
            "variables": {"token": {"type": "string", "value": "t0k"}},
            "extractionScript": "return [{$got}, {$echo}]",
        },
    )
    assert result.outcome == "success", result.logs
    got, echo = result.data
    assert got == {"items": [1, 2, 3]}
    assert echo == {
        "method": "POST",
        "body": '{"n": 3}',
        "contentType": "application/json",
        "token": "t0k",
    }
    failing, _ = await run(
        context, {"actions": [{"type": "http_request", "value": f"{base}/api/fail"}]}
    )
    assert logged(failing, "status 500")
    refused, _ = await run(
        context,
        {"actions": [{"type": "http_request", "value": f"{base}/api/data"}]},
        allow_private=False,
    )
    assert logged(refused, "FAILED action http_request")


async def test_stop_success_and_error(context: BrowserContext, base: str) -> None:
    task = {
        "url": f"{base}/form",
        "actions": [
            {"type": "stop", "value": "{$how}"},
            {"type": "click", "selector": "#add"},
        ],
        "extractionScript": js("document.querySelectorAll('#items li').length"),
    }
    ok, _ = await run(context, task, {"how": "success"})
    assert ok.outcome == "success" and ok.data == 2
    failed, _ = await run(context, task, {"how": "error"})
    assert failed.outcome == "error" and failed.data == 2


async def test_do_nothing_and_disabled(context: BrowserContext, base: str) -> None:
    result, _ = await run(
        context,
        {
            "url": f"{base}/form",
            "actions": [
                {"type": "do_nothing"},
                {"type": "noop"},
                {"type": "pass"},
                {"type": "click", "selector": "#add", "disabled": True},
            ],
            "extractionScript": js("document.querySelectorAll('#items li').length"),
        },
    )
    assert result.data == 2
    assert sum("Do nothing" in line for line in result.logs) == 3
    assert logged(result, "SKIPPED disabled action: click")


async def test_start_runs_a_supplied_task(context: BrowserContext, base: str) -> None:
    child = {
        "id": "child",
        "url": f"{base}/items",
        "extractionScript": js(
            "[...document.querySelectorAll('.item')].map(e => e.textContent + '{$suffix}')"
        ),
    }
    result, _ = await run(
        context,
        {
            "url": f"{base}/form",
            "variables": {"suffix": {"type": "string", "value": "!"}},
            "actions": [
                {"type": "start", "value": "child"},
                {"type": "set", "varName": "fromChild", "value": "{$block.output}"},
                {"type": "start", "value": "missing"},
            ],
            "extractionScript": "return {$fromChild}",
        },
        subtasks={"child": child},
    )
    assert result.data == ["one!", "two!", "three!"]
    assert logged(result, "'missing' does not exist")


# --- blocks and loops ---------------------------------------------------------------


async def test_if_else_with_javascript_conditions(context: BrowserContext, base: str) -> None:
    def task(expression: str) -> dict[str, Any]:
        return {
            "url": f"{base}/form",
            "actions": [
                {"type": "if", "value": expression},
                {"type": "set", "varName": "branch", "value": "then"},
                {"type": "else"},
                {"type": "set", "varName": "branch", "value": "else"},
                {"type": "end"},
            ],
            "variables": {"limit": {"type": "number", "value": 3}},
            "extractionScript": "return '{$branch}'",
        }

    for expression, expected in [
        ("exists('#add')", "then"),
        ("exists('#nope')", "else"),
        ("text('#items li') === 'apple'", "then"),
        ("url().endsWith('/form')", "then"),
        ("vars.limit > 5", "else"),
        ("html.includes('banana')", "then"),
    ]:
        result, _ = await run(context, task(expression))
        assert result.data == expected, expression


STRUCTURED = [
    ("string", "equals", "abc", "abc", True),
    ("string", "equals", "abc", "abd", False),
    ("string", "not_equals", "abc", "abd", True),
    ("string", "contains", "abcdef", "cde", True),
    ("string", "contains", "abcdef", "xyz", False),
    ("string", "starts_with", "abcdef", "ab", True),
    ("string", "ends_with", "abcdef", "ef", True),
    ("string", "ends_with", "abcdef", "ab", False),
    ("string", "matches", "order-123", r"^order-\d+$", True),
    ("string", "matches", "order-x", r"^order-\d+$", False),
    ("number", "gt", "10", "9", True),
    ("number", "gt", "9", "10", False),
    ("number", "gte", "10", "10", True),
    ("number", "lt", "2", "10", True),
    ("number", "lte", "11", "10", False),
    ("number", "equals", "3.0", "3", True),
    ("number", "not_equals", "3", "4", True),
    ("boolean", "is_true", "true", "", True),
    ("boolean", "is_true", "false", "", False),
    ("boolean", "is_false", "false", "", True),
    ("string", "exists", "something", "", True),
    ("string", "exists", "", "", False),
    ("string", "not_exists", "", "", True),
    ("string", "not_exists", "something", "", False),
]


@pytest.mark.parametrize(("kind", "op", "left", "right", "expected"), STRUCTURED)
async def test_structured_condition_operators(
    context: BrowserContext, base: str, kind: str, op: str, left: str, right: str, expected: bool
) -> None:
    actions: list[dict[str, Any]] = []
    if left:
        actions.append({"type": "set", "varName": "subject", "value": left})
    actions += [
        {
            "type": "if",
            "conditionVarType": kind,
            "conditionVar": "{$subject}",
            "conditionOp": op,
            "conditionValue": right,
        },
        {"type": "set", "varName": "hit", "value": "yes"},
        {"type": "end"},
    ]
    result, _ = await run(
        context,
        {"url": f"{base}/form", "actions": actions, "extractionScript": "return '{$hit}'"},
    )
    assert result.data == ("yes" if expected else ""), result.logs


async def test_runaway_while_stops_at_the_bound(context: BrowserContext, base: str) -> None:
    result, _ = await run(
        context,
        {
            "url": f"{base}/form",
            "actions": [{"type": "while", "value": "true"}, {"type": "noop"}, {"type": "end"}],
        },
        max_loop_iterations=25,
    )
    assert result.outcome == "error"
    assert result.error is not None and "went past 25 iterations" in result.error


async def test_failed_actions_continue_unless_on_error(context: BrowserContext, base: str) -> None:
    # Figranium's rule: optional steps (a cookie banner that is not there) do not end a run.
    result, _ = await run(
        context,
        {
            "url": f"{base}/form",
            "actions": [
                {"type": "click", "selector": "#cookie-banner", "timeout": 300},
                {"type": "click", "selector": "#add"},
            ],
            "extractionScript": js("document.querySelectorAll('#items li').length"),
        },
    )
    assert result.outcome == "success"
    assert result.data == 3
    assert any("FAILED action click" in line and "#1 click, failed" in line for line in result.logs)

    handled, _ = await run(
        context,
        {
            "url": f"{base}/form",
            "actions": [
                {"type": "on_error"},
                {"type": "set", "varName": "recovered", "value": "{$error.message}"},
                {"type": "end"},
                {"type": "click", "selector": "#missing", "timeout": 300},
                {"type": "click", "selector": "#add"},
            ],
            "extractionScript": "return [document.querySelectorAll('#items li').length,"
            " `{$recovered}`.length > 0]",
        },
    )
    assert handled.data == [2, True]  # the handler ran and the run ended after it


async def test_unbalanced_blocks_are_refused_before_running(
    context: BrowserContext, base: str, site: tuple[str, list[str]]
) -> None:
    before = len(site[1])
    result, _ = await run(
        context,
        {"url": f"{base}/form?unbalanced", "actions": [{"type": "if", "value": "true"}]},
    )
    assert result.outcome == "error"
    assert result.error is not None and "never closed" in result.error
    assert not any("unbalanced" in path for path in site[1][before:])


# --- extraction, modes, safety --------------------------------------------------------


async def test_scrape_mode_fetches_without_running_scripts(
    context: BrowserContext, base: str
) -> None:
    result, _ = await run(
        context,
        {
            "mode": "scrape",
            "url": f"{base}/cookie",
            "extractionScript": "return [document.title, document.querySelector('#c').textContent,"
            " data.url()]",
        },
    )
    assert result.outcome == "success", result.logs
    assert result.data == ["Cookie", "", f"{base}/cookie"]


async def test_redirect_and_private_navigation(context: BrowserContext, base: str) -> None:
    result, _ = await run(context, {"url": f"{base}/redirect"})
    assert result.final_url == f"{base}/form"
    refused, _ = await run(context, {"url": f"{base}/form"}, allow_private=False)
    assert refused.outcome == "error"
    assert refused.error is not None and refused.error.startswith("INVALID_URL")


async def test_extraction_errors_fail_the_run(context: BrowserContext, base: str) -> None:
    result, _ = await run(context, {"url": f"{base}/form", "extractionScript": "return nope.x"})
    assert result.outcome == "error"
    assert result.error is not None and "Extraction script error" in result.error
