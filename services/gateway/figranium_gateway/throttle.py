"""Slowing down and then refusing clients that keep presenting wrong API keys.

Per client address, failed authentications are counted over a sliding window. Past
``slow_after`` failures each further refusal is delayed (doubling up to ``MAX_DELAY``), and
at ``lock_after`` the client is refused with 429 and ``Retry-After`` for ``lockout_seconds``
— every request, a correct key included, or a correct guess would still stand out. Clients
that authenticate are never counted, so normal traffic is unaffected.

State is per gateway replica and bounded (the least recently failing clients are
forgotten first); behind a load balancer, set ``TRUST_FORWARDED_FOR`` so the client is the
address the balancer saw rather than the balancer itself.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from aiohttp import web

MAX_DELAY = 2.0
FIRST_DELAY = 0.25
MAX_CLIENTS = 10_000


@dataclass
class _Client:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


class AuthThrottle:
    def __init__(
        self,
        *,
        slow_after: int,
        lock_after: int,
        window_seconds: float,
        lockout_seconds: float,
        trust_forwarded_for: bool = False,
    ) -> None:
        self.slow_after = slow_after
        self.lock_after = lock_after
        self.window = window_seconds
        self.lockout = lockout_seconds
        self.trust_forwarded_for = trust_forwarded_for
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    def client_of(self, request: web.Request) -> str:
        if self.trust_forwarded_for:
            forwarded = request.headers.get("X-Forwarded-For", "")
            # The last entry is the one our own balancer appended: the address it saw.
            hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
            if hops:
                return hops[-1]
        return request.remote or "unknown"

    def retry_after(self, client: str, now: float | None = None) -> int:
        """Seconds the client is still locked out for; 0 when it is not."""
        state = self._clients.get(client)
        if state is None:
            return 0
        remaining = state.locked_until - (time.monotonic() if now is None else now)
        return math.ceil(remaining) if remaining > 0 else 0

    def failed(self, client: str, now: float | None = None) -> float:
        """Count a failure; returns how long to delay this refusal (seconds)."""
        now = time.monotonic() if now is None else now
        state = self._clients.pop(client, None) or _Client()
        self._clients[client] = state  # most recent last
        while len(self._clients) > MAX_CLIENTS:
            self._clients.popitem(last=False)
        while state.failures and state.failures[0] <= now - self.window:
            state.failures.popleft()
        state.failures.append(now)
        count = len(state.failures)
        if count >= self.lock_after:
            state.locked_until = now + self.lockout
            state.failures.clear()
            return 0.0
        if count <= self.slow_after:
            return 0.0
        return float(min(MAX_DELAY, FIRST_DELAY * 2.0 ** (count - self.slow_after - 1)))
