"""The request/reply services every runner answers over core NATS, one runner per request.

- ``TOOLS_PAGE_SUBJECT``: the page a task shows just before one of its actions, its HTML
  reduced to what choosing a selector needs.
- ``TOOLS_SCRIPT_SUBJECT``: whether an extraction script compiles in Chromium, wrapped as a
  run wraps it; the script itself never runs.
- ``TOOLS_TEST_ACTION_SUBJECT``: one action of a task tried on a scratch page
  (``test_action``), sharing the page captures' slots.

None is an execution: nothing is stored or published but the reply. Every request gets
a reply, failures included, so the asking gateway never waits for a timeout it cannot explain.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from playwright.async_api import BrowserContext, Page, Route
from playwright.async_api import Error as PlaywrightError
from pydantic import ValidationError

from figranium_common.config import Config
from figranium_common.errors import FigraniumError, describe, first_line
from figranium_common.models import (
    PageCaptureReply,
    PageCaptureRequest,
    ScriptCheckReply,
    ScriptCheckRequest,
    Task,
    TestActionReply,
    TestActionRequest,
)
from figranium_common.nats import (
    TOOLS_PAGE_SUBJECT,
    TOOLS_QUEUE,
    TOOLS_SCRIPT_SUBJECT,
    TOOLS_TEST_ACTION_SUBJECT,
    unsubscribe,
)
from figranium_runner import identity
from figranium_runner.browser import BrowserHost
from figranium_runner.context import open_context
from figranium_runner.egress import EgressPolicy
from figranium_runner.engine import Limits, failure_text, run_until
from figranium_runner.extraction import EXTRACTION_PARAMETERS
from figranium_runner.test_action import try_action

log = structlog.get_logger(__name__)

MAX_HTML_CHARS = 200_000
MAX_ATTRIBUTE_CHARS = 100
SCRIPT_CHECK_SECONDS = 5.0
# Page captures open a browser context each, like runs, but runs are what the runner is for:
# a few at a time at most, whatever the runner's slots.
MAX_CAPTURES = 2
_TRUNCATED = "\n<!-- truncated -->"

# A copy of the live DOM built in a document of its own (no scripts, no custom-element
# constructors run there), without what a selector never points at. Open shadow roots come
# along as declarative-shadow-DOM templates inside their hosts.
_REDUCE_JS = """
(maxAttribute) => {
  const HTML = 'http://www.w3.org/1999/xhtml';
  const SVG = 'http://www.w3.org/2000/svg';
  const DROPPED = new Set(['script', 'style', 'noscript', 'template', 'link', 'meta']);
  const EMPTIED = new Set(['iframe', 'frame']);
  const out = document.implementation.createHTMLDocument('');
  const walk = (from, into) => {
    for (let node = from.firstChild; node; node = node.nextSibling) {
      if (node.nodeType === Node.TEXT_NODE) {
        const text = node.nodeValue.replace(/\\s+/g, ' ');
        if (text.trim()) into.appendChild(out.createTextNode(text));
      } else if (node.nodeType === Node.ELEMENT_NODE) {
        const copy = reduce(node);
        if (copy) into.appendChild(copy);
      }
    }
  };
  const reduce = (el) => {
    const html = el.namespaceURI === HTML;
    if (html && DROPPED.has(el.localName)) return null;
    const copy = out.importNode(el, false);
    for (const attr of [...copy.attributes]) {
      const name = attr.name.toLowerCase();
      if (name === 'style' || name.startsWith('on')) copy.removeAttributeNode(attr);
      else if (attr.value.length > maxAttribute)
        attr.value = attr.value.slice(0, maxAttribute) + '\\u2026';
    }
    if (el.namespaceURI === SVG && el.localName === 'svg') return copy;
    if (html && EMPTIED.has(el.localName)) return copy;
    if (el.shadowRoot) {
      const root = out.createElement('template');
      root.setAttribute('shadowrootmode', 'open');
      walk(el.shadowRoot, root.content);
      copy.appendChild(root);
    }
    walk(el, copy);
    return copy;
  };
  const top = document.documentElement;
  return top ? reduce(top).outerHTML : '';
}
"""

# Compiles the body as the engine's extraction wrapper does (same constructor, same parameter
# names), and never calls what it made: constructing a function only parses it.
_CHECK_JS = """
({ parameters, script }) => {
  const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
  try {
    new AsyncFunction(...parameters, script);
    return null;
  } catch (e) {
    return String(e);
  }
}
"""


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or 'body'}: {err['msg']}"
        for err in exc.errors()
    )


def _refusal(exc: ValidationError) -> str:
    """Why a page capture request is refused: its task, or the request itself."""
    if all(err["loc"][:1] == ("task",) for err in exc.errors()):
        return f"the task is not valid: {_describe(exc)}"
    return f"the request is not valid: {_describe(exc)}"


def bound_html(html: str, limit: int = MAX_HTML_CHARS) -> str:
    if len(html) <= limit:
        return html
    return html[: limit - len(_TRUNCATED)] + _TRUNCATED


def _encode(reply: PageCaptureReply, max_payload: int) -> bytes:
    """The reply as sent; HTML cut further when it would not fit in one NATS message."""
    data = reply.model_dump_json().encode()
    while len(data) > max_payload and reply.html:
        keep = max(0, len(reply.html) * (max_payload - 1024) // len(data))
        reply = reply.model_copy(update={"html": bound_html(reply.html, keep)})
        data = reply.model_dump_json().encode()
    return data


def _too_large(reply: TestActionReply) -> TestActionReply:
    """The reply without what made it larger than a NATS message: output and variables."""
    note = "(too large to answer; see the log)"
    return reply.model_copy(update={"output": note, "variables": {}, "logs": reply.logs[-50:]})


async def _no_network(route: Route) -> None:
    await route.abort("blockedbyclient")


class ToolsService:
    """Owns the subscriptions, the page captures and action tests in flight, and the
    script-check page."""

    def __init__(self, config: Config, nc: NATS, browser: BrowserHost) -> None:
        self._config = config
        self._limits = Limits.from_config(config)
        self._egress = EgressPolicy.from_config(
            config,
            on_block=lambda target, reason: log.warning(
                "tools.connection_blocked", target=target, reason=reason
            ),
        )
        self._nc = nc
        self._browser = browser
        self._rng = random.Random()
        self._captures = min(MAX_CAPTURES, config.runner_concurrency)
        self._slots = asyncio.Semaphore(self._captures)
        self._subscriptions: list[Subscription] = []
        self._active: set[asyncio.Task[None]] = set()
        self._check_lock = asyncio.Lock()
        self._check_context: BrowserContext | None = None
        self._check_page: Page | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self, stopping: asyncio.Event | None = None) -> None:
        """Subscribe; with ``stopping``, unsubscribe as soon as it is set (a runner whose
        slots are all busy may take a while to notice it, and captures are quick to move)."""
        if stopping is not None:
            self._watch = asyncio.create_task(self._stop_on(stopping), name="tools.stop_on")
        self._subscriptions = [
            await self._nc.subscribe(TOOLS_PAGE_SUBJECT, queue=TOOLS_QUEUE, cb=self._on_page),
            await self._nc.subscribe(TOOLS_SCRIPT_SUBJECT, queue=TOOLS_QUEUE, cb=self._on_script),
            await self._nc.subscribe(
                TOOLS_TEST_ACTION_SUBJECT, queue=TOOLS_QUEUE, cb=self._on_test_action
            ),
        ]
        log.info("tools.ready", captures=self._captures)

    async def _stop_on(self, stopping: asyncio.Event) -> None:
        await stopping.wait()
        await self.stop_taking()

    async def stop_taking(self) -> None:
        """No more requests to this runner: the queue group gives them to the others."""
        subscriptions, self._subscriptions = self._subscriptions, []
        for sub in subscriptions:
            await unsubscribe(sub)

    async def drain(self, bound_seconds: float) -> None:
        """Let captures in flight answer within the bound; the rest answer "stopping"."""
        if self._watch is not None:
            self._watch.cancel()
        await self.stop_taking()
        if self._active:
            _, pending = await asyncio.wait(self._active, timeout=bound_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        async with self._check_lock:
            if self._check_context is not None:
                with contextlib.suppress(Exception):
                    await self._check_context.close()
            self._check_context = self._check_page = None

    # -- page capture ------------------------------------------------------------------

    async def _on_page(self, msg: Msg) -> None:
        # nats-py runs one callback at a time per subscription: the capture goes on in a
        # task of its own so that MAX_CAPTURES, not the subscription, sets the concurrency.
        task = asyncio.create_task(self._answer_page(msg), name="tools.page")
        self._active.add(task)
        task.add_done_callback(self._active.discard)

    async def _answer_page(self, msg: Msg) -> None:
        try:
            try:
                request = PageCaptureRequest.model_validate_json(msg.data)
            except ValidationError as exc:
                reply = PageCaptureReply(error=_refusal(exc))
            else:
                reply = await self.capture(request)
        except asyncio.CancelledError:
            await self._respond(msg, PageCaptureReply(error="the runner is stopping; try again"))
            raise
        except Exception as exc:  # a bug here must still answer, not leave the caller waiting
            log.exception("tools.page_capture_crashed")
            reply = PageCaptureReply(error=f"the runner failed to capture the page: {exc!r}")
        await self._respond(msg, reply)

    async def capture(self, request: PageCaptureRequest) -> PageCaptureReply:
        """Open the task's page, run its actions before ``action_index``, reduce the DOM."""
        started = time.monotonic()
        waiting = True
        try:
            # The bound covers the wait for a free slot: the caller gets an answer in time.
            async with asyncio.timeout(request.timeout_seconds), self._slots:
                waiting = False
                html, url = await self._capture(request, request.task)
        except TimeoutError:
            error = (
                f"the runner was busy with other page captures for {request.timeout_seconds:g} s"
                if waiting
                else f"the page was not captured within {request.timeout_seconds:g} s"
            )
        except (FigraniumError, PlaywrightError) as exc:
            error = failure_text(exc)
        else:
            duration_ms = int((time.monotonic() - started) * 1000)
            log.info("tools.page_captured", duration_ms=duration_ms, chars=len(html))
            return PageCaptureReply(html=html, url=url)
        duration_ms = int((time.monotonic() - started) * 1000)
        log.info("tools.page_capture_failed", duration_ms=duration_ms, error=error)
        return PageCaptureReply(error=error)

    async def _capture(self, request: PageCaptureRequest, task: Task) -> tuple[str, str]:
        options = identity.context_options(task, request.proxies, self._rng)
        if task.mode == "scrape":
            options["java_script_enabled"] = False  # as a run shows it
        state = None if task.statelessExecution else request.storage_state
        context = await open_context(self._browser, options, state, self._egress)
        try:
            page = await context.new_page()
            await identity.emulate(page, options)
            run_state = await run_until(
                page,
                task,
                request.variables,
                request.action_index,
                limits=self._limits,
                subtasks=request.subtasks,
            )
            try:
                try:
                    html: str = await page.evaluate(_REDUCE_JS, MAX_ATTRIBUTE_CHARS)
                except PlaywrightError:
                    # The last action started a navigation that replaced the document.
                    await page.wait_for_load_state("load")
                    html = await page.evaluate(_REDUCE_JS, MAX_ATTRIBUTE_CHARS)
            finally:
                run_state.discard_kept_files()
            return bound_html(html), page.url
        finally:
            with contextlib.suppress(Exception):
                await context.close()

    # -- test action -----------------------------------------------------------------

    async def _on_test_action(self, msg: Msg) -> None:
        task = asyncio.create_task(self._answer_test_action(msg), name="tools.test_action")
        self._active.add(task)
        task.add_done_callback(self._active.discard)

    async def _answer_test_action(self, msg: Msg) -> None:
        try:
            try:
                request = TestActionRequest.model_validate_json(msg.data)
            except ValidationError as exc:
                reply = TestActionReply(error=_refusal(exc))
            else:
                reply = await self.test_action(request)
        except asyncio.CancelledError:
            await self._respond(msg, TestActionReply(error="the runner is stopping; try again"))
            raise
        except Exception as exc:  # a bug here must still answer, not leave the caller waiting
            log.exception("tools.test_action_crashed")
            reply = TestActionReply(error=f"the runner failed to test the action: {exc!r}")
        await self._respond(msg, reply)

    async def test_action(self, request: TestActionRequest) -> TestActionReply:
        """Try one action, within the request's time, in one of the page captures' slots."""
        waiting = True
        try:
            async with asyncio.timeout(request.timeout_seconds), self._slots:
                waiting = False
                reply = await try_action(
                    self._browser, self._egress, self._limits, self._rng, request
                )
        except TimeoutError:
            busy = f"the runner was busy for {request.timeout_seconds:g} s"
            late = f"the action was not tested within {request.timeout_seconds:g} s"
            return TestActionReply(error=busy if waiting else late)
        log.info("tools.action_tested", status=reply.status, duration_ms=reply.durationMs)
        return reply

    async def _respond(
        self, msg: Msg, reply: PageCaptureReply | ScriptCheckReply | TestActionReply
    ) -> None:
        if not msg.reply:
            return  # published, not requested: nobody to answer
        if isinstance(reply, PageCaptureReply):
            data = _encode(reply, int(self._nc.max_payload))
        else:
            data = reply.model_dump_json().encode()
        if len(data) > self._nc.max_payload and isinstance(reply, TestActionReply):
            data = _too_large(reply).model_dump_json().encode()
        try:
            await msg.respond(data)
        except Exception as exc:  # NATS unreachable: the caller times out and says so
            log.warning("tools.reply_failed", error=describe(exc))

    # -- script check ------------------------------------------------------------------

    async def _on_script(self, msg: Msg) -> None:
        try:
            request = ScriptCheckRequest.model_validate_json(msg.data)
        except ValidationError as exc:
            await self._respond(
                msg, ScriptCheckReply(error=f"the request is not valid: {_describe(exc)}")
            )
            return
        try:
            error = await self.check(request.script)
        except asyncio.CancelledError:
            await self._respond(msg, ScriptCheckReply(error="the runner is stopping; try again"))
            raise
        except Exception as exc:
            log.exception("tools.script_check_crashed")
            error = f"the script could not be checked: {exc!r}"
        await self._respond(msg, ScriptCheckReply(error=error))

    async def check(self, script: str) -> str | None:
        """None when ``script`` compiles as an extraction script body, else the error."""
        arguments = {"parameters": list(EXTRACTION_PARAMETERS), "script": script}
        try:
            async with asyncio.timeout(SCRIPT_CHECK_SECONDS):
                try:
                    page = await self._page_for_checks()
                    result = await page.evaluate(_CHECK_JS, arguments)
                except PlaywrightError:
                    # The page or the whole browser went away: once more on a new one.
                    page = await self._page_for_checks(renew=True)
                    result = await page.evaluate(_CHECK_JS, arguments)
        except TimeoutError:
            return f"the script could not be checked within {SCRIPT_CHECK_SECONDS:g} s"
        except PlaywrightError as exc:
            return f"the script could not be checked: {first_line(exc)}"
        return None if result is None else str(result)

    async def _page_for_checks(self, *, renew: bool = False) -> Page:
        """One long-lived about:blank page in a context with no network at all."""
        async with self._check_lock:
            page = self._check_page
            if page is not None and not page.is_closed() and not renew:
                return page
            if self._check_context is not None:
                with contextlib.suppress(Exception):
                    await self._check_context.close()
            self._check_context = context = await self._browser.new_context()
            await context.route("**/*", _no_network)
            self._check_page = page = await context.new_page()
            return page
