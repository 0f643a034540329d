"""``scrape`` mode: the task's URL fetched once and shown as it came, without running it,
then described as Figranium's scrape describes it.

The fetch is the page's own navigation, with the page's scripts off and every other
request of the page refused. So it goes out as the run's browser would: with the task's cookies
(its saved browser state), its user agent and client hints, through its proxy and the
run's egress policy, plus the task's ``headers``.

Figranium answers a scrape with ``title``, ``url``, ``links`` (every ``a[href]``, made
absolute, http(s) only), ``html`` (what ``selector`` matched, or the body, without
``script, style, svg, link, noscript``), ``is_partial`` (the selector matched) and
``selector_used``; :func:`describe` gives the same fields.
"""

from __future__ import annotations

import json

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Route

from figranium_common.jsontypes import JsonObject, JsonValue
from figranium_common.models import Task
from figranium_common.outbound_urls import check_url
from figranium_runner.actions import ActionFailed
from figranium_runner.page_html import bounded
from figranium_runner.state import RunState
from figranium_runner.variables import substitute

_DESCRIBE_JS = """
({ selector }) => {
  const USELESS = 'script, style, svg, link, noscript';
  const cleaned = (el) => {
    const copy = el.cloneNode(true);
    copy.querySelectorAll(USELESS).forEach((node) => node.remove());
    return copy;
  };
  let found = [];
  if (selector) {
    try { found = Array.from(document.querySelectorAll(selector)); }
    catch (e) { return { invalid: String(e && e.message) }; }
  }
  const partial = found.length > 0;
  const html = partial
    ? found.map((el) => cleaned(el).outerHTML).join('\\n')
    : (document.body ? cleaned(document.body).innerHTML : '');
  const links = [];
  for (const a of document.querySelectorAll('a[href]')) {
    let href;
    try { href = new URL(a.getAttribute('href'), document.baseURI).href; } catch (e) { continue; }
    if (href.startsWith('http')) links.push(href);
  }
  const title = ((document.querySelector('title') || {}).textContent || '').trim();
  return { title, html, links, partial };
}
"""


def headers_of(task: Task, variables: JsonObject) -> dict[str, str]:
    """The task's ``headers`` (an object, or its JSON text), ``{$…}`` substituted.
    ActionFailed for anything else, since the request could not be what the task asks."""
    given: JsonValue = (task.model_extra or {}).get("headers")
    if isinstance(given, str) and given.strip():
        try:
            given = json.loads(given)
        except ValueError:
            raise ActionFailed("headers is not a JSON object of header names and values") from None
    if given is None or given == "":
        return {}
    if not isinstance(given, dict):
        raise ActionFailed("headers must be an object of header names and values")
    return {
        str(name): substitute(value if isinstance(value, str) else json.dumps(value), variables)
        for name, value in given.items()
    }


def selector_of(task: Task, variables: JsonObject) -> str:
    given = (task.model_extra or {}).get("selector")
    return substitute(given, variables).strip() if isinstance(given, str) else ""


async def load(state: RunState, task: Task, url: str) -> None:
    """Fetch ``url`` into the run's page as its only request; a status of 400 or more
    fails the run."""
    page = state.page
    main = page.main_frame

    async def only_the_document(route: Route) -> None:
        request = route.request
        try:
            ours = request.is_navigation_request() and request.frame == main
        except PlaywrightError:  # a request with no frame (a service worker's)
            ours = False
        if ours:
            await route.continue_()
        else:  # no network from the page itself: what was fetched is all there is
            await route.abort("blockedbyclient")

    headers = headers_of(task, state.variables)
    if headers:
        await page.set_extra_http_headers(headers)
    await page.route("**/*", only_the_document)
    # The runner opens a scrape's context with JavaScript off; this page keeps it off
    # whatever context it is in (our own evaluate calls still run).
    session = await page.context.new_cdp_session(page)
    await session.send("Emulation.setScriptExecutionDisabled", {"value": True})
    await check_url(url, allow_private=state.allow_private, allow_metadata=state.allow_metadata)
    response = await page.goto(url, wait_until="load")
    if response is None:
        raise ActionFailed(f"fetching {url} gave no response")
    if response.status >= 400:
        raise ActionFailed(f"fetching {url} answered HTTP {response.status}")
    size = len(await response.body())
    await state.say(f"Fetched {url} (HTTP {response.status}, {size} bytes)")


async def describe(state: RunState, task: Task) -> JsonObject:
    """The fetched page as Figranium's scrape answers it (see the module's docstring)."""
    selector = selector_of(task, state.variables)
    found = await state.page.evaluate(_DESCRIBE_JS, {"selector": selector})
    if "invalid" in found:
        raise ActionFailed(f"selector {selector!r} is not a valid CSS selector")
    partial = bool(found["partial"])
    if partial:
        used = selector
    elif selector:
        used = f"{selector} (not found, using body)"
    else:
        used = "body (default)"
    return {
        "title": found["title"],
        "url": state.page.url,
        "html": await bounded(state, found["html"]),
        "links": found["links"],
        "is_partial": partial,
        "selector_used": used,
    }
