"""A durable JetStream pull consumer whose messages are handed over as soon as they arrive.

nats-py's ``fetch(batch=n, timeout=t)`` returns when n messages came or t passed. With fewer
than n waiting, a message that came at once is held until the timeout: a runner with four
free slots started a lone run up to a second late, and the ingester stored a lone result
up to a second late, which doubled the p90 of synchronous runs on an idle platform.

PullStream keeps pull requests open on the server and hands each message over when it
arrives. It never asks for more than the caller can take on: a delivered message starts
its ack-wait clock, so messages requested and messages in hand together stay within the
caller's limit (a runner's free slots).

Pull requests end on the server when their batch is delivered or they expire (status 408,
sent to the request's own inbox); a request that is not heard of by then (the server
restarted, say) is forgotten here after a grace period and asked again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
from dataclasses import dataclass
from typing import Self

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from figranium_common.nats import Listener

log = structlog.get_logger(__name__)

STATUS_HEADER = "Status"
_HEARTBEAT = "100"
_ENDED_NORMALLY = frozenset({"404", "408"})  # no messages (no_wait) / the request expired
# After a request ended for another reason (consumer missing, too many waiting requests),
# the next one waits this long, so a misconfiguration is not a busy loop.
_BACKOFF_SECONDS = 1.0


@dataclass
class _Request:
    remaining: int
    forget_at: float


class PullStream:
    """Messages of ``durable`` on ``stream``, through pull requests that stay open.

    Use as ``async with PullStream(nc, stream, durable) as pulled:`` and call
    :meth:`take`. Messages received but not taken when the stream closes are handed back
    (nak) for immediate redelivery.
    """

    def __init__(
        self,
        nc: NATS,
        stream: str,
        durable: str,
        *,
        expires_seconds: float = 2.0,
        grace_seconds: float = 1.0,
    ) -> None:
        self._nc = nc
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._expires = expires_seconds
        self._grace = grace_seconds
        self._prefix = nc.new_inbox()
        self._ids = itertools.count()
        self._requests: dict[str, _Request] = {}
        self._ready: collections.deque[Msg] = collections.deque()
        self._changed = asyncio.Event()
        self._backoff_until = 0.0
        self._woken = False
        self._replies = Listener()

    async def __aenter__(self) -> Self:
        await self._replies.listen(self._nc, f"{self._prefix}.*", self._on_message)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._replies.stop()
        self._requests.clear()
        while self._ready:
            with contextlib.suppress(Exception):
                await self._ready.popleft().nak()

    @property
    def requested(self) -> int:
        """Messages asked for and not delivered yet, over the open pull requests."""
        self._forget_stale()
        return sum(request.remaining for request in self._requests.values())

    def wake(self) -> None:
        """End a :meth:`take` that is waiting (or the next one), so that its caller can take
        again with a new limit: a runner whose slot just freed up."""
        self._woken = True
        self._changed.set()

    async def take(self, limit: int, timeout: float, *, min_request: int = 1) -> list[Msg]:
        """Up to ``limit`` messages: waits up to ``timeout`` for the first, then adds the
        ones already here. Empty after the timeout or a :meth:`wake`.

        ``limit`` is how many more messages the caller can take on now; more are requested
        only while those asked for and those in hand stay within it, and only when at least
        ``min_request`` are missing (fewer, larger pull requests for a consumer that takes
        batches).
        """
        if limit <= 0:
            raise ValueError("limit must be positive")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._ready and not self._woken:
            self._changed.clear()
            await self._request(limit, min_request)
            now = loop.time()
            if self._ready or now >= deadline:
                break
            # Woken by a message, by the end of a request (to ask again), or by wake().
            # Also when a request nobody answered is to be forgotten (the server restarted).
            wakeups = [deadline, *(request.forget_at for request in self._requests.values())]
            if self._backoff_until > now:
                wakeups.append(self._backoff_until)
            wait = max(0.0, min(wakeups) - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=wait)
        self._woken = False
        return [self._ready.popleft() for _ in range(min(limit, len(self._ready)))]

    async def _request(self, limit: int, min_request: int) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self._backoff_until:
            return
        wanted = limit - len(self._ready) - self.requested
        if wanted < max(1, min_request):
            return
        reply = f"{self._prefix}.{next(self._ids)}"
        self._requests[reply] = _Request(wanted, loop.time() + self._expires + self._grace)
        body = {"batch": wanted, "expires": int(self._expires * 1_000_000_000)}
        try:
            await self._nc.publish(self._next_subject, json.dumps(body).encode(), reply=reply)
        except BaseException:
            self._requests.pop(reply, None)
            raise

    def _forget_stale(self) -> None:
        now = asyncio.get_running_loop().time()
        for reply in [r for r, request in self._requests.items() if request.forget_at < now]:
            del self._requests[reply]

    async def _on_message(self, msg: Msg) -> None:
        status = msg.headers.get(STATUS_HEADER) if msg.headers else None
        if status == _HEARTBEAT:
            return
        if status:
            # The request is over: whatever it had left may be asked for again.
            self._requests.pop(msg.subject, None)
            if status not in _ENDED_NORMALLY:
                description = msg.headers.get("Description", "") if msg.headers else ""
                log.warning("pull.request_refused", status=status, description=description)
                self._backoff_until = asyncio.get_running_loop().time() + _BACKOFF_SECONDS
            self._changed.set()
            return
        # A delivered message carries its stream subject, not the request's inbox; the
        # server serves one consumer's waiting requests in order, so it is the oldest's.
        for reply, request in self._requests.items():
            request.remaining -= 1
            if request.remaining <= 0:
                del self._requests[reply]
            break
        self._ready.append(msg)
        self._changed.set()
