"""Cookie banners, dismissed in runs with ``stealth`` options as a person would: by their
"accept" button.

Figranium injects a script against cookie notices into every page of every run. Here it
is part of stealth (a run without it behaves as before): each time a document of the
run's page is loaded, the buttons of the common consent frameworks are looked for, and
for a few seconds more while the page builds its banner; the first one seen is clicked,
and the run's log says which. The search runs in the isolated world, out of the page's
sight.
"""

from __future__ import annotations

import asyncio
import contextlib

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

from figranium_runner.isolated import IsolatedWorld
from figranium_runner.state import RunState

WATCH_MS = 4000  # how long after a document loads a banner may still appear

# (framework, its "accept all" button)
ACCEPT_BUTTONS: tuple[tuple[str, str], ...] = (
    ("OneTrust", "#onetrust-accept-btn-handler"),
    ("Cookiebot", "#CybotCookiebotDialogBodyLevelButtonLevelOptinAllowAll"),
    ("Cookiebot", "#CybotCookiebotDialogBodyButtonAccept"),
    ("Didomi", "#didomi-notice-agree-button"),
    ("Quantcast", '.qc-cmp2-summary-buttons button[mode="primary"]'),
    ("TrustArc", "#truste-consent-button"),
    ("Usercentrics", '[data-testid="uc-accept-all-button"]'),
    ("CookieYes", ".cky-btn-accept"),
    ("Complianz", ".cmplz-btn.cmplz-accept"),
    ("Osano", ".osano-cm-accept-all"),
    ("iubenda", ".iubenda-cs-accept-btn"),
    ("Klaro", ".cm-btn-accept-all"),
    ("Axeptio", "#axeptio_btn_acceptAll"),
    ("Termly", '[data-tid="banner-accept"]'),
    ("Cookie Notice", "#cn-accept-cookie"),
    ("Cookie Consent", ".cc-window .cc-allow, .cc-window .cc-dismiss"),
)

# Resolves with the framework whose button it clicked, or null after ``ms``. Banners in
# an open shadow root (Usercentrics) are looked for there too.
_DISMISS_JS = """
({ buttons, ms }) => new Promise((resolve) => {
  let done = false, observer = null, timer = null;
  const finish = (name) => {
    if (done) return;
    done = true;
    if (observer) observer.disconnect();
    clearTimeout(timer);
    resolve(name);
  };
  const roots = () => [document, ...[...document.querySelectorAll(
    '#usercentrics-root, #usercentrics-cmp-ui')].map((el) => el.shadowRoot).filter(Boolean)];
  const attempt = () => {
    for (const [name, selector] of buttons) {
      for (const root of roots()) {
        const el = root.querySelector(selector);
        if (el && el.getClientRects().length) { el.click(); finish(name); return true; }
      }
    }
    return false;
  };
  if (attempt()) return;
  observer = new MutationObserver(() => { attempt(); });
  observer.observe(document.documentElement,
    { childList: true, subtree: true, attributes: true, attributeFilter: ['style', 'class'] });
  timer = setTimeout(() => finish(null), ms);
})
"""


def watch(state: RunState) -> None:
    """Dismiss the banners of every document the run's page loads from now on."""
    page = state.page
    world = IsolatedWorld(page)
    pending: set[asyncio.Task[None]] = set()

    def loaded(_: Page) -> None:
        task = asyncio.get_running_loop().create_task(_dismiss(state, world))
        pending.add(task)
        task.add_done_callback(pending.discard)

    page.on("domcontentloaded", loaded)


async def _dismiss(state: RunState, world: IsolatedWorld) -> None:
    buttons = [list(entry) for entry in ACCEPT_BUTTONS]
    # The page navigated away or closed meanwhile: that document's banner is moot.
    with contextlib.suppress(PlaywrightError):
        clicked = await world.evaluate(_DISMISS_JS, {"buttons": buttons, "ms": WATCH_MS})
        if isinstance(clicked, str):
            await state.say(f"Dismissed a cookie banner ({clicked})")
