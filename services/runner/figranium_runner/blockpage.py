"""Recognising the page a site shows a bot instead of its content, as Figranium does: the
run then ends with the ``anti_bot`` outcome and says why.

A page is a block page when its main document answered 403 or 429, when it is a
Cloudflare challenge (its URL or its "Just a moment... checking your browser" text), when
a captcha widget (reCAPTCHA, hCaptcha, Turnstile) is on it, or when it says access was
denied or asks to verify a human. A page whose captcha response field is already filled
was solved: only the status still counts there.

The check runs once, when the run's actions and extraction are done (and also when the
run failed: a failure on a block page is that block's doing), on the page the run ended
on, with the status of the main document that page loaded (the Navigation Timing entry's
``responseStatus``: no listener on every response of the run, which would cost each run
the round trip of every response event). It reads the page in the isolated world: the
page's scripts neither see nor answer it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

from figranium_runner.isolated import IsolatedWorld

_CHALLENGE_URL = re.compile(r"/cdn-cgi/(challenge|challenge-platform)\b")

# What the page shows, read in one call: text only from elements that render (no
# scripts, styles or comments, as Figranium strips them from the markup).
_SIGNS_JS = """
() => {
  const widget = !!document.querySelector(
    '.g-recaptcha, .h-captcha, .cf-turnstile,'
    + ' iframe[src*="recaptcha"], iframe[src*="hcaptcha.com"],'
    + ' iframe[src*="challenges.cloudflare.com"],'
    + ' input[name="g-recaptcha-response"], textarea[name="g-recaptcha-response"],'
    + ' input[name="h-captcha-response"], textarea[name="h-captcha-response"],'
    + ' input[name="cf-turnstile-response"], textarea[name="cf-turnstile-response"]');
  const answers = ['#g-recaptcha-response', 'textarea[name="g-recaptcha-response"]',
    'textarea[name="h-captcha-response"]', 'input[name="cf-turnstile-response"]',
    'textarea[name="cf-turnstile-response"]'];
  const solved = answers.some((s) => {
    const el = document.querySelector(s);
    return !!(el && String(el.value || '').trim());
  });
  const skip = /^(SCRIPT|STYLE|NOSCRIPT|TEMPLATE)$/;
  const walker = document.createTreeWalker(document.body || document, NodeFilter.SHOW_TEXT, {
    acceptNode: (n) => skip.test(n.parentNode.nodeName)
      ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT });
  let text = '';
  while (text.length < 20000 && walker.nextNode()) text += walker.currentNode.nodeValue + ' ';
  const nav = performance.getEntriesByType('navigation')[0];
  const status = nav && nav.responseStatus ? nav.responseStatus : null;
  return { title: document.title || '', text: text.slice(0, 20000), widget, solved, status };
}
"""


@dataclass(frozen=True)
class PageSigns:
    """What a block page could give itself away by."""

    status: int | None  # of the last main document
    url: str
    title: str = ""
    text: str = ""  # the page's rendered text (the first 20,000 characters)
    widget: bool = False  # a captcha widget or its response field is on the page
    solved: bool = False  # a captcha response field holds an answer


def block_reason(signs: PageSigns) -> str | None:
    """Why the page is a block page (Figranium's wording), or None when it is not."""
    if signs.status in (403, 429):
        return f"main document returned HTTP {signs.status}"
    words = " ".join(f"{signs.title}\n{signs.text}".split()).lower()
    if "access denied" in words and re.search(
        r"request blocked|security service|incident id|reference #", words
    ):
        return "access-denied block page detected"  # a solved captcha does not lift it
    if signs.solved:
        return None
    if _CHALLENGE_URL.search(signs.url.lower()):
        return "Cloudflare challenge URL detected"
    if signs.widget:
        return "unresolved CAPTCHA challenge detected"
    if "just a moment" in words and re.search(
        r"checking your browser|performing security verification|enable javascript and cookies",
        words,
    ):
        return "browser verification challenge page detected"
    if "attention required" in words and "cloudflare" in words:
        return "Cloudflare access challenge detected"
    if "verify you are human" in words and re.search(r"captcha|security check|robot", words):
        return "human-verification challenge detected"
    return None


async def inspect(page: Page, world: IsolatedWorld) -> str | None:
    """:func:`block_reason` for the page as it is now; a page that cannot be read (closed,
    navigating) is not judged."""
    try:
        seen = await world.evaluate(_SIGNS_JS)
    except PlaywrightError:
        return None
    if not isinstance(seen, dict):
        return None
    status = seen.get("status")
    return block_reason(
        PageSigns(
            status if isinstance(status, int) else None,
            page.url,
            title=str(seen.get("title") or ""),
            text=str(seen.get("text") or ""),
            widget=seen.get("widget") is True,
            solved=seen.get("solved") is True,
        )
    )
