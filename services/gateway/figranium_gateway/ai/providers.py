"""One call to one provider with one key, through the vendor's own SDK (Ollama: its HTTP API).

Every way a call can fail becomes :class:`KeyFailed` with a short reason that never holds
the key, so the chain can move on to the next key. The SDKs' own retries are off: failing
over is the chain's job, and a retry would only spend the time budget on the same key.

The three SDKs are imported when first used, not with this module: together they took
about 4 of a gateway's 6 seconds of start-up imports, paid by every replica and restart
whether or not any AI provider is configured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TypedDict

import aiohttp
import httpx

from figranium_common.config import Config
from figranium_common.errors import FigraniumError, describe
from figranium_common.outbound_http import safe_request
from figranium_gateway.ai.keys import MASK, OllamaEndpoint

CLAUDE_MAX_TOKENS = 2048
MAX_MESSAGE = 200  # characters of a vendor's error message kept in a reason
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class KeyFailed(FigraniumError):
    """This key (or endpoint) gave no answer; ``details`` says why, without the key."""

    code = "AI_KEY_FAILED"

    def __init__(self, details: str, *, rate_limited: bool = False) -> None:
        super().__init__(details)
        self.rate_limited = rate_limited


@dataclass(frozen=True)
class Question:
    system: str
    prompt: str
    model: str
    timeout: float  # seconds


class _ClientOptions(TypedDict):
    api_key: str
    base_url: str | None
    timeout: float
    max_retries: int


def _client_options(key: str, base_url: str | None, question: Question) -> _ClientOptions:
    """How the OpenAI and Anthropic clients are made: ``base_url`` unset or empty is the
    vendor's own, the question's timeout, and no retries (failing over is the chain's)."""
    return {
        "api_key": key,
        "base_url": base_url or None,
        "timeout": question.timeout,
        "max_retries": 0,
    }


def _scrubbed(text: str, secret: str) -> str:
    """A vendor's text made safe to show: no key in it, one short line."""
    if secret:
        text = text.replace(secret, MASK)
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _message_in(body: object) -> str | None:
    """The human message of a vendor's error body, whichever shape it has."""
    if isinstance(body, dict):
        for found in (body.get("message"), _message_in(body.get("error"))):
            if isinstance(found, str) and found:
                return found
    if isinstance(body, str) and body:
        return body
    return None


def status_failure(status: int, message: str | None, secret: str) -> KeyFailed:
    if status in (401, 403):
        return KeyFailed(f"refused the key ({status})")
    if status == 429:
        return KeyFailed("rate limited (429)", rate_limited=True)
    if status >= 500:
        return KeyFailed(f"server error ({status})")
    # 400 or 404 usually means a wrong model name: worth showing what the vendor said.
    said = f": {_scrubbed(message, secret)}" if message else ""
    return KeyFailed(f"HTTP {status}{said}")


def failure(exc: Exception, secret: str, timeout: float) -> KeyFailed:
    """Translate whatever an SDK raised into a reason (timeouts first: they are OSErrors)."""
    import anthropic
    import openai
    from google.genai import errors as genai_errors

    if isinstance(
        exc,
        TimeoutError | openai.APITimeoutError | anthropic.APITimeoutError | httpx.TimeoutException,
    ):
        return KeyFailed(f"timed out after {timeout:g}s")
    if isinstance(exc, openai.APIStatusError | anthropic.APIStatusError):
        return status_failure(exc.status_code, _message_in(exc.body), secret)
    if isinstance(exc, genai_errors.APIError):
        return status_failure(exc.code, exc.message, secret)
    if isinstance(
        exc,
        openai.APIConnectionError
        | anthropic.APIConnectionError
        | aiohttp.ClientError
        | httpx.TransportError
        | OSError,
    ):
        return KeyFailed(f"network error ({_scrubbed(describe(exc), secret)})")
    return KeyFailed(f"failed: {type(exc).__name__}: {_scrubbed(str(exc), secret)}")


async def ask_gemini(key: str, question: Question, config: Config) -> str:
    from google import genai
    from google.genai import types as genai_types

    # Our own session: the SDK's default one subclasses aiohttp.ClientSession, which
    # aiohttp warns about; owning it also closes it on every path.
    async with aiohttp.ClientSession() as session:
        client = genai.Client(
            vertexai=False,
            api_key=key,
            http_options=genai_types.HttpOptions(
                base_url=config.gemini_base_url or None,
                timeout=int(question.timeout * 1000),
                aiohttp_client=session,
            ),
        )
        try:
            async with client.aio as aio:
                response = await aio.models.generate_content(
                    model=question.model,
                    contents=question.prompt,
                    config=genai_types.GenerateContentConfig(
                        system_instruction=question.system, temperature=0
                    ),
                )
        finally:
            client.close()
    return response.text or ""


async def ask_openai(key: str, question: Question, config: Config) -> str:
    import openai

    options = _client_options(key, config.openai_base_url, question)
    # No temperature: reasoning models refuse any but their default.
    async with openai.AsyncOpenAI(**options) as client:
        completion = await client.chat.completions.create(
            model=question.model,
            messages=[
                {"role": "system", "content": question.system},
                {"role": "user", "content": question.prompt},
            ],
        )
    if not completion.choices:
        return ""
    return completion.choices[0].message.content or ""


async def ask_claude(key: str, question: Question, config: Config) -> str:
    import anthropic

    options = _client_options(key, config.anthropic_base_url, question)
    async with anthropic.AsyncAnthropic(**options) as client:
        message = await client.messages.create(
            model=question.model,
            max_tokens=CLAUDE_MAX_TOKENS,
            system=question.system,
            messages=[{"role": "user", "content": question.prompt}],
        )
    return "".join(block.text for block in message.content if block.type == "text")


async def ask_ollama(endpoint: OllamaEndpoint, question: Question, config: Config) -> str:
    """Ollama's ``/api/chat``; the URL is the user's, so every hop is checked (SSRF)."""
    body = {
        "model": question.model,
        "messages": [
            {"role": "system", "content": question.system},
            {"role": "user", "content": question.prompt},
        ],
        "stream": False,
        "options": {"temperature": 0},
    }
    try:
        response = await safe_request(
            "POST",
            f"{endpoint.url}/api/chat",
            allow_private=config.allow_private_networks,
            headers={"Content-Type": "application/json"},
            body=json.dumps(body),
            timeout=question.timeout,
            max_bytes=MAX_ANSWER_BYTES,
        )
    except FigraniumError as exc:
        # safe_request's messages name the URL without its userinfo.
        if "timed out" in exc.details:
            raise KeyFailed(f"timed out after {question.timeout:g}s") from None
        raise KeyFailed(exc.details) from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status != 200:
        raise status_failure(response.status, _message_in(answer), "")
    message = answer.get("message") if isinstance(answer, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise KeyFailed("answered without message.content")
    return content
