"""Listening to core-NATS notices: a subscription a component holds from start to stop,
and the callback that turns each message into its model or drops it.

Notices are wake-up calls between replicas (settings changed, an execution finished, a
headful runner is there); every listener also has another way to learn the same thing,
so a message that does not validate is logged and dropped, never raised.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import BaseModel

from figranium_common.nats.connection import unsubscribe

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=BaseModel)
MessageHandler = Callable[[Msg], Awaitable[None]]


class Listener:
    """One subscription: ``listen`` subscribes, ``stop`` unsubscribes without hanging on a
    NATS outage; stopping twice, or before listening, does nothing."""

    def __init__(self) -> None:
        self._sub: Subscription | None = None

    async def listen(self, nc: NATS, subject: str, handler: MessageHandler) -> None:
        self._sub = await nc.subscribe(subject, cb=handler)

    async def stop(self) -> None:
        if self._sub is not None:
            await unsubscribe(self._sub)
            self._sub = None


def notice_handler(
    model: type[M], handle: Callable[[M], Awaitable[None] | None], *, bad_event: str
) -> MessageHandler:
    """A callback that validates each message's body as ``model`` and hands it to
    ``handle`` (awaited when it is a coroutine function); a body that does not validate
    is logged as ``bad_event`` with its subject."""

    async def on_message(msg: Msg) -> None:
        try:
            notice = model.model_validate_json(msg.data)
        except ValueError:
            log.warning(bad_event, subject=msg.subject)
            return
        handled = handle(notice)
        if handled is not None:
            await handled

    return on_message
