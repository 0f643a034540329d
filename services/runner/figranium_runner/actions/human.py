"""Click, hover, type, scroll and wait as a person would, for runs with ``stealth`` options
on (the run's :class:`~figranium_runner.humanize.Humanizer`); the action handlers call these
instead of Playwright's direct calls.

A click goes to the element's box once its layout has settled, through the cursor's path;
should something else cover the chosen point, Playwright's own click is the fallback (it
waits for the element to take clicks, and says why it cannot). A dead click only lands on
a point where nothing reacts to it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Literal

from playwright.async_api import FloatRect, Locator

from figranium_runner.humanize import Humanizer, Point
from figranium_runner.humankeys import type_like_a_person

if TYPE_CHECKING:
    from figranium_runner.state import RunState

ClickType = Literal["single", "double", "right"]
_SETTLE_S = 0.4  # how long a box may keep moving (an animation) before it is used

# Whether the point hits the element (or one inside it), through open shadow roots.
_HITS_JS = """
(el, [x, y]) => {
  let hit = document.elementFromPoint(x, y);
  while (hit && hit.shadowRoot) {
    const inner = hit.shadowRoot.elementFromPoint(x, y);
    if (!inner || inner === hit) break;
    hit = inner;
  }
  return !!hit && (hit === el || el.contains(hit));
}
"""

# Whether a click at the point would do nothing: no link, control or click handler there.
_INERT_JS = """
([x, y]) => {
  const hit = document.elementFromPoint(x, y);
  if (!hit) return true;
  const active = 'a,button,input,select,textarea,label,summary,details,iframe,video,audio,'
    + '[onclick],[onmousedown],[onmouseup],[role=button],[role=link],[role=checkbox],'
    + '[role=menuitem],[role=tab],[contenteditable=""],[contenteditable=true],[tabindex]';
  return !hit.closest(active);
}
"""


def _humanizer(state: RunState) -> Humanizer:
    assert state.human is not None, "called for runs with stealth options only"
    return state.human


async def _settled_box(target: Locator) -> FloatRect | None:
    """The element's box once two readings agree (or after ``_SETTLE_S``)."""
    await target.scroll_into_view_if_needed()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _SETTLE_S
    last = await target.bounding_box()
    while last is not None and loop.time() < deadline:
        await asyncio.sleep(0.03)
        box = await target.bounding_box()
        if box is None or all(abs(box[k] - last[k]) < 0.5 for k in ("x", "y", "width", "height")):
            return box
        last = box
    return last


async def _dead_click(state: RunState, human: Humanizer) -> None:
    """``deadClicks``: 40 % of clicks are preceded by one on empty page near its top left."""
    if not human.options.deadClicks or human.rng.random() >= 0.4:
        return
    width, height = human.viewport(state.page)
    point = (10 + human.rng.random() * width * 0.2, 10 + human.rng.random() * height * 0.2)
    if not await state.world.evaluate(_INERT_JS, list(point)):
        return
    await human.move_to(state.page, point)
    await human.click_at(state.page, point)
    await state.say("Performing neutral dead-click...")
    await human.pause(200)


async def _aim(state: RunState, selector: str) -> tuple[Locator, Point | None]:
    """The element, and the point the cursor has reached on it (None: no usable box)."""
    human = _humanizer(state)
    human.next_action()
    target = state.page.locator(selector).first
    await target.wait_for(state="visible")
    box = await _settled_box(target)
    if box is None or box["width"] <= 0 or box["height"] <= 0:
        return target, None
    point = human.point_in(box)
    await human.move_to(state.page, point)
    return target, point


async def click(state: RunState, selector: str, click_type: ClickType = "single") -> None:
    """Click ``selector`` through the cursor: a dead click first now and then, a pause, then
    a press held for a moment."""
    human = _humanizer(state)
    await _dead_click(state, human)
    target, point = await _aim(state, selector)
    if point is None or not await target.evaluate(_HITS_JS, list(point)):
        await _fallback_click(target, click_type)
        return
    await human.pause(50)
    if click_type == "right":
        await human.click_at(state.page, point, button="right")
    else:
        await human.click_at(state.page, point, count=2 if click_type == "double" else 1)


async def _fallback_click(target: Locator, click_type: ClickType) -> None:
    if click_type == "double":
        await target.dblclick()
    elif click_type == "right":
        await target.click(button="right")
    else:
        await target.click()


async def hover(state: RunState, selector: str) -> None:
    target, point = await _aim(state, selector)
    if point is None:
        await target.hover()
    await _humanizer(state).pause(150)


async def type_into(state: RunState, selector: str, typed: str, *, append: bool) -> None:
    """Click into the field as a person, clear it (select all, Backspace) unless
    appending, and type."""
    await click(state, selector)
    keyboard = state.page.keyboard
    if append:
        await keyboard.press("End")
    else:
        await keyboard.press("ControlOrMeta+A")
        await keyboard.press("Backspace")
    await type_keys(state, typed)


async def type_keys(state: RunState, typed: str) -> None:
    """Type into the focused element: key by key with the typing options, else at once."""
    human = _humanizer(state)
    options = human.options
    if options.allowTypos or options.naturalTyping or state.human_typing:
        await type_like_a_person(state.page.keyboard, typed, human)
    else:
        await state.page.keyboard.insert_text(typed)


def overshoot(state: RunState) -> int:
    """``overscroll``: how far past its target a scroll goes first (40 to 160 px, further
    or short of it)."""
    human = _humanizer(state)
    return (1 if human.rng.random() > 0.5 else -1) * (40 + human.rng.randrange(120))


async def settle_pause(state: RunState) -> None:
    """The pause before a scroll that went too far comes back."""
    await asyncio.sleep(_humanizer(state).uniform(0.25, 0.65))
