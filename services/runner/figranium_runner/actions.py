"""One function per action type; each returns the action's output (``{$block.output}``).

The interpreter in :mod:`figranium_runner.engine` handles the block actions (``if``,
loops, ``on_error``) and ``start``; everything else is here.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from figranium_common.errors import FigraniumError
from figranium_common.models import Action
from figranium_common.outbound_http import safe_request
from figranium_common.redact import SECRET_MASK
from figranium_runner.bounds import json_size, too_large
from figranium_runner.conditions import parse_value, var_name
from figranium_runner.variables import lookup, substitute

if TYPE_CHECKING:
    from playwright.async_api import Locator

    from figranium_runner.engine import RunState


class ActionFailed(FigraniumError):
    code = "ACTION_FAILED"


class StopRun(FigraniumError):
    """A ``stop`` action: end the run now with the given outcome."""

    code = "STOPPED"

    def __init__(self, outcome: str) -> None:
        super().__init__(f"stopped by a stop action ({outcome})")
        self.outcome = outcome


Handler = Callable[["RunState", Action], Awaitable[tuple[str, Any]]]

_SCROLL_JS = """
({ selector, y, duration }) => new Promise((resolve) => {
  const el = selector ? document.querySelector(selector) : null;
  if (selector && !el) { resolve(false); return; }
  const get = () => el ? el.scrollTop : (window.scrollY || 0);
  const set = (v) => el ? (el.scrollTop = v) : window.scrollTo(0, v);
  const start = get();
  const began = performance.now();
  const step = (now) => {
    const t = duration > 0 ? Math.min(1, (now - began) / duration) : 1;
    set(start + y * (1 - Math.pow(1 - t, 3)));
    if (t < 1) requestAnimationFrame(step); else resolve(true);
  };
  requestAnimationFrame(step);
})
"""


def _text(state: RunState, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return substitute(value, state.variables)
    if isinstance(value, dict | list):
        return substitute(json.dumps(value), state.variables)
    return str(value)


def _selector(state: RunState, action: Action, *, required: bool) -> str:
    selector = substitute(action.selector or "", state.variables)
    if required and not selector:
        raise ActionFailed(f"{action.type} needs a selector")
    return selector


def _seconds(raw: str, default: float) -> float:
    if not raw.strip():
        return default
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise ActionFailed(f"expected a number of seconds, got {raw!r}") from None


def _store(state: RunState, action: Action, value: Any) -> None:
    if action.varName:
        state.store(var_name(substitute(action.varName, state.variables)), value)


async def navigate(state: RunState, action: Action) -> tuple[str, Any]:
    url = _text(state, action.value)
    if not url:
        raise ActionFailed("navigate needs a URL in value")
    await state.goto(url)
    return f"Navigating to {url}", state.page.url


async def click(state: RunState, action: Action) -> tuple[str, Any]:
    selector = _selector(state, action, required=True)
    click_type = action.clickType or "single"
    if click_type == "double":
        await state.page.dblclick(selector)
    elif click_type == "right":
        await state.page.click(selector, button="right")
    else:
        await state.page.click(selector)
    return f"Clicking: {selector}", True


async def _type_text(state: RunState, text: str) -> None:
    keyboard = state.page.keyboard
    if not state.human_typing:
        await keyboard.insert_text(text)
        return
    for char in text:
        await keyboard.type(char)
        await asyncio.sleep(random.uniform(0.04, 0.16))


# Whether the focused element takes a password, looked for inside shadow roots: run in the
# isolated world, so the page's scripts can neither see the check nor answer it.
_FOCUSED_IS_PASSWORD_JS = """
() => {
  let el = document.activeElement;
  while (el && el.shadowRoot && el.shadowRoot.activeElement) el = el.shadowRoot.activeElement;
  if (!el || !el.getAttribute) return false;
  const type = (el.getAttribute('type') || '').toLowerCase();
  const hint = (el.getAttribute('autocomplete') || '').toLowerCase().split(/\\s+/);
  return type === 'password' || hint.includes('current-password') || hint.includes('new-password');
}
"""


async def _takes_password(target: Locator) -> bool:
    """Whether ``target`` is a password field: by its type, or by the autocomplete hint sites
    give password fields drawn without one.

    Read as attributes, which Playwright reads in its utility world: an ``evaluate`` would
    run in the page's main world, where Playwright must first compile its injected script
    once more, about 50 ms of Chromium's CPU for every run that types."""
    if (await target.get_attribute("type") or "").lower() == "password":
        return True
    hint = (await target.get_attribute("autocomplete") or "").lower().split()
    return "current-password" in hint or "new-password" in hint


def _secret_typing(state: RunState, text: str, is_password: bool) -> str:
    """What a line or an output shows of ``text``: the mask for a password, which from
    now on is hidden in every line and in the result too."""
    if not is_password:
        return text
    state.redactor.add(text)
    return SECRET_MASK


async def type_text(state: RunState, action: Action) -> tuple[str, Any]:
    selector = _selector(state, action, required=False)
    text = _text(state, action.value)
    if not selector:
        focused_password = await state.world.evaluate(_FOCUSED_IS_PASSWORD_JS)
        shown = _secret_typing(state, text, bool(focused_password))
        await _type_text(state, text)
        return f"Typing (global): {shown}", shown
    target = state.page.locator(selector).first
    shown = _secret_typing(state, text, await _takes_password(target))
    if action.typeMode == "append":
        await target.click()
        await target.press("End")
        await _type_text(state, text)
    elif state.human_typing:
        await target.click()
        await target.fill("")
        await _type_text(state, text)
    else:
        await target.fill(text)
    return f"Typing into {selector}: {shown}", shown


async def hover(state: RunState, action: Action) -> tuple[str, Any]:
    selector = _selector(state, action, required=True)
    await state.page.hover(selector)
    return f"Hovering: {selector}", True


async def press(state: RunState, action: Action) -> tuple[str, Any]:
    key = substitute(action.key or "", state.variables) or _text(state, action.value)
    if not key:
        raise ActionFailed("press needs a key (e.g. Enter, Control+A)")
    selector = _selector(state, action, required=False)
    if selector:
        await state.page.press(selector, key)
    else:
        await state.page.keyboard.press(key)
    return f"Pressing key: {key}", key


async def select(state: RunState, action: Action) -> tuple[str, Any]:
    selector = _selector(state, action, required=True)
    value = _text(state, action.value)
    chosen = await state.page.select_option(selector, value)
    if not chosen:
        await state.page.select_option(selector, label=value)
    return f"Selecting {value} from {selector}", value


async def check(state: RunState, action: Action) -> tuple[str, Any]:
    selector = _selector(state, action, required=True)
    if action.type == "check":
        await state.page.check(selector)
        return f"Checking: {selector}", True
    await state.page.uncheck(selector)
    return f"Unchecking: {selector}", True


async def drag_and_drop(state: RunState, action: Action) -> tuple[str, Any]:
    source = _selector(state, action, required=True)
    target = substitute(action.targetSelector or "", state.variables)
    if not target:
        raise ActionFailed("drag_and_drop needs a targetSelector")
    await state.page.drag_and_drop(source, target)
    return f"Dragging {source} to {target}", True


async def reload(state: RunState, action: Action) -> tuple[str, Any]:
    await state.page.reload(wait_until="load")
    return "Reloading page", state.page.url


async def wait(state: RunState, action: Action) -> tuple[str, Any]:
    seconds = _seconds(_text(state, action.value), 2.0)
    await asyncio.sleep(seconds)
    return f"Waiting: {int(seconds * 1000)}ms", int(seconds * 1000)


async def wait_selector(state: RunState, action: Action) -> tuple[str, Any]:
    selector = _selector(state, action, required=True)
    seconds = _seconds(_text(state, action.value), 10.0)
    await state.page.wait_for_selector(selector, state="visible", timeout=seconds * 1000)
    return f"Waiting for selector: {selector}", True


async def wait_downloads(state: RunState, action: Action) -> tuple[str, Any]:
    seconds = _seconds(_text(state, action.value), 30.0)
    if not state.pending_downloads:
        # Give a click that just happened a moment to start its download.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.download_started.wait(), timeout=min(seconds, 5.0))
    pending = list(state.pending_downloads)
    if pending:
        await asyncio.wait(pending, timeout=seconds or None)
    return f"Waited for {len(pending)} download(s)", len(state.downloads)


async def scroll(state: RunState, action: Action) -> tuple[str, Any]:
    raw = _text(state, action.value)
    try:
        pixels = int(float(raw)) if raw.strip() else 500
        duration = int(float(substitute(action.key or "", state.variables) or 500))
    except ValueError:
        raise ActionFailed("scroll needs pixels in value and a duration (ms) in key") from None
    selector = _selector(state, action, required=False)
    found = await state.world.evaluate(
        _SCROLL_JS, {"selector": selector or None, "y": pixels, "duration": max(0, duration)}
    )
    if not found:
        raise ActionFailed(f"no element matches {selector}")
    where = f" in {selector}" if selector else ""
    return f"Scrolling{where}: {pixels}px over {duration}ms", pixels


async def screenshot(state: RunState, action: Action) -> tuple[str, Any]:
    label = action.label or _text(state, action.value) or None
    url = await state.screenshot(label, full_page=False)
    return f"Screenshot saved: {url}", url


async def javascript(state: RunState, action: Action) -> tuple[str, Any]:
    code = _text(state, action.value)
    if not code:
        raise ActionFailed("javascript needs code in value")
    return "Running custom JavaScript", await state.page.evaluate(_JAVASCRIPT, code)


# Figranium runs the code as the body of an async function that receives `html`; code that
# is a bare expression (no `return`) gives its value, as Figranium's eval fallback does.
_JAVASCRIPT = """
async (code) => {
  const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
  const html = document.documentElement.outerHTML;
  let fn;
  if (/\\breturn\\b/.test(code)) {
    fn = new AsyncFunction('html', code);
  } else {
    try { fn = new AsyncFunction('html', 'return (' + code + '\\n);'); }
    catch (e) { fn = new AsyncFunction('html', code); }
  }
  const result = await fn(html);
  return result === undefined ? null : result;
}
"""


async def get_content(state: RunState, action: Action) -> tuple[str, Any]:
    selector = _selector(state, action, required=False)
    limit = state.bounds.max_variable_bytes
    # Measured in the page, so that megabytes of text never leave the browser to be refused.
    content = await state.world.evaluate(
        """({ selector, maxChars }) => {
          const el = selector ? document.querySelector(selector) : document.body;
          const text = el ? el.innerText : (selector ? null : '');
          return text !== null && text.length > maxChars ? { tooLong: text.length } : text;
        }""",
        {"selector": selector or None, "maxChars": limit},
    )
    if isinstance(content, dict):
        raise too_large("the text of " + (selector or "the page"), limit)
    _store(state, action, content)
    return f"Getting content: {selector or '(full page)'}", content


async def set_variable(state: RunState, action: Action) -> tuple[str, Any]:
    if not action.varName:
        raise ActionFailed("set needs varName")
    value = action.value
    parsed = parse_value(_text(state, value)) if isinstance(value, str) else value
    _store(state, action, parsed)
    return f"Set variable {action.varName}", parsed


def _merge_sources(state: RunState, raw: Any) -> list[Any]:
    if isinstance(raw, list):
        return raw
    if isinstance(raw, dict):
        return [raw]
    tokens = [t.strip() for t in str(raw or "").split(",") if t.strip()]
    sources = []
    for token in tokens:
        found = lookup(state.variables, var_name(token))
        sources.append(
            found if found is not None else parse_value(substitute(token, state.variables))
        )
    return sources


async def merge(state: RunState, action: Action) -> tuple[str, Any]:
    sources = _merge_sources(state, action.value)
    # Measured before merging: `merge "{$a},{$a}"` in a loop doubles a list each round, and
    # the merged list would be built whole before storing it could refuse it.
    limit = state.bounds.max_variable_bytes
    budget = limit
    for source in sources:
        budget -= json_size(source, budget)
        if budget < 0:
            raise too_large("the merged value", limit)
    merged: Any
    if sources and all(isinstance(s, list) for s in sources):
        merged = [item for s in sources for item in s]
    elif sources and all(isinstance(s, dict) for s in sources):
        merged = {k: v for s in sources for k, v in s.items()}
    else:
        merged = []
        for s in sources:
            merged.extend(s if isinstance(s, list) else [s])
    _store(state, action, merged)
    count = len(merged)
    return f"Merged {count} {'field' if isinstance(merged, dict) else 'item'}(s)", merged


def parse_csv(text: str) -> list[dict[str, str]]:
    rows = list(csv.reader(io.StringIO(text.strip())))
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    return [dict(zip(header, row + [""] * (len(header) - len(row)), strict=False)) for row in body]


async def csv_action(state: RunState, action: Action) -> tuple[str, Any]:
    source: Any
    if action.value in (None, ""):
        block = state.variables.get("block")
        source = block.get("output") if isinstance(block, dict) else None
    elif isinstance(action.value, str):
        found = lookup(state.variables, var_name(action.value))
        source = found if found is not None else _text(state, action.value)
    else:
        source = action.value
    rows: Any = parse_csv(source) if isinstance(source, str) else (source or [])
    _store(state, action, rows)
    return f"Parsed {len(rows) if isinstance(rows, list) else 0} CSV rows", rows


async def http_request(state: RunState, action: Action) -> tuple[str, Any]:
    url = _text(state, action.value)
    method = (substitute(action.method or "", state.variables) or "GET").upper()
    headers: dict[str, str] = {}
    if isinstance(action.headers, dict):
        headers = {str(k): _text(state, v) for k, v in action.headers.items()}
    elif action.headers:
        try:
            parsed = json.loads(_text(state, action.headers))
        except ValueError as exc:
            raise ActionFailed(f"headers are not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise ActionFailed("headers must be a JSON object")
        headers = {str(k): str(v) for k, v in parsed.items()}
    body: str | None = None
    if action.body not in (None, "") and method in ("POST", "PUT", "PATCH", "DELETE"):
        body = _text(state, action.body)
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
    response = await safe_request(
        method,
        url,
        allow_private=state.allow_private,
        allow_metadata=state.allow_metadata,
        headers=headers,
        body=body,
        timeout=state.action_timeout_s,
    )
    text = response.text()
    try:
        parsed_body: Any = json.loads(text)
    except ValueError:
        parsed_body = text
    if response.status >= 400:
        snippet = text[:200]
        raise ActionFailed(f"HTTP {method} failed with status {response.status}: {snippet}")
    _store(state, action, parsed_body)
    return f"HTTP {method} {url} → {response.status}", parsed_body


async def do_nothing(state: RunState, action: Action) -> tuple[str, Any]:
    return "Do nothing", None


async def stop(state: RunState, action: Action) -> tuple[str, Any]:
    raise StopRun("error" if _text(state, action.value) == "error" else "success")


HANDLERS: dict[str, Handler] = {
    "navigate": navigate,
    "goto": navigate,
    "click": click,
    "type": type_text,
    "fill": type_text,
    "hover": hover,
    "press": press,
    "select": select,
    "check": check,
    "uncheck": check,
    "drag_and_drop": drag_and_drop,
    "reload": reload,
    "wait": wait,
    "wait_selector": wait_selector,
    "wait_downloads": wait_downloads,
    "scroll": scroll,
    "screenshot": screenshot,
    "javascript": javascript,
    "get_content": get_content,
    "set": set_variable,
    "merge": merge,
    "csv": csv_action,
    "http_request": http_request,
    "stop": stop,
    "do_nothing": do_nothing,
    "noop": do_nothing,
    "pass": do_nothing,
}
