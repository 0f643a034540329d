"""Viewer tickets: what a browser must show to open the viewer's websocket.

A ticket is minted on request over NATS (the gateway relays an authenticated API call),
lives ``HEADFUL_TICKET_TTL_SECONDS``, and opens one connection: it is removed when used.
Each is bound to the execution it was asked for (the viewer refuses it once the display
shows another one) and says whether it may send keyboard and mouse input or only watch.
Tickets stay in this process's memory; none is ever stored.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from figranium_common.models import now_ms


@dataclass(frozen=True)
class Grant:
    """What a ticket allows: watching (and with ``control``, driving) one execution."""

    execution_id: str
    control: bool = False


class TicketBook:
    def __init__(self, ttl_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self._issued: dict[str, tuple[float, Grant]] = {}  # ticket → (clock() deadline, grant)

    def __len__(self) -> int:
        return len(self._issued)

    def mint(self, grant: Grant) -> tuple[str, int]:
        """A new ticket for ``grant`` and when it expires (epoch ms)."""
        self._purge()
        ticket = secrets.token_urlsafe(32)
        self._issued[ticket] = (self._clock() + self._ttl_seconds, grant)
        return ticket, now_ms() + int(self._ttl_seconds * 1000)

    def check(self, ticket: str) -> str | None:
        """Why ``ticket`` would be refused, or None when it is valid; it stays unused."""
        return self._refusal(ticket, self._issued.get(ticket) if ticket else None)

    def redeem(self, ticket: str) -> Grant | str:
        """Use ``ticket`` up: its grant when it was valid, else why it is refused."""
        # A lookup by the whole token: nothing about a valid ticket is learnt from a
        # wrong one by timing.
        issued = self._issued.pop(ticket, None) if ticket else None
        refused = self._refusal(ticket, issued)
        if refused is not None or issued is None:
            return refused or "the ticket is unknown or was already used"
        return issued[1]

    def _refusal(self, ticket: str, issued: tuple[float, Grant] | None) -> str | None:
        self._purge()
        if not ticket:
            return "no ticket was given"
        if issued is None:
            return "the ticket is unknown or was already used"
        if issued[0] <= self._clock():
            return "the ticket expired"
        return None

    def _purge(self) -> None:
        now = self._clock()
        for ticket in [t for t, (deadline, _) in self._issued.items() if deadline <= now]:
            del self._issued[ticket]
