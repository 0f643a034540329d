"""Connecting to NATS: who a service is (user, TLS, reply subjects), retries while the
server is not up yet, and closing, unsubscribing and pinging without hanging on an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass

import nats
import structlog
from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription

from figranium_common.config import Config
from figranium_common.errors import describe
from figranium_common.redact import redact_url

log = structlog.get_logger(__name__)


async def _on_error(exc: Exception) -> None:
    # One line instead of the client's default traceback for every failed reconnect.
    log.warning("nats.error", error=describe(exc))


async def _on_disconnected() -> None:
    log.warning("nats.disconnected")


async def _on_reconnected() -> None:
    log.info("nats.reconnected")


@dataclass(frozen=True)
class NatsAuth:
    """How a service proves who it is to NATS, whether the connection uses TLS, and how
    soon it gives up a server that stopped answering (pings left unanswered)."""

    user: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None
    ping_interval_seconds: int = 120
    max_outstanding_pings: int = 2

    @classmethod
    def from_config(cls, config: Config) -> NatsAuth:
        return cls(
            config.nats_user,
            config.nats_password,
            tls_context(config),
            config.nats_ping_interval_seconds,
            config.nats_max_outstanding_pings,
        )


def tls_context(config: Config) -> ssl.SSLContext | None:
    """TLS when a CA or a client certificate is set; else None (a tls:// URL still gets
    TLS with the system's CAs)."""
    if config.nats_tls_ca is None and config.nats_tls_cert is None:
        return None
    context = ssl.create_default_context(
        cafile=None if config.nats_tls_ca is None else str(config.nats_tls_ca)
    )
    if config.nats_tls_cert is not None:
        key = None if config.nats_tls_key is None else str(config.nats_tls_key)
        context.load_cert_chain(str(config.nats_tls_cert), key)
    return context


def inbox_prefix(role: str) -> str:
    """The reply subjects of ``role``'s connections: ``_INBOX_<role>.<id>``.

    Each service may subscribe to its own prefix only (the NATS permissions in
    tools/devstack/figranium_devstack/natsauth.py), so no service can read the replies
    another one gets: JetStream API answers, pulled messages, objects read back.
    """
    return f"_INBOX_{role}"


def server_urls(url: str) -> list[str]:
    """The servers of a NATS_URL: one, or several separated by commas."""
    return [part.strip() for part in url.split(",") if part.strip()]


async def connect(
    url: str,
    *,
    name: str,
    wait_seconds: float = 60.0,
    auth: NatsAuth | None = None,
    role: str | None = None,
) -> NATS:
    """Connect, retrying while the server is not up yet (services may start before it).

    ``role`` (gateway, scheduler, runner) gives the connection that role's reply
    subjects (:func:`inbox_prefix`); without it, NATS's shared ``_INBOX``. ``url`` may
    list several servers of one cluster, separated by commas: the client picks one and
    moves to another when it goes away.
    """
    servers = server_urls(url)
    deadline = asyncio.get_running_loop().time() + wait_seconds
    auth = auth or NatsAuth()
    credentials: dict[str, object] = {}
    if auth.user:
        credentials = {"user": auth.user, "password": auth.password or ""}
    if auth.tls is not None:
        credentials["tls"] = auth.tls
    if role is not None:
        credentials["inbox_prefix"] = inbox_prefix(role)
    while True:
        try:
            return await nats.connect(
                servers,
                name=name,
                **credentials,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                connect_timeout=2,
                drain_timeout=5,
                ping_interval=auth.ping_interval_seconds,
                max_outstanding_pings=auth.max_outstanding_pings,
                error_cb=_on_error,
                disconnected_cb=_on_disconnected,
                reconnected_cb=_on_reconnected,
            )
        except Exception as exc:  # nats raises several unrelated types for "not reachable"
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.info("nats.connect_retry", url=redact_url(url), error=describe(exc))
            await asyncio.sleep(1)


async def close(nc: NATS) -> None:
    """Drain (flush what is pending) when the server is there, else just close."""
    try:
        if nc.is_connected:
            await nc.drain()
    except Exception as exc:
        log.warning("nats.drain_failed", error=describe(exc))
    finally:
        if not nc.is_closed:
            try:
                await nc.close()
            except OSError as exc:  # the server went away first: nothing left to flush
                log.info("nats.closed_without_flush", error=describe(exc))


async def unsubscribe(sub: Subscription) -> None:
    """Unsubscribe at shutdown without hanging: while the client is reconnecting (the
    server stopped first), nats-py can wait for a flush that never comes."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(sub.unsubscribe(), timeout=1)


async def ping(nc: NATS, subject: str) -> None:
    """Publish a bodiless core-NATS notice on ``subject``, best effort: whoever listens
    also polls on a timer, so a NATS outage must not fail the caller."""
    try:
        await nc.publish(subject, b"")
    except Exception as exc:
        log.info("nats.ping_failed", subject=subject, error=describe(exc))
