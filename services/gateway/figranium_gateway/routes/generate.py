"""AI help for task authors: a CSS selector for an element described in words, and an
extraction script for data described in words.

A selector is proposed from the page as it is at that step of the task: a runner runs the
task's actions up to ``actionIndex`` and answers the page's reduced HTML, and a proposal
that matches nothing in that HTML is rejected, so the next provider gets its turn. A
script is checked to compile in Chromium (by a runner) before it is answered.
"""

from __future__ import annotations

import re

import structlog
from aiohttp import web
from bs4 import BeautifulSoup
from pydantic import BaseModel, Field
from soupsieve import SelectorSyntaxError

from figranium_common.jsontypes import GivenObject, JsonMapping, JsonObject
from figranium_common.models import PageCaptureReply, PageCaptureRequest
from figranium_gateway import dispatch, runner_tools
from figranium_gateway.ai.chain import (
    Accept,
    AiAnswer,
    AiChain,
    AllProvidersFailed,
    AnswerRejected,
    KeyRing,
    NoAiKeys,
)
from figranium_gateway.errors import ApiError
from figranium_gateway.openapi import ErrorBody
from figranium_gateway.request_input import read_json_object
from figranium_gateway.routing import Router
from figranium_gateway.state import AI, BOX, CONFIG, NC, POOL
from figranium_gateway.validation import validate_task

log = structlog.get_logger(__name__)
api = Router("ai")

# What the model is shown of the page; the check uses the whole captured HTML.
PROMPT_HTML_CHARS = 60_000
MAX_PROMPT_CHARS = 2_000
MAX_SELECTOR_CHARS = 500
CAPTURE_TIMEOUT_SECONDS = 90.0

SELECTOR_SYSTEM = (
    "You write CSS selectors for browser automation. Answer with exactly one CSS selector"
    " (standard CSS: no XPath, no :contains(), no Playwright text= syntax) that selects the"
    " element the user describes in the HTML they give. Prefer stable attributes (id, name,"
    " data-*, aria-*, labels) over position and generated class names. Answer with the"
    " selector alone: no explanation, no quotes, no code fences."
)
SCRIPT_SYSTEM = (
    "You write extraction scripts for a browser automation tool. The script is the body of"
    " an async JavaScript function that runs inside the page with `document` and `window`;"
    " it must `return` the data the user describes as JSON-serialisable values (arrays of"
    " objects for lists). Use only standard DOM APIs; no imports, no network requests, no"
    " navigation. Answer with the function body alone: no function declaration around it,"
    " no explanation, no code fences."
)

_FENCE = re.compile(r"^```[\w-]*\s*\n?(.*?)\n?```\s*$", re.DOTALL)


class SelectorBody(BaseModel):
    task: GivenObject = Field(description="the task (as saved); its url is opened first")
    actionIndex: int = Field(
        ge=0, description="the page as it is before this action (its index in actions)"
    )
    prompt: str = Field(description="the element, in words")


class SelectorAnswer(BaseModel):
    selector: str
    provider: str
    matches: int


class ScriptBody(BaseModel):
    description: str = Field(description="the data to extract, in words")


class ScriptAnswer(BaseModel):
    script: str
    provider: str


def strip_fences(text: str) -> str:
    """The answer without the code fences, quotes and labels models like to add."""
    text = text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    return text


def clean_selector(text: str) -> str:
    text = strip_fences(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    selector = lines[0] if lines else ""
    selector = re.sub(r"^(css\s*)?selector\s*:\s*", "", selector, flags=re.IGNORECASE)
    while len(selector) >= 2 and selector[0] == selector[-1] and selector[0] in "`'\"":
        selector = selector[1:-1].strip()
    return selector


def count_matches(soup: BeautifulSoup, selector: str) -> int:
    """How many elements of the captured page the selector matches; raises AnswerRejected."""
    if not selector or len(selector) > MAX_SELECTOR_CHARS:
        raise AnswerRejected("the answer is not a CSS selector")
    try:
        return len(soup.select(selector))
    except (SelectorSyntaxError, ValueError, NotImplementedError) as exc:
        raise AnswerRejected(f"{selector!r} is not a valid CSS selector ({exc})") from None


def _required_text(raw: JsonMapping, name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "MISSING_FIELDS", f"{name}: required, a non-empty text")
    if len(value) > MAX_PROMPT_CHARS:
        raise ApiError(400, "INVALID_BODY", f"{name}: at most {MAX_PROMPT_CHARS} characters")
    return value.strip()


_NO_KEYS = "no AI provider key is configured: add one with POST /api/settings/<provider>-api-key"


async def _require_keys(chain: AiChain) -> KeyRing:
    """Refuse at once, before a runner is asked to prepare a page for nothing."""
    keyring = await chain.keyring()
    if not keyring.configured:
        raise ApiError(400, "NO_AI_KEYS", _NO_KEYS)
    return keyring


async def _ask(
    chain: AiChain,
    keyring: KeyRing,
    system: str,
    prompt: str,
    accept: Accept,
    *,
    failed_status: int,
) -> AiAnswer:
    try:
        return await chain.ask(system=system, prompt=prompt, accept=accept, keyring=keyring)
    except NoAiKeys:
        raise ApiError(400, "NO_AI_KEYS", _NO_KEYS) from None
    except AllProvidersFailed as exc:
        raise ApiError(
            failed_status, "AI_FAILED", f"every AI provider failed: {exc.details}"
        ) from None
    except runner_tools.RunnerUnavailable as exc:
        raise ApiError(503, "NO_RUNNER", exc.details) from None
    except runner_tools.RequestTooLarge as exc:
        raise ApiError(413, "PAYLOAD_TOO_LARGE", exc.details) from None


@api.post(
    "/api/tasks/generate-selector",
    "Propose a CSS selector for an element described in words, checked against the page",
    body=SelectorBody,
    # 500 when no selector can be had (every provider failed, or the page could not be
    # prepared), as the API reference says; the precise code is in the body.
    responses={200: SelectorAnswer, 400: ErrorBody, 500: ErrorBody, 503: ErrorBody},
)
async def generate_selector(request: web.Request) -> web.Response:
    out = await propose_selector(request.app, await read_json_object(request))
    return web.json_response(out.model_dump())


async def propose_selector(app: web.Application, raw: JsonMapping) -> SelectorAnswer:
    """A selector for ``raw`` (a ``generate-selector`` body), checked against the page."""
    prompt = _required_text(raw, "prompt")
    given = raw.get("task")
    if not isinstance(given, dict):
        raise ApiError(400, "MISSING_FIELDS", "task: required, the task object")
    index = raw.get("actionIndex")
    if not isinstance(index, int) or isinstance(index, bool):
        raise ApiError(400, "MISSING_FIELDS", "actionIndex: required, an action's index")
    validated = validate_task(given)
    task = validated.dump()
    actions = validated.actions
    if not 0 <= index <= len(actions):
        raise ApiError(
            400,
            "INVALID_ACTION_INDEX",
            f"actionIndex: between 0 and {len(actions)} (the task has {len(actions)} actions)",
        )
    chain = app[AI]
    keyring = await _require_keys(chain)
    page = await _capture(app, task, index)
    soup = BeautifulSoup(page.html, "html.parser")
    matched: dict[str, int] = {}

    async def accept(text: str) -> str:
        selector = clean_selector(text)
        count = count_matches(soup, selector)
        if count == 0:
            raise AnswerRejected(f"{selector!r} matches nothing on the page")
        matched[selector] = count
        return selector

    html = page.html[:PROMPT_HTML_CHARS]
    question = (
        f"The page is {page.url}. Its HTML (scripts and styles removed):\n\n{html}\n\n"
        f"Which CSS selector selects: {prompt}"
    )
    answer = await _ask(chain, keyring, SELECTOR_SYSTEM, question, accept, failed_status=500)
    log.info("ai.selector_generated", provider=answer.provider, matches=matched[answer.text])
    return SelectorAnswer(
        selector=answer.text, provider=answer.provider, matches=matched[answer.text]
    )


async def _capture(app: web.Application, task: JsonObject, index: int) -> PageCaptureReply:
    """The page before action ``index``, from any runner, with the task's saved state."""
    # What a run of this task would carry (saved cookies, proxies, started tasks).
    run = await dispatch.build_run_request(
        app[POOL],
        app[BOX],
        execution_id="capture",
        task=task,
        variables={},
        source="ai",
        timeout_seconds=CAPTURE_TIMEOUT_SECONDS,
    )
    capture = PageCaptureRequest(
        task=run.task,
        action_index=index,
        storage_state=run.storage_state,
        proxies=run.proxies,
        subtasks=run.subtasks,
        timeout_seconds=CAPTURE_TIMEOUT_SECONDS,
    )
    try:
        page = await runner_tools.capture_page(
            app[NC], capture, timeout=CAPTURE_TIMEOUT_SECONDS + 10
        )
    except runner_tools.RunnerUnavailable as exc:
        raise ApiError(503, "NO_RUNNER", exc.details) from None
    if page.error is not None:
        raise ApiError(500, "PAGE_CAPTURE_FAILED", f"the page could not be prepared: {page.error}")
    return page


@api.post(
    "/api/tasks/generate-script",
    "Write an extraction script for data described in words (checked to compile)",
    body=ScriptBody,
    responses={200: ScriptAnswer, 400: ErrorBody, 502: ErrorBody, 503: ErrorBody},
)
async def generate_script(request: web.Request) -> web.Response:
    out = await write_script(request.app, await read_json_object(request))
    return web.json_response(out.model_dump())


async def write_script(app: web.Application, raw: JsonMapping) -> ScriptAnswer:
    """An extraction script for ``raw`` (a ``generate-script`` body), checked to compile."""
    description = _required_text(raw, "description")
    chain = app[AI]
    keyring = await _require_keys(chain)
    timeout = app[CONFIG].ai_timeout_seconds

    async def accept(text: str) -> str:
        script = strip_fences(text)
        if "return" not in script:
            raise AnswerRejected("the script returns nothing")
        error = await runner_tools.check_script(app[NC], script, timeout=min(10.0, timeout))
        if error is not None:
            raise AnswerRejected(f"the script does not compile: {error}")
        return script

    answer = await _ask(chain, keyring, SCRIPT_SYSTEM, description, accept, failed_status=502)
    log.info("ai.script_generated", provider=answer.provider, chars=len(answer.text))
    return ScriptAnswer(script=answer.text, provider=answer.provider)
