"""Captcha widgets in a page: finding reCAPTCHA, hCaptcha and Turnstile, telling when one is
ready, and putting a solver's token where the widget's page reads it.

A widget is found as the real ones render: a container with ``data-sitekey`` (classes
``g-recaptcha``, ``h-captcha``, ``cf-turnstile``), or a frame of the widget's host with
the site key in its URL. It is *ready*, as in Figranium, once a person could act on it: an
invisible widget (reCAPTCHA v3, ``data-size="invisible"``) at once, any other when its
frame shows (with its checkbox visible, for reCAPTCHA and hCaptcha).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, replace
from urllib.parse import parse_qs, urlsplit

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Frame, Page

from figranium_common.jsontypes import JsonObject
from figranium_runner.isolated import IsolatedWorld

CAPTCHA_TYPES = ("recaptcha_v2", "recaptcha_v3", "hcaptcha", "turnstile")
POLL_SECONDS = 0.15
_WIDGET = "[data-sitekey], .g-recaptcha, .h-captcha, .cf-turnstile"
_CHECKBOX = '#recaptcha-anchor, #checkbox, [role="checkbox"], input[type="checkbox"]'
_TURNSTILE_KEY = re.compile(r"^(?:0x|3x)[A-Za-z0-9_-]{8,}$")

# The widget container within ``selector`` (else the page), in the isolated world.
_CONTAINER_JS = """
({ selector, widget }) => {
  const root = selector ? document.querySelector(selector) : document;
  if (!root) return null;
  const el = root.matches?.('[data-sitekey]') ? root : root.querySelector(widget);
  if (!el) return null;
  let captchaType = 'recaptcha_v2';
  if (el.classList.contains('h-captcha')) captchaType = 'hcaptcha';
  else if (el.classList.contains('cf-turnstile')) captchaType = 'turnstile';
  else if (el.getAttribute('data-action')) captchaType = 'recaptcha_v3';
  return {
    siteKey: el.getAttribute('data-sitekey') || '',
    captchaType,
    action: el.getAttribute('data-action') || '',
    callback: el.getAttribute('data-callback') || '',
    dataS: el.getAttribute('data-s') || '',
    invisible: captchaType === 'recaptcha_v3' || el.getAttribute('data-size') === 'invisible',
  };
}
"""

# Whether a frame's element lies inside a widget container within ``selector``, shadow
# roots crossed (Turnstile renders its frame in one).
_FRAME_IN_SCOPE_JS = """
(el, { selector, widget }) => {
  const scope = selector ? document.querySelector(selector) : null;
  if (selector && !scope) return { inWidget: false, inScope: false };
  let inWidget = false, inScope = !selector;
  for (let node = el; node; node = node.parentNode || node.host) {
    if (node.nodeType === 1 && node.matches(widget)) inWidget = true;
    if (node === scope) inScope = true;
  }
  return { inWidget, inScope };
}
"""


@dataclass(frozen=True)
class Widget:
    """A captcha widget found in the page."""

    captcha_type: str
    site_key: str
    action: str = ""
    callback: str = ""
    data_s: str = ""
    invisible: bool = False

    def public(self, started: float) -> JsonObject:
        """What ``wait_captcha`` answers (Figranium's fields)."""
        ready: JsonObject = {
            "ready": True,
            "challenge": self.captcha_type,
            "duration": int((time.monotonic() - started) * 1000),
        }
        if self.site_key:
            ready["siteKey"] = self.site_key
        return ready


class NoWidget(Exception):
    """No ready widget within the time allowed."""


def frame_widget(url: str) -> Widget | None:
    """The widget a frame's URL shows, by its host: the site key is in the query (``k``,
    ``sitekey``) or, for Turnstile, in the path."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    query = parse_qs(parts.query) | parse_qs(parts.fragment)
    key = (query.get("k") or query.get("sitekey") or [""])[0]
    if host == "hcaptcha.com" or host.endswith(".hcaptcha.com"):
        return Widget("hcaptcha", key) if key else None
    if "recaptcha" in host or "/recaptcha/" in parts.path:
        return Widget("recaptcha_v2", key) if key else None
    if host != "challenges.cloudflare.com":
        return None
    in_path = [part for part in parts.path.split("/") if _TURNSTILE_KEY.match(part)]
    key = key or (in_path[0] if in_path else "")
    return Widget("turnstile", key) if key else None


async def _visible(frame: Frame) -> bool:
    element = await frame.frame_element()
    box = await element.bounding_box()
    return box is not None and box["width"] > 0 and box["height"] > 0


async def _frame_ready(frame: Frame, captcha_type: str) -> bool:
    """A widget's frame is ready when it shows; reCAPTCHA's and hCaptcha's once their
    checkbox does too."""
    if not await _visible(frame):
        return False
    if captcha_type in ("recaptcha_v2", "hcaptcha"):
        return await frame.locator(_CHECKBOX).first.is_visible()
    return bool(await frame.evaluate("document.readyState === 'complete'"))


async def _ready_in_frames(page: Page, selector: str, container: Widget | None) -> Widget | None:
    args = {"selector": selector, "widget": _WIDGET}
    for frame in page.frames[1:]:
        found = frame_widget(frame.url)
        try:
            element = await frame.frame_element()
            place = await element.evaluate(_FRAME_IN_SCOPE_JS, args)
            if not place["inScope"] or (found is None and not place["inWidget"]):
                continue
            if container is not None and (
                found is None or found.captcha_type == container.captcha_type
            ):  # the container says more than the frame's URL
                key = container.site_key or (found.site_key if found else "")
                found = replace(container, site_key=key)
            if found is not None and await _frame_ready(frame, found.captcha_type):
                return found
        except PlaywrightError:  # a frame detached while looked at
            continue
    return None


async def find_ready(page: Page, world: IsolatedWorld, selector: str) -> Widget | None:
    """A ready widget within ``selector`` (empty: the page), or None."""
    raw = await world.evaluate(_CONTAINER_JS, {"selector": selector, "widget": _WIDGET})
    container = (
        None
        if not isinstance(raw, dict)
        else Widget(
            captcha_type=str(raw["captchaType"]),
            site_key=str(raw["siteKey"]),
            action=str(raw["action"]),
            callback=str(raw["callback"]),
            data_s=str(raw["dataS"]),
            invisible=bool(raw["invisible"]),
        )
    )
    if container is not None and container.site_key and container.invisible:
        return container
    return await _ready_in_frames(page, selector, container)


async def wait_ready(
    page: Page, world: IsolatedWorld, selector: str, wanted: str, timeout_ms: float
) -> Widget:
    """The first ready widget (of type ``wanted``, when given) within ``timeout_ms``;
    NoWidget past it."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        try:
            found = await find_ready(page, world, selector)
        except PlaywrightError:  # the page navigated while looked at: look again
            found = None
        if found is not None and (not wanted or found.captcha_type == wanted):
            return found
        left = deadline - time.monotonic()
        if left <= 0:
            kind = f" {wanted}" if wanted else ""
            raise NoWidget(f"no ready{kind} CAPTCHA found within {timeout_ms:g}ms")
        await asyncio.sleep(min(POLL_SECONDS, left))


# In the page's own world: the widget's callback is one of the page's functions.
_INJECT_JS = """
({ type, token, callback, widget }) => {
  const names = type === 'hcaptcha' ? ['h-captcha-response', 'g-recaptcha-response']
    : type === 'turnstile' ? ['cf-turnstile-response'] : ['g-recaptcha-response'];
  const fields = names.flatMap((name) => [...document.querySelectorAll(`[name="${name}"]`)]);
  if (!fields.length) {
    const holder = document.querySelector(widget) || document.body;
    const field = document.createElement(type === 'turnstile' ? 'input' : 'textarea');
    field.name = names[0];
    if (type === 'turnstile') field.type = 'hidden'; else field.style.display = 'none';
    holder.appendChild(field);
    fields.push(field);
  }
  for (const field of fields) {
    const proto = field instanceof HTMLTextAreaElement ? HTMLTextAreaElement : HTMLInputElement;
    Object.getOwnPropertyDescriptor(proto.prototype, 'value').set.call(field, token);
    field.dispatchEvent(new Event('input', { bubbles: true }));
    field.dispatchEvent(new Event('change', { bubbles: true }));
  }
  const find = (name) => name && name.split('.').reduce((o, k) => o?.[k], window);
  for (const name of [callback, 'grecaptchaCallback', 'hcaptchaCallback', 'turnstileCallback']) {
    const fn = find(name);
    if (typeof fn === 'function') { fn(token); return { fields: fields.length, callback: name }; }
  }
  return { fields: fields.length, callback: null };
}
"""


async def inject(page: Page, widget: Widget, token: str) -> str | None:
    """Put ``token`` in the widget's response fields and call its callback, if any; the
    callback's name, when one was called."""
    done = await page.evaluate(
        _INJECT_JS,
        {
            "type": widget.captcha_type,
            "token": token,
            "callback": widget.callback,
            "widget": _WIDGET,
        },
    )
    called = done.get("callback") if isinstance(done, dict) else None
    return str(called) if called else None
