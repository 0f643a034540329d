"""What a run looks like from outside: user agent, client hints, viewport and proxy.

Tasks with ``rotateUserAgents`` or ``rotateViewport`` get a random pick per run; the proxy
is chosen at dispatch (``figranium_common.proxy_choice``) and comes with the run request.
Everything a site can compare is kept consistent with the chosen user agent: the
``User-Agent`` header, ``navigator.userAgent`` and ``navigator.platform``, and the
``Sec-CH-UA*`` client hints (sent only for Chromium-based browsers, as real Firefox and
Safari never send them).

The list reflects the stable desktop releases at the end of 2026 (Chrome/Edge 155-156,
Firefox 156-157, Safari 27); refresh it with each browser release, since a user agent
that is months old stands out as much as a headless one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from playwright.async_api import Page, ProxySettings

from figranium_common.jsontypes import JsonObject
from figranium_common.models import ProxyConfig, Task
from figranium_runner.browser import ContextOptions

Browser = Literal["Chrome", "Edge", "Firefox", "Safari"]
Platform = Literal["Windows", "macOS", "Linux"]

# navigator.platform as each OS reports it (Chrome on Apple silicon still says MacIntel).
_NAVIGATOR_PLATFORM: dict[Platform, str] = {
    "Windows": "Win32",
    "macOS": "MacIntel",
    "Linux": "Linux x86_64",
}
# Sec-CH-UA-Platform-Version as reported by current releases: Windows 11 reports 19.0.0
# (Windows 10 reports 10.0.0 or lower), macOS its marketing version, Linux nothing.
_PLATFORM_VERSION: dict[Platform, str] = {"Windows": "19.0.0", "macOS": "26.1.0", "Linux": ""}
_BRAND: dict[Browser, str] = {"Chrome": "Google Chrome", "Edge": "Microsoft Edge"}


@dataclass(frozen=True)
class UserAgent:
    user_agent: str
    browser: Browser
    version: str  # as it appears in the user agent: "156", "157.0", "27.1"
    platform: Platform

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def chromium_based(self) -> bool:
        return self.browser in _BRAND

    def brands(self) -> list[tuple[str, str]]:
        """``Sec-CH-UA`` brands in Chromium's own order, GREASE entry included."""
        if not self.chromium_based:
            return []
        return chromium_brands(self.major, _BRAND[self.browser])

    def client_hints(self) -> dict[str, str]:
        """The low-entropy client hints a browser sends on every request; none for Gecko/WebKit."""
        if not self.chromium_based:
            return {}
        return {
            "sec-ch-ua": ", ".join(f'"{name}";v="{version}"' for name, version in self.brands()),
            "sec-ch-ua-mobile": "?0",
            "sec-ch-ua-platform": f'"{self.platform}"',
        }


USER_AGENTS: tuple[UserAgent, ...] = (
    UserAgent(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/156.0.0.0 Safari/537.36",
        "Chrome",
        "156",
        "Windows",
    ),
    UserAgent(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/155.0.0.0 Safari/537.36",
        "Chrome",
        "155",
        "Windows",
    ),
    UserAgent(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36"
        " (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
        "Chrome",
        "156",
        "macOS",
    ),
    UserAgent(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36"
        " (KHTML, like Gecko) Chrome/155.0.0.0 Safari/537.36",
        "Chrome",
        "155",
        "macOS",
    ),
    UserAgent(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/156.0.0.0 Safari/537.36",
        "Chrome",
        "156",
        "Linux",
    ),
    UserAgent(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/156.0.0.0 Safari/537.36 Edg/156.0.0.0",
        "Edge",
        "156",
        "Windows",
    ),
    UserAgent(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/155.0.0.0 Safari/537.36 Edg/155.0.0.0",
        "Edge",
        "155",
        "Windows",
    ),
    UserAgent(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36"
        " (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36 Edg/156.0.0.0",
        "Edge",
        "156",
        "macOS",
    ),
    UserAgent(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:157.0) Gecko/20100101 Firefox/157.0",
        "Firefox",
        "157.0",
        "Windows",
    ),
    UserAgent(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:156.0) Gecko/20100101 Firefox/156.0",
        "Firefox",
        "156.0",
        "Windows",
    ),
    UserAgent(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:157.0) Gecko/20100101 Firefox/157.0",
        "Firefox",
        "157.0",
        "macOS",
    ),
    UserAgent(
        "Mozilla/5.0 (X11; Linux x86_64; rv:157.0) Gecko/20100101 Firefox/157.0",
        "Firefox",
        "157.0",
        "Linux",
    ),
    UserAgent(
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:156.0) Gecko/20100101 Firefox/156.0",
        "Firefox",
        "156.0",
        "Linux",
    ),
    UserAgent(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15"
        " (KHTML, like Gecko) Version/27.1 Safari/605.1.15",
        "Safari",
        "27.1",
        "macOS",
    ),
    UserAgent(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15"
        " (KHTML, like Gecko) Version/27.0 Safari/605.1.15",
        "Safari",
        "27.0",
        "macOS",
    ),
)
_BY_STRING = {entry.user_agent: entry for entry in USER_AGENTS}
CHROMIUM_USER_AGENTS = tuple(entry for entry in USER_AGENTS if entry.chromium_based)
# navigator.languages and Accept-Language of an English desktop browser ("en-US,en;q=0.9");
# Chromium's own headless default is a lone "en-US".
ACCEPT_LANGUAGE = "en-US,en"

# Common desktop window sizes (CSS pixels); 1536x864 is 1920x1080 at 125 % scaling.
VIEWPORTS: tuple[tuple[int, int], ...] = (
    (1920, 1080),
    (1536, 864),
    (1366, 768),
    (1440, 900),
    (1280, 720),
    (1600, 900),
    (1280, 800),
    (1680, 1050),
    (1920, 1200),
)

# Chromium's GREASE for Sec-CH-UA (components/embedder_support/user_agent_utils.cc): the
# fake brand, its version and the order of the list all follow from the major version, so
# a list that does not match them gives a spoofed browser away.
_GREASE_CHARS = (" ", "(", ":", "-", ".", "/", ")", ";", "=", "?", "_")
_GREASE_VERSIONS = ("8", "99", "24")
_ORDERS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def chromium_brands(major: int, brand: str | None) -> list[tuple[str, str]]:
    """The brand list Chromium ``major`` sends, with ``brand`` (e.g. Google Chrome) if any."""
    n = len(_GREASE_CHARS)
    grease_name = f"Not{_GREASE_CHARS[major % n]}A{_GREASE_CHARS[(major + 1) % n]}Brand"
    grease = (grease_name, _GREASE_VERSIONS[major % len(_GREASE_VERSIONS)])
    chromium = ("Chromium", str(major))
    if brand is None:
        return [grease, chromium] if major % 2 == 0 else [chromium, grease]
    entries = (grease, chromium, (brand, str(major)))
    out: list[tuple[str, str]] = [("", "")] * 3
    for position, entry in zip(_ORDERS[major % len(_ORDERS)], entries, strict=True):
        out[position] = entry
    return out


def context_options(task: Task, proxies: list[ProxyConfig], rng: random.Random) -> ContextOptions:
    """Extra ``browser.new_context`` arguments for the task's rotation settings and the
    proxy the run request carries."""
    options: ContextOptions = {}
    if task.rotateUserAgents:
        # With stealth on, only agents a Chromium can pass for (stealth.py).
        chosen = rng.choice(CHROMIUM_USER_AGENTS if task.stealth.enabled else USER_AGENTS)
        options["user_agent"] = chosen.user_agent
        hints = chosen.client_hints()
        if hints:
            options["extra_http_headers"] = hints
    if task.rotateViewport:
        width, height = rng.choice(VIEWPORTS)
        options["viewport"] = {"width": width, "height": height}
    if proxies:
        # This release's run requests carry the one proxy chosen at dispatch; those of the
        # release before carried every saved proxy, for tasks with rotateProxies only.
        proxy = proxies[0] if len(proxies) == 1 else rng.choice(proxies)
        config: ProxySettings = {"server": proxy.server}
        if proxy.username is not None:
            config["username"] = proxy.username
        if proxy.password is not None:
            config["password"] = proxy.password
        options["proxy"] = config
    return options


def by_string(user_agent: str) -> UserAgent | None:
    """The listed agent whose string this is, if any."""
    return _BY_STRING.get(user_agent)


def describe(options: ContextOptions) -> dict[str, str]:
    """Log fields for the chosen identity, without proxy credentials."""
    out: dict[str, str] = {}
    chosen = _BY_STRING.get(options.get("user_agent", ""))
    if chosen is not None:
        out["user_agent"] = f"{chosen.browser} {chosen.version} on {chosen.platform}"
    if "viewport" in options:
        out["viewport"] = f"{options['viewport']['width']}x{options['viewport']['height']}"
    if "proxy" in options:
        # The server may carry user:password@ itself; only scheme, host and port are logged.
        parts = urlsplit(options["proxy"]["server"])
        out["proxy"] = f"{parts.scheme}://{parts.hostname}:{parts.port or ''}".rstrip(":")
    return out


async def emulate(page: Page, options: ContextOptions) -> None:
    """Make the page's script-visible identity match the chosen user agent.

    Playwright overrides the user agent but keeps the real Chromium's brands in
    ``navigator.userAgentData`` and the ``Sec-CH-UA`` headers, and the real OS in
    ``navigator.platform``. Overriding again through the page's DevTools session fixes
    that: with metadata for Chromium-based agents, without it for Firefox and Safari, which
    makes Chromium drop the client hints altogether. The languages become a desktop's
    (``ACCEPT_LANGUAGE``) in ``navigator.languages`` and the header alike. Pages opened
    later (popups) keep Playwright's override; the context's extra headers still cover
    their requests.
    """
    chosen = _BY_STRING.get(options.get("user_agent", ""))
    if chosen is None:
        return
    override: JsonObject = {
        "userAgent": chosen.user_agent,
        "platform": _NAVIGATOR_PLATFORM[chosen.platform],
        "acceptLanguage": ACCEPT_LANGUAGE,
    }
    if chosen.chromium_based:
        override["userAgentMetadata"] = {
            "brands": [{"brand": name, "version": version} for name, version in chosen.brands()],
            "platform": chosen.platform,
            "platformVersion": _PLATFORM_VERSION[chosen.platform],
            "architecture": "x86",
            "bitness": "64",
            "model": "",
            "mobile": False,
            "wow64": False,
        }
    # The session is left open: detaching it would undo the override. It ends with the page.
    session = await page.context.new_cdp_session(page)
    await session.send("Emulation.setUserAgentOverride", override)
