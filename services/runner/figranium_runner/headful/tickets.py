"""Viewer tickets: what a browser must show to open the viewer's websocket.

A ticket is minted on request over NATS (the gateway relays an authenticated API call),
lives ``HEADFUL_TICKET_TTL_SECONDS``, and opens one connection: it is removed when used.
Tickets stay in this process's memory; none is ever stored.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from figranium_common.models import now_ms


class TicketBook:
    def __init__(self, ttl_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self._expiry: dict[str, float] = {}  # ticket → clock() deadline

    def __len__(self) -> int:
        return len(self._expiry)

    def mint(self) -> tuple[str, int]:
        """A new ticket and when it expires (epoch ms)."""
        self._purge()
        ticket = secrets.token_urlsafe(32)
        self._expiry[ticket] = self._clock() + self._ttl_seconds
        return ticket, now_ms() + int(self._ttl_seconds * 1000)

    def check(self, ticket: str) -> str | None:
        """Why ``ticket`` would be refused, or None when it is valid; it stays unused."""
        return self._refusal(ticket, self._expiry.get(ticket) if ticket else None)

    def redeem(self, ticket: str) -> str | None:
        """Use ``ticket`` up: None when it was valid, else why it is refused."""
        # A lookup by the whole token: nothing about a valid ticket is learnt from a
        # wrong one by timing.
        return self._refusal(ticket, self._expiry.pop(ticket, None) if ticket else None)

    def _refusal(self, ticket: str, deadline: float | None) -> str | None:
        self._purge()
        if not ticket:
            return "no ticket was given"
        if deadline is None:
            return "the ticket is unknown or was already used"
        if deadline <= self._clock():
            return "the ticket expired"
        return None

    def _purge(self) -> None:
        now = self._clock()
        for ticket in [t for t, deadline in self._expiry.items() if deadline <= now]:
            del self._expiry[ticket]
