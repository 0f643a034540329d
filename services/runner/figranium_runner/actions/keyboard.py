"""Actions at the keyboard: typing text (a password typed is hidden from then on) and
pressing keys."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

from figranium_common.action_models import PressAction, TypeAction
from figranium_common.redact import SECRET_MASK
from figranium_runner.actions import human
from figranium_runner.actions.fields import ActionFailed, ActionResult, page_or_element, text
from figranium_runner.variables import substitute

if TYPE_CHECKING:
    from playwright.async_api import Locator

    from figranium_runner.state import RunState


async def _type_text(state: RunState, typed: str) -> None:
    keyboard = state.page.keyboard
    if not state.human_typing:
        await keyboard.insert_text(typed)
        return
    for char in typed:
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


def _secret_typing(state: RunState, typed: str, is_password: bool) -> str:
    """What a line or an output shows of ``typed``: the mask for a password, which from
    now on is hidden in every line and in the result too."""
    if not is_password:
        return typed
    state.redactor.add(typed)
    return SECRET_MASK


async def type_text(state: RunState, action: TypeAction) -> ActionResult:
    selector = page_or_element(state, action)
    typed = text(state, action.value)
    if not selector:
        focused_password = await state.world.evaluate(_FOCUSED_IS_PASSWORD_JS)
        shown = _secret_typing(state, typed, bool(focused_password))
        if state.human is not None:
            await human.type_keys(state, typed)
        else:
            await _type_text(state, typed)
        return f"Typing (global): {shown}", shown
    target = state.page.locator(selector).first
    shown = _secret_typing(state, typed, await _takes_password(target))
    if state.human is not None:
        await human.type_into(state, selector, typed, append=action.typeMode == "append")
    elif action.typeMode == "append":
        await target.click()
        await target.press("End")
        await _type_text(state, typed)
    elif state.human_typing:
        await target.click()
        await target.fill("")
        await _type_text(state, typed)
    else:
        await target.fill(typed)
    return f"Typing into {selector}: {shown}", shown


async def press(state: RunState, action: PressAction) -> ActionResult:
    key = substitute(action.key or "", state.variables) or text(state, action.value)
    if not key:
        raise ActionFailed("press needs a key (e.g. Enter, Control+A)")
    selector = page_or_element(state, action)
    if selector:
        await state.page.press(selector, key)
    else:
        await state.page.keyboard.press(key)
    return f"Pressing key: {key}", key
