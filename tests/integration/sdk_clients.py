"""The official SDK's sync and async clients against the shared stack, for tests that run
once per client.

The async client's resources are the sync ones over an awaitable transport, so one
scenario serves both: :func:`answer` awaits what the async client returns. A test module
makes :func:`open_sdk` its fixture: ``sdk = pytest.fixture(params=CLIENTS)(open_sdk)``.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from figranium import AsyncFigranium, Figranium, FigraniumError

from tests.integration.stack import API_KEY, Stack

Sdk = Figranium | AsyncFigranium


async def answer(call: Any) -> Any:
    """What an SDK call answered: awaited for the async client, as is for the sync one."""
    return await call if inspect.isawaitable(call) else call


async def refused(call: Callable[[], Any]) -> FigraniumError:
    """The error an SDK call raised (the sync client raises on the call itself)."""
    with pytest.raises(FigraniumError) as raised:
        await answer(call())
    return raised.value


CLIENTS = ["sync", "async"]


async def open_sdk(
    request: pytest.FixtureRequest, stack: tuple[Stack, httpx.Client]
) -> AsyncIterator[Sdk]:
    """The sync or the async client (``request.param``, one of :data:`CLIENTS`), with the
    API key as a bearer token (its default)."""
    options: dict[str, Any] = {
        "base_url": str(stack[1].base_url),
        "api_key": API_KEY,
        "timeout": 120,
    }
    if request.param == "sync":
        with Figranium(**options) as client:
            yield client
    else:
        async with AsyncFigranium(**options) as client:
            yield client
