"""Keeps a context's page navigations, every redirect hop included, inside the URL policy.

Runs no longer use it: every context has an egress proxy of its own (egress.py), which
checks all its connections, a task's own proxy included. The engine benchmark still
compares the two.

Playwright never hands redirect follow-ups to route handlers: its driver continues by itself any
request that has a redirectedFrom, whether the 3xx came from the network or from our own
route.fulfill() (tried: fulfilling a 302 made Chromium fetch the next hops unrouted, unchecked).
So the guard follows a main-frame navigation's redirects itself, checking each hop, and then:

- a final page is not given to the browser on the first URL (its content would run with that
  URL's origin) but parked, and the first request is answered with a stand-in page that does
  location.replace(final URL). That new navigation comes back here and gets the parked
  response, so each hop is fetched once. page.goto() still waits for the final page's load
  (seen with Playwright 1.65 / Chromium 156: a document that navigates away while parsing
  never fires its own), but returns the stand-in's Response, and wait_until="commit" stops
  at the stand-in;
- a download or a 204 is answered directly, so that, as with a real redirect, the page that
  was there stays there.

Not covered: sub-resources (fetch, XHR, images, WebSockets) and redirects of sub-frame
navigations (the first URL of a sub-frame navigation is checked). Playwright's fetch also
resolves the host again after check_url did, so DNS rebinding in that moment is not excluded.
egress.py, which every run's context uses instead, closes all three.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from urllib.parse import urldefrag, urljoin, urlsplit

import structlog
from playwright.async_api import APIResponse, BrowserContext, Frame, Request, Route
from playwright.async_api import Error as PlaywrightError

from figranium_common.errors import InvalidUrlError
from figranium_common.outbound_urls import check_url, check_url_syntax

log = structlog.get_logger(__name__)

MAX_REDIRECTS = 5  # COMPATIBILITY.md: the same limit as every other outbound request
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Carried to later hops. Cookies are not: the context's jar supplies the right ones per origin.
_HOP_HEADERS = ("user-agent", "accept", "accept-language", "upgrade-insecure-requests")
# Playwright error text from a fetch → the net::ERR_* the page would have shown.
_NET_ERRORS = (
    ("ECONNREFUSED", "connectionrefused"),
    ("ENOTFOUND", "namenotresolved"),
    ("EAI_AGAIN", "namenotresolved"),
    ("ECONNRESET", "connectionreset"),
    ("ETIMEDOUT", "timedout"),
    ("Timeout", "timedout"),
)


async def install_navigation_guard(
    context: BrowserContext,
    *,
    allow_private: bool,
    allow_metadata: bool = False,
    on_block: Callable[[str, str], None] | None = None,
) -> None:
    """Check every page navigation, and each of its redirect hops, with check_url.

    allow_private and allow_metadata are check_url's (settings ALLOW_PRIVATE_NETWORKS and
    ALLOW_METADATA_ADDRESS). A refused URL aborts the navigation with
    net::ERR_BLOCKED_BY_CLIENT after on_block(url, reason). Install it after any other context
    route: Playwright runs the newest first, and a newer handler that continues a navigation
    would skip this one.
    """
    guard = _NavigationGuard(context, allow_private, allow_metadata, on_block)
    await context.route("**/*", guard.handle)


class _NavigationGuard:
    def __init__(
        self,
        context: BrowserContext,
        allow_private: bool,
        allow_metadata: bool,
        on_block: Callable[[str, str], None] | None,
    ) -> None:
        self._context = context
        self._allow_private = allow_private
        self._allow_metadata = allow_metadata
        self._on_block = on_block
        self._parked: dict[Frame, APIResponse] = {}

    async def handle(self, route: Route) -> None:
        try:
            await self._handle(route)
        except PlaywrightError as exc:
            # Mostly a page or context closed mid-navigation; nothing is left to answer.
            log.debug("navigation_guard.route_failed", url=route.request.url, error=str(exc))

    async def _handle(self, route: Route) -> None:
        request = route.request
        if not request.is_navigation_request() or not _is_http(request.url):
            await route.fallback()
            return
        try:
            frame = request.frame
        except PlaywrightError:  # service-worker requests have no frame
            await route.fallback()
            return
        parked = self._parked.pop(frame, None)
        if parked is not None:
            if request.method == "GET" and _same_url(parked.url, request.url):
                await self._fulfill(route, parked)  # the stand-in page's navigation
                return
            await parked.dispose()
        if not await self._allowed(route, request.url):
            return
        if frame.parent_frame is not None:
            await route.fallback()
            return
        await self._navigate(route, request, frame)

    async def _allowed(self, route: Route, url: str) -> bool:
        """Whether url passes; if not, the route is already aborted."""
        try:
            await check_url(
                url, allow_private=self._allow_private, allow_metadata=self._allow_metadata
            )
        except InvalidUrlError as exc:
            if exc.details.startswith("cannot resolve host"):
                # A typo is not an attack: show the browser's own error, not a block.
                await route.abort("namenotresolved")
                return False
            await self._block(route, url, exc.details)
            return False
        return True

    async def _block(self, route: Route, url: str, reason: str) -> None:
        log.info("navigation_guard.blocked", url=url, reason=reason)
        if self._on_block is not None:
            try:
                self._on_block(url, reason)
            except Exception:
                log.exception("navigation_guard.on_block_failed")
        await route.abort("blockedbyclient")

    async def _navigate(self, route: Route, request: Request, frame: Frame) -> None:
        try:
            first = await route.fetch(max_redirects=0)
        except PlaywrightError as exc:
            await route.abort(_net_error(str(exc)))
            return
        if _location(first) is None:
            await self._fulfill(route, first)
            return
        followed = await self._follow(route, request, first)
        if followed is None:
            return
        final, fragment = followed
        if _stays_on_page(final):
            await self._fulfill(route, final)
            return
        self._parked[frame] = final
        await route.fulfill(
            status=200,
            headers={"cache-control": "no-store"},
            content_type="text/html; charset=utf-8",
            body=_stand_in_page(final.url + (f"#{fragment}" if fragment else "")),
        )

    async def _follow(
        self, route: Route, request: Request, response: APIResponse
    ) -> tuple[APIResponse, str] | None:
        """The response at the end of the redirects and the fragment the last Location had.

        None when the route was aborted instead. Method and body change as in browsers.
        """
        url, method, body = request.url, request.method, request.post_data_buffer
        content_type = request.headers.get("content-type")
        for hop in range(MAX_REDIRECTS + 1):
            location = _location(response)
            if location is None:
                return response, urldefrag(url).fragment
            await response.dispose()
            try:
                # urljoin reads "/\\127.0.0.1/" as a path; Chromium as another host.
                check_url_syntax(location)
            except InvalidUrlError as exc:
                await self._block(route, location, exc.details)
                return None
            url = urljoin(url, location)
            if hop == MAX_REDIRECTS:
                await self._block(route, url, f"more than {MAX_REDIRECTS} redirects")
                return None
            if not await self._allowed(route, url):
                return None
            status = response.status
            if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
                method, body, content_type = "GET", None, None
            try:
                response = await self._context.request.fetch(
                    url,
                    method=method,
                    headers=_hop_headers(request, url, content_type),
                    data=body,
                    max_redirects=0,
                )
            except PlaywrightError as exc:
                await route.abort(_net_error(str(exc)))
                return None
        raise AssertionError("unreachable: the last hop returns or blocks")

    @staticmethod
    async def _fulfill(route: Route, response: APIResponse) -> None:
        try:
            await route.fulfill(response=response)
        finally:
            await response.dispose()


def _is_http(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https")


def _hop_headers(request: Request, url: str, content_type: str | None) -> dict[str, str]:
    headers = {name: value for name, value in request.headers.items() if name in _HOP_HEADERS}
    if content_type is not None:
        headers["content-type"] = content_type
    referer = request.headers.get("referer")
    # Past the first origin the full referrer would say more than the browser's policy allows.
    if referer is not None and _origin(url) == _origin(request.url):
        headers["referer"] = referer
    return headers


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def _same_url(a: str, b: str) -> bool:
    return urldefrag(a).url == urldefrag(b).url


def _location(response: APIResponse) -> str | None:
    location = response.headers.get("location")
    if response.status in REDIRECT_STATUSES and location:
        return location.strip()
    return None


def _stays_on_page(response: APIResponse) -> bool:
    """Responses Chromium never renders, so answering them on the first URL is safe."""
    disposition = response.headers.get("content-disposition", "").lower()
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return (
        response.status in (204, 205)
        or disposition.startswith("attachment")
        or content_type == "application/octet-stream"
    )


def _net_error(message: str) -> str:
    for marker, code in _NET_ERRORS:
        if marker in message:
            return code
    return "failed"


def _stand_in_page(target: str) -> str:
    # No "</script>" or "<!--" can come out of the JSON string literal.
    literal = json.dumps(target).replace("<", "\\u003c").replace(">", "\\u003e")
    refresh = html.escape(f"0;url={target}", quote=True)
    # The refresh is only for contexts without JavaScript; with it, noscript is inert text.
    return (
        "<!doctype html><html><head>"
        f'<noscript><meta http-equiv="refresh" content="{refresh}"></noscript>'
        f"<script>location.replace({literal})</script>"
        "</head></html>"
    )
