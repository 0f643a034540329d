"""Local stand-ins for Gemini, OpenAI, Anthropic and Ollama, speaking each one's wire format.

The real SDKs are pointed at them (``AiFakes.env`` holds the base-URL variables for a
gateway), so what is tested is what the SDKs really send and parse. One aiohttp server in its
own thread (with its own event loop) serves all four, so synchronous whole-stack tests and
asynchronous unit tests can both use it; it records every call it answers.

- Gemini: ``POST /v1/models/{model}:generateContent`` (google-genai 3.x; also under
  ``/v1beta``), key in ``x-goog-api-key`` (or
  ``?key=``);
- OpenAI: ``POST /v1/chat/completions``, ``Authorization: Bearer <key>``;
- Anthropic: ``POST /v1/messages``, ``x-api-key`` or (anthropic 2.x)
  ``Authorization: Bearer <key>``;
- Ollama: ``POST /api/chat`` and ``POST /ollama/{name}/api/chat`` (several endpoints on one
  server: ``ollama_url(name)``); the endpoint's name takes the place of the key.

Behaviour is scripted per provider and key: :meth:`AiFakes.script` with :func:`answer`,
:func:`fail` or :func:`stall` replies (used in turn, the last one repeating). A key nobody
scripted is refused with the vendor's 401, except for Ollama, which has no keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from aiohttp import web

from tests.integration.stack import Stack
from tests.integration.threaded_app import ThreadedApp

PROVIDERS = ("gemini", "openai", "claude", "ollama")
ANY_KEY = "*"  # script key matching every key not scripted by name


@dataclass(frozen=True)
class Call:
    provider: str
    key: str  # for Ollama, the endpoint's name ("" for the root endpoint)
    model: str
    prompt: str
    system: str
    authorization: str | None = None  # Ollama: the Authorization header, if any


@dataclass(frozen=True)
class Reply:
    text: str | Callable[[Call], str] | None = None
    status: int | None = None  # answer this HTTP error instead
    delay: float = 0.0  # seconds before answering (for timeouts)


def answer(text: str | Callable[[Call], str]) -> Reply:
    """Answer with this text (or the text a function makes of the call)."""
    return Reply(text=text)


def fail(status: int) -> Reply:
    """Answer with the vendor's error body for this HTTP status."""
    return Reply(status=status)


def stall(seconds: float, text: str = "too late") -> Reply:
    """Answer only after this long."""
    return Reply(text=text, delay=seconds)


@dataclass
class _Script:
    replies: list[Reply] = field(default_factory=list)
    used: int = 0

    def next(self) -> Reply:
        reply = self.replies[min(self.used, len(self.replies) - 1)]
        self.used += 1
        return reply


_ERROR_STATUS = {
    400: ("INVALID_ARGUMENT", "invalid_request_error", "Bad request"),
    401: ("UNAUTHENTICATED", "authentication_error", "Invalid API key"),
    403: ("PERMISSION_DENIED", "permission_error", "Permission denied"),
    404: ("NOT_FOUND", "not_found_error", "Not found"),
    429: ("RESOURCE_EXHAUSTED", "rate_limit_error", "Rate limit exceeded"),
    500: ("INTERNAL", "api_error", "Internal error"),
    503: ("UNAVAILABLE", "overloaded_error", "Service unavailable"),
}


def _error_body(provider: str, status: int) -> dict[str, Any]:
    google, kind, message = _ERROR_STATUS.get(status, ("UNKNOWN", "api_error", f"HTTP {status}"))
    if provider == "gemini":
        return {"error": {"code": status, "message": message, "status": google}}
    if provider == "openai":
        code = "rate_limit_exceeded" if status == 429 else None
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}
    if provider == "claude":
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": message}


class AiFakes(ThreadedApp):
    """``with AiFakes() as fakes:`` then ``fakes.script("openai", "sk-1", answer("hi"))``."""

    name = "ai-fakes"

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self._scripts: dict[tuple[str, str], _Script] = {}
        self._lock = threading.Lock()
        self._stopping: asyncio.Event | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def _on_loop_started(self) -> None:
        self._stopping = asyncio.Event()

    def _on_stop(self, loop: asyncio.AbstractEventLoop) -> None:
        # Stalled answers end at once, so the server's cleanup does not wait for them.
        if self._stopping is not None:
            loop.call_soon_threadsafe(self._stopping.set)

    # --- what the SDKs are pointed at ---------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """The variables that point a gateway's SDKs here."""
        return {
            "GEMINI_BASE_URL": self.gemini_base_url,
            "OPENAI_BASE_URL": self.openai_base_url,
            "ANTHROPIC_BASE_URL": self.anthropic_base_url,
        }

    @property
    def gemini_base_url(self) -> str:
        return self.url + "/"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    def ollama_url(self, name: str = "") -> str:
        """An Ollama endpoint on this server; each name is scripted and recorded apart."""
        return f"{self.url}/ollama/{name}" if name else self.url

    # --- scripting ----------------------------------------------------------------------

    def script(self, provider: str, key: str, *replies: Reply) -> None:
        """How ``key`` (an Ollama endpoint's name; ANY_KEY for all others) is answered."""
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}")
        if not replies:
            raise ValueError("script at least one reply")
        with self._lock:
            self._scripts[(provider, key)] = _Script(list(replies))

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self.calls.clear()

    def calls_to(self, provider: str | None = None) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if provider in (None, call.provider)]

    def order(self) -> list[tuple[str, str]]:
        """(provider, key) of every call, in order."""
        return [(call.provider, call.key) for call in self.calls_to()]

    def _reply(self, call: Call) -> Reply:
        with self._lock:
            self.calls.append(call)
            script = self._scripts.get((call.provider, call.key)) or self._scripts.get(
                (call.provider, ANY_KEY)
            )
            if script is not None:
                return script.next()
        if call.provider == "ollama":
            return answer("ok")
        return fail(401)

    # --- the vendors' APIs ----------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()
        # google-genai 3.x calls v1; older SDKs and other clients v1beta.
        app.router.add_post("/v1/models/{model}:generateContent", self._gemini)
        app.router.add_post("/v1beta/models/{model}:generateContent", self._gemini)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._claude)
        app.router.add_post("/api/chat", self._ollama)
        app.router.add_post("/ollama/{name}/api/chat", self._ollama)
        return app

    async def _respond(self, call: Call, ok: Callable[[str], dict[str, Any]]) -> web.Response:
        reply = self._reply(call)
        if reply.delay:
            assert self._stopping is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), reply.delay)
        if reply.status is not None:
            headers = {"Retry-After": "1"} if reply.status == 429 else {}
            return web.json_response(
                _error_body(call.provider, reply.status), status=reply.status, headers=headers
            )
        text = reply.text(call) if callable(reply.text) else reply.text
        return web.json_response(ok(text or ""))

    async def _gemini(self, request: web.Request) -> web.Response:
        body = await request.json()
        key = request.headers.get("x-goog-api-key") or request.query.get("key", "")
        system = " ".join(
            part.get("text", "")
            for part in (body.get("systemInstruction") or body.get("system_instruction") or {}).get(
                "parts", []
            )
        )
        prompt = " ".join(
            part.get("text", "")
            for content in body.get("contents", [])
            for part in content.get("parts", [])
        )
        model = request.match_info["model"]
        call = Call("gemini", key, model, prompt, system)

        def ok(text: str) -> dict[str, Any]:
            return {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": text}]},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": len(prompt.split()),
                    "candidatesTokenCount": len(text.split()),
                    "totalTokenCount": len(prompt.split()) + len(text.split()),
                },
                "modelVersion": model,
            }

        return await self._respond(call, ok)

    async def _openai(self, request: web.Request) -> web.Response:
        body = await request.json()
        authorization = request.headers.get("Authorization", "")
        key = authorization.removeprefix("Bearer ")
        messages = body.get("messages", [])
        system = " ".join(m["content"] for m in messages if m.get("role") == "system")
        prompt = " ".join(m["content"] for m in messages if m.get("role") == "user")
        model = str(body.get("model", ""))
        call = Call("openai", key, model, prompt, system)

        def ok(text: str) -> dict[str, Any]:
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }

        return await self._respond(call, ok)

    async def _claude(self, request: web.Request) -> web.Response:
        body = await request.json()
        # anthropic 2.x sends the key as a bearer token; earlier SDKs as x-api-key.
        key = request.headers.get("x-api-key") or request.headers.get(
            "Authorization", ""
        ).removeprefix("Bearer ")
        system = body.get("system") or ""
        if isinstance(system, list):
            system = " ".join(block.get("text", "") for block in system)
        prompt = " ".join(
            m["content"]
            if isinstance(m["content"], str)
            else " ".join(block.get("text", "") for block in m["content"])
            for m in body.get("messages", [])
            if m.get("role") == "user"
        )
        model = str(body.get("model", ""))
        call = Call("claude", key, model, prompt, str(system))

        def ok(text: str) -> dict[str, Any]:
            return {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 1},
            }

        return await self._respond(call, ok)

    async def _ollama(self, request: web.Request) -> web.Response:
        body = await request.json()
        messages = body.get("messages", [])
        system = " ".join(m["content"] for m in messages if m.get("role") == "system")
        prompt = " ".join(m["content"] for m in messages if m.get("role") == "user")
        model = str(body.get("model", ""))
        name = request.match_info.get("name", "")
        call = Call("ollama", name, model, prompt, system, request.headers.get("Authorization"))

        def ok(text: str) -> dict[str, Any]:
            return {
                "model": model,
                "created_at": "2025-01-01T00:00:00.000000Z",
                "message": {"role": "assistant", "content": text},
                "done_reason": "stop",
                "done": True,
            }

        return await self._respond(call, ok)


def forget_ai_settings(stack: Stack, fakes: AiFakes) -> httpx.Client:
    """The stack's gateway with no AI settings stored, and fakes that remember nothing."""
    with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("DELETE FROM settings WHERE key LIKE 'ai\\_%'")
    fakes.reset()
    return stack.clients[0]
