"""Actions on the page and its elements: navigate, click, hover, select, check, drag,
reload, scroll, screenshot, JavaScript and reading text."""

from __future__ import annotations

from typing import TYPE_CHECKING

from figranium_common.action_models import (
    CheckAction,
    ClickAction,
    DragAndDropAction,
    GetContentAction,
    HoverAction,
    JavascriptAction,
    NavigateAction,
    ReloadAction,
    ScreenshotAction,
    ScrollAction,
    SelectAction,
)
from figranium_runner.actions import human
from figranium_runner.actions.fields import (
    ActionFailed,
    ActionResult,
    element,
    page_or_element,
    store,
    text,
)
from figranium_runner.bounds import too_large
from figranium_runner.variables import substitute

if TYPE_CHECKING:
    from figranium_runner.state import RunState

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


async def navigate(state: RunState, action: NavigateAction) -> ActionResult:
    url = text(state, action.value)
    if not url:
        raise ActionFailed("navigate needs a URL in value")
    await state.goto(url)
    return f"Navigating to {url}", state.page.url


async def click(state: RunState, action: ClickAction) -> ActionResult:
    selector = element(state, action)
    click_type = action.clickType or "single"
    if state.human is not None:
        await human.click(state, selector, click_type)
    elif click_type == "double":
        await state.page.dblclick(selector)
    elif click_type == "right":
        await state.page.click(selector, button="right")
    else:
        await state.page.click(selector)
    return f"Clicking: {selector}", True


async def hover(state: RunState, action: HoverAction) -> ActionResult:
    selector = element(state, action)
    if state.human is not None:
        await human.hover(state, selector)
    else:
        await state.page.hover(selector)
    return f"Hovering: {selector}", True


async def select(state: RunState, action: SelectAction) -> ActionResult:
    selector = element(state, action)
    value = text(state, action.value)
    chosen = await state.page.select_option(selector, value)
    if not chosen:
        await state.page.select_option(selector, label=value)
    return f"Selecting {value} from {selector}", value


async def check(state: RunState, action: CheckAction) -> ActionResult:
    selector = element(state, action)
    if action.type == "check":
        await state.page.check(selector)
        return f"Checking: {selector}", True
    await state.page.uncheck(selector)
    return f"Unchecking: {selector}", True


async def drag_and_drop(state: RunState, action: DragAndDropAction) -> ActionResult:
    source = element(state, action)
    target = substitute(action.targetSelector or "", state.variables)
    if not target:
        raise ActionFailed("drag_and_drop needs a targetSelector")
    await state.page.drag_and_drop(source, target)
    return f"Dragging {source} to {target}", True


async def reload(state: RunState, action: ReloadAction) -> ActionResult:
    await state.page.reload(wait_until="load")
    return "Reloading page", state.page.url


async def scroll(state: RunState, action: ScrollAction) -> ActionResult:
    raw = text(state, action.value)
    try:
        pixels = int(float(raw)) if raw.strip() else 500
        duration = int(float(substitute(action.key or "", state.variables) or 500))
    except ValueError:
        raise ActionFailed("scroll needs pixels in value and a duration (ms) in key") from None
    selector = page_or_element(state, action)
    past = human.overshoot(state) if state.human and state.human.options.overscroll else 0
    found = await state.world.evaluate(
        _SCROLL_JS,
        {"selector": selector or None, "y": pixels + past, "duration": max(0, duration)},
    )
    if not found:
        raise ActionFailed(f"no element matches {selector}")
    if past:  # overscroll: the scroll went too far (or not far enough) and comes back
        await human.settle_pause(state)
        back = {"selector": selector or None, "y": -past, "duration": max(0, duration) // 3}
        await state.world.evaluate(_SCROLL_JS, back)
    where = f" in {selector}" if selector else ""
    return f"Scrolling{where}: {pixels}px over {duration}ms", pixels


async def screenshot(state: RunState, action: ScreenshotAction) -> ActionResult:
    label = action.label or text(state, action.value) or None
    url = await state.screenshot(label, full_page=False, now=True)
    return f"Screenshot saved: {url}", url


async def javascript(state: RunState, action: JavascriptAction) -> ActionResult:
    code = text(state, action.value)
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


async def get_content(state: RunState, action: GetContentAction) -> ActionResult:
    selector = page_or_element(state, action)
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
    store(state, action.varName, content)
    return f"Getting content: {selector or '(full page)'}", content
