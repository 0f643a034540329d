"""What a run with ``stealth`` options shows a bot-detection script: a desktop Chrome, not
the headless shell it runs in.

Runs use Chromium's headless shell (browser.py: a fraction of the full browser's CPU and
memory per context, docs/performance.md). The shell gives itself away: ``HeadlessChrome``
in its user agent and brands, no plugins and no PDF viewer, no ``window.chrome``, a
notification permission that ``permissions.query`` reports as "prompt" while
``Notification.permission`` says "denied", a window with no browser frame around the page,
a lone "en-US" language, and a software WebGL renderer (SwiftShader). A stealth run gets:

- a Chrome user agent with its client hints and platform (identity.py), a Chrome on Linux
  when the task does not rotate agents (the machine's real OS), one of the Chromium-based
  agents when it does;
- an init script, run in every page before the page's own scripts, that adds Chrome's
  PDF plugins, ``window.chrome``, a coherent permission answer, a window frame, the
  desktop's languages and a WebGL vendor and renderer of a GPU that goes with the
  platform. The functions it replaces still say ``[native code]``.

``navigator.webdriver`` is false in every run: browser.py launches Chromium with
``--disable-blink-features=AutomationControlled``.
"""

from __future__ import annotations

import json

from playwright.async_api import BrowserContext

from figranium_runner.browser import ContextOptions
from figranium_runner.identity import USER_AGENTS, Platform, UserAgent, by_string

# The unmasked WebGL vendor and renderer of a common GPU on each platform, as Chrome
# reports them through WEBGL_debug_renderer_info.
WEBGL: dict[Platform, tuple[str, str]] = {
    "Windows": (
        "Google Inc. (Intel)",
        "ANGLE (Intel, Intel(R) UHD Graphics 620 (0x00005917) Direct3D11 vs_5_0 ps_5_0, D3D11)",
    ),
    "macOS": (
        "Google Inc. (Apple)",
        "ANGLE (Apple, ANGLE Metal Renderer: Apple M1, Unspecified Version)",
    ),
    "Linux": (
        "Google Inc. (Intel)",
        "ANGLE (Intel, Mesa Intel(R) UHD Graphics 620 (KBL GT2), OpenGL 4.6)",
    ),
}
LANGUAGES = ("en-US", "en")


def linux_chrome() -> UserAgent:
    """The newest Chrome on Linux the list knows: a stealth run's agent when the task does
    not rotate agents."""
    candidates = [ua for ua in USER_AGENTS if ua.browser == "Chrome" and ua.platform == "Linux"]
    return max(candidates, key=lambda ua: ua.major)


def disguise(options: ContextOptions) -> UserAgent:
    """Give a stealth run a Chrome user agent (with its client hints) unless it has one
    already; the agent it runs as."""
    chosen = by_string(options.get("user_agent", ""))
    if chosen is not None:
        return chosen
    chosen = linux_chrome()
    options["user_agent"] = chosen.user_agent
    headers = options.get("extra_http_headers", {})
    options["extra_http_headers"] = {**headers, **chosen.client_hints()}
    return chosen


async def prepare(context: BrowserContext, agent: UserAgent) -> None:
    """Install the init script in ``context`` before its first page opens."""
    vendor, renderer = WEBGL[agent.platform]
    settings = {"vendor": vendor, "renderer": renderer, "languages": list(LANGUAGES)}
    await context.add_init_script(f"({_INIT_JS})({json.dumps(settings)});")


_INIT_JS = """
(settings) => {
  const natives = new WeakMap();
  const nativeToString = Function.prototype.toString;
  const disguised = function toString() {
    return natives.has(this) ? natives.get(this) : nativeToString.call(this);
  };
  natives.set(disguised, 'function toString() { [native code] }');
  Function.prototype.toString = disguised;
  const native = (fn, name) => {
    natives.set(fn, `function ${name}() { [native code] }`);
    return fn;
  };
  const getter = (proto, name, value) => {
    const get = native(function () { return value(); }, `get ${name}`);
    Object.defineProperty(proto, name, { get, configurable: true, enumerable: true });
  };

  // Chrome's five PDF plugins, each with its two MIME types.
  if (navigator.plugins.length === 0) {
    const mimes = Object.create(MimeTypeArray.prototype);
    const plugins = Object.create(PluginArray.prototype);
    const types = [['application/pdf', 'pdf'], ['text/pdf', 'pdf']];
    const names = ['PDF Viewer', 'Chrome PDF Viewer', 'Chromium PDF Viewer',
      'Microsoft Edge PDF Viewer', 'WebKit built-in PDF'];
    const mimeList = types.map(([type, suffixes]) => {
      const mime = Object.create(MimeType.prototype);
      Object.defineProperties(mime, {
        type: { value: type }, suffixes: { value: suffixes },
        description: { value: 'Portable Document Format' },
      });
      return mime;
    });
    names.forEach((name, i) => {
      const plugin = Object.create(Plugin.prototype);
      Object.defineProperties(plugin, {
        name: { value: name }, filename: { value: 'internal-pdf-viewer' },
        description: { value: 'Portable Document Format' }, length: { value: mimeList.length },
      });
      mimeList.forEach((mime, j) => Object.defineProperty(plugin, j, { value: mime }));
      Object.defineProperty(plugins, i, { value: plugin, enumerable: true });
      Object.defineProperty(plugins, name, { value: plugin });
    });
    mimeList.forEach((mime, j) => {
      Object.defineProperty(mime, 'enabledPlugin', { value: plugins[0] });
      Object.defineProperty(mimes, j, { value: mime, enumerable: true });
      Object.defineProperty(mimes, mime.type, { value: mime });
    });
    const list = (items, count) => {
      Object.defineProperty(items, 'length', { value: count });
      const item = native(function item(i) { return items[i] || null; }, 'item');
      const namedItem = native(function namedItem(n) { return items[n] || null; }, 'namedItem');
      Object.defineProperties(items, { item: { value: item }, namedItem: { value: namedItem } });
      return items;
    };
    list(plugins, names.length);
    list(mimes, mimeList.length);
    Object.defineProperty(plugins, 'refresh', { value: native(function refresh() {}, 'refresh') });
    getter(Navigator.prototype, 'plugins', () => plugins);
    getter(Navigator.prototype, 'mimeTypes', () => mimes);
    getter(Navigator.prototype, 'pdfViewerEnabled', () => true);
  }

  const languages = Object.freeze([...settings.languages]);
  getter(Navigator.prototype, 'languages', () => languages);
  getter(Navigator.prototype, 'language', () => languages[0]);

  // window.chrome, as a page (not an extension) sees it.
  if (!window.chrome) {
    const chrome = {
      app: { isInstalled: false, InstallState: { DISABLED: 'disabled', INSTALLED: 'installed',
        NOT_INSTALLED: 'not_installed' }, RunningState: { CANNOT_RUN: 'cannot_run',
        READY_TO_RUN: 'ready_to_run', RUNNING: 'running' } },
      csi: native(function csi() {
        return { onloadT: Date.now(), startE: Date.now(), pageT: performance.now(), tran: 15 };
      }, 'csi'),
      loadTimes: native(function loadTimes() { return {}; }, 'loadTimes'),
    };
    Object.defineProperty(window, 'chrome',
      { value: chrome, writable: true, configurable: true, enumerable: true });
  }

  // The notification permission, asked either way, gives one answer.
  if (navigator.permissions && typeof Notification !== 'undefined') {
    const query = Permissions.prototype.query;
    Permissions.prototype.query = native(function query(descriptor) {
      if (descriptor && descriptor.name === 'notifications') {
        const state = Notification.permission === 'default' ? 'prompt' : Notification.permission;
        const status = { state, name: 'notifications', onchange: null };
        return Promise.resolve(Object.setPrototypeOf(status, PermissionStatus.prototype));
      }
      return query.call(this, descriptor);
    }, 'query');
  }

  // A browser window has a frame: tabs and toolbar above the page.
  getter(window, 'outerWidth', () => window.innerWidth);
  getter(window, 'outerHeight', () => window.innerHeight + 85);

  // The GPU of the platform the user agent names, not the software renderer.
  const VENDOR = 0x9245, RENDERER = 0x9246;
  for (const proto of [WebGLRenderingContext.prototype, WebGL2RenderingContext.prototype]) {
    const getParameter = proto.getParameter;
    proto.getParameter = native(function getParameter(name) {
      if (name === VENDOR) return settings.vendor;
      if (name === RENDERER) return settings.renderer;
      return getParameter.call(this, name);
    }, 'getParameter');
  }
}
"""
