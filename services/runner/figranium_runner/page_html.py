"""The page's HTML where Figranium hands it out: the ``{$html}`` variable, and the
result's ``html`` of a run that has no extraction script.

Both are bounded by RUNNER_MAX_VARIABLE_BYTES: a page can be as large as it likes, and
neither the run's variables nor its stored result may grow with it unchecked.
"""

from __future__ import annotations

import json

from playwright.async_api import Error as PlaywrightError

from figranium_common.models import Task
from figranium_runner.state import RunState

HTML_PLACEHOLDER = "{$html}"


def wants_html(value: object) -> bool:
    """Whether ``value`` (an action, a script) names ``{$html}`` anywhere in its text."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return HTML_PLACEHOLDER in text


async def refresh_html(state: RunState) -> None:
    """Set the ``html`` variable to the page's current HTML, as Figranium does before each
    action (and the extraction script) that names ``{$html}``; empty when the page cannot
    tell. LimitExceeded past RUNNER_MAX_VARIABLE(S)_BYTES."""
    try:
        html = await state.page.content()
    except PlaywrightError:
        html = ""
    state.store("html", html)


async def result_html(state: RunState, task: Task) -> str | None:
    """The ``html`` of the run's result: with ``includeHtml`` the whole final page, and,
    as Figranium returns it, also for a task without an extraction script; then cut at
    RUNNER_MAX_VARIABLE_BYTES (said in the log), so that a huge page leaves a result that
    can still be stored. None otherwise, or when the page is gone."""
    has_script = bool((task.extractionScript or "").strip())
    if has_script and not task.includeHtml:
        return None
    try:
        html = await state.page.content()
    except PlaywrightError:
        return None
    return html if task.includeHtml else await bounded(state, html)


async def bounded(state: RunState, html: str) -> str:
    """``html`` cut at RUNNER_MAX_VARIABLE_BYTES, with a line in the run's log when it is."""
    limit = state.bounds.max_variable_bytes
    encoded = html.encode()
    if len(encoded) <= limit:
        return html
    await state.say(
        f"[html] the page's HTML ({len(encoded)} bytes) is cut at"
        f" RUNNER_MAX_VARIABLE_BYTES ({limit} bytes)"
    )
    return encoded[:limit].decode(errors="ignore")
