"""Webhook delivery after runs: durable jobs in PostgreSQL, signed, retried with backoff.

A finished execution that asked for a webhook has a ``webhook_deliveries`` row, written in
the transaction that stored its result (``store.recording.record_result``). Every gateway
replica runs :func:`run_webhooks`, which claims due rows, sends them, and records each
attempt; the queue's SQL is ``store.webhooks``.

Decisions worth knowing:

- Claiming is one ``UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED)`` that pushes
  ``next_attempt_at`` forward by a lease and commits before anything is sent. Replicas
  therefore never send the same attempt at once, and the delivery of a replica that dies
  mid-send is taken up by another one when the lease ends. A replica that stops cleanly
  hands its unfinished claims back at once. Recording an attempt is guarded by the
  attempt count seen at claim time, so a send that outlived its lease records nothing
  twice. Delivery is at least once: receivers de-duplicate on ``X-Figranium-Delivery``.
- Retried: network errors, timeouts, 5xx, 408 and 429. Not retried: other 4xx, and 3xx,
  since redirects are not followed (a webhook URL is where the result goes, not a hint).
  After ``webhook_max_attempts`` attempts a delivery is ``failed``.
- The signing secret is read from the database (sealed with the SecretBox) for every
  batch, so all replicas sign with the current one right after a rotation. A rotation
  keeps the previous secret for ``webhook_secret_overlap_seconds``; until then every
  delivery carries two signatures, ``t=…,v1=<new>,v1=<previous>``, so receivers can
  switch secrets at their own pace. The new one comes first for receivers that read the
  first ``v1``; the previous one last for those that keep the last. Only one previous
  secret is kept: rotating again within the overlap drops the oldest.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiohttp
import structlog

from figranium_common.config import Config
from figranium_common.db import Pool
from figranium_common.errors import FigraniumError, InvalidUrlError, TooManyRedirects, describe
from figranium_common.jsontypes import JsonObject, JsonValue
from figranium_common.models import now_ms
from figranium_common.outbound_http import PinnedConnector, safe_request
from figranium_common.secretbox import SecretBox
from figranium_gateway.metrics import GatewayMetrics
from figranium_gateway.secret_file import write_secret_file
from figranium_gateway.store import settings, webhooks
from figranium_gateway.store.webhooks import Due, Sent

log = structlog.get_logger(__name__)

SECRET_SETTING = "webhook_secret"
SECRET_PURPOSE = "webhook-secret"
SECRET_PREFIX = "whsec_"
SECRET_FILE = "webhook-secret"
SIGNATURE_HEADER = "X-Figranium-Signature"
DELIVERY_HEADER = "X-Figranium-Delivery"
USER_AGENT = "Figranium-Webhooks/1"

CONCURRENCY = 8
# Longer than an attempt may take (see lease_seconds); a crashed replica's claim waits this.
LEASE_SECONDS = 60.0
# Delays after the 1st, 2nd, … failed attempt, as multiples of webhook_backoff_seconds:
# with the default 30 s, 30 s, 2 min, 5 min, 15 min, 40 min, about an hour in all.
BACKOFF_FACTORS = (1, 4, 10, 30, 80)
JITTER = 0.2  # ± this fraction, so deliveries failing together do not retry together
RETRY_STATUSES = frozenset({408, 429})
# Only the status matters; a receiver answering more than this is cut short.
MAX_RESPONSE_BYTES = 1 << 20
ERROR_TEXT_LIMIT = 300

State = Literal["pending", "delivered", "failed"]


# --- pure helpers -----------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature(secret: str, timestamp: int, body: bytes, *previous: str) -> str:
    """The ``X-Figranium-Signature`` value: HMAC-SHA256 over ``"<t>.<raw body>"``, one
    ``v1=`` per secret, the current one first."""
    macs = "".join(f",v1={_mac(key, timestamp, body)}" for key in (secret, *previous))
    return f"t={timestamp}{macs}"


def verify(secret: str, header: str, body: bytes, *, now: float, tolerance: float = 300) -> bool:
    """What a receiver does (docs/webhooks.md shows the same): the tests use it too."""
    pairs = [item.split("=", 1) for item in header.split(",") if "=" in item]
    try:
        (timestamp,) = [int(value) for name, value in pairs if name == "t"]
    except ValueError:  # none, several, or not a number
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = _mac(secret, timestamp, body)
    matched = False
    for name, value in pairs:
        if name == "v1":
            matched |= hmac.compare_digest(expected, value)
    return matched


def encode_payload(payload: JsonObject) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def backoff_seconds(
    failed_attempts: int, base: float, rand: Callable[[], float] = random.random
) -> float:
    """How long to wait after ``failed_attempts`` (≥ 1) attempts failed, with jitter."""
    factor = BACKOFF_FACTORS[min(failed_attempts, len(BACKOFF_FACTORS)) - 1]
    return base * factor * (1 - JITTER + 2 * JITTER * rand())


def retryable_status(status: int) -> bool:
    return status >= 500 or status in RETRY_STATUSES


@dataclass(frozen=True)
class Attempt:
    """What one send came to: the receiver's status (if any), an error, and whether to retry."""

    status: int | None
    error: str | None
    retry: bool

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def judge_status(status: int, body: bytes = b"") -> Attempt:
    if 200 <= status < 300:
        return Attempt(status, None, retry=False)
    text = body[:ERROR_TEXT_LIMIT].decode("utf-8", errors="replace").strip()
    error = f"HTTP {status}" + (f": {text}" if text else "")
    if 300 <= status < 400:
        error += " (redirects are not followed)"
    return Attempt(status, error, retry=retryable_status(status))


def judge_error(exc: Exception) -> Attempt:
    """A send that got no usable answer: retried unless retrying cannot help."""
    if isinstance(exc, TooManyRedirects):
        return Attempt(None, "the receiver answered a redirect; webhooks do not follow them", False)
    if isinstance(exc, InvalidUrlError):
        # Refused by the SSRF rules, except a failed DNS lookup, which may well pass later.
        return Attempt(None, exc.details, retry=isinstance(exc.__cause__, OSError))
    if isinstance(exc, FigraniumError):
        return Attempt(None, exc.details, retry=exc.code == "HTTP_ERROR")
    return Attempt(None, describe(exc), retry=True)


def next_state(attempt: Attempt, number: int, max_attempts: int) -> State:
    if attempt.delivered:
        return "delivered"
    if attempt.retry and number < max_attempts:
        return "pending"
    return "failed"


def lease_seconds(config: Config) -> float:
    return max(LEASE_SECONDS, config.webhook_timeout_seconds + 30)


# --- the secret -------------------------------------------------------------------------


async def ensure_secret(pool: Pool, box: SecretBox, data_dir: Path) -> None:
    """Generate the signing secret on the first start, into a 0600 file as the API key."""
    secret = new_secret()
    value: JsonObject = {"secret": box.seal(secret, SECRET_PURPOSE), "createdAt": now_ms()}
    _, created = await settings.setting_insert_if_absent(pool, SECRET_SETTING, value)
    if created:
        path = write_secret_file(data_dir / SECRET_FILE, secret)
        log.warning(
            "webhooks.secret_generated",
            path=str(path),
            note="the secret is in this file (mode 0600); receivers verify"
            " X-Figranium-Signature with it. POST /api/settings/webhook-secret makes a new one",
        )


async def rotate_secret(pool: Pool, box: SecretBox, overlap_seconds: float) -> str:
    """A new secret, used by every replica from its next batch on; the one it replaces
    keeps signing too for ``overlap_seconds``."""
    secret = new_secret()

    def rotate(stored: JsonValue) -> JsonObject:
        now = now_ms()
        value: JsonObject = {"secret": box.seal(secret, SECRET_PURPOSE), "createdAt": now}
        previous = stored.get("secret") if isinstance(stored, dict) else None
        if overlap_seconds > 0 and isinstance(previous, str) and previous:
            # Still sealed: copied as stored, never opened here.
            value["previous"] = previous
            value["previousUntil"] = now + int(overlap_seconds * 1000)
        return value

    # Read and written under the row's lock: two rotations at once keep a consistent pair.
    await settings.update_setting(pool, SECRET_SETTING, rotate)
    log.warning("webhooks.secret_rotated", overlap_seconds=overlap_seconds)
    return secret


async def secret_status(pool: Pool) -> tuple[int | None, int | None]:
    """When the secret was made, and until when the previous one still signs (epoch ms)."""
    stored = await settings.get_setting(pool, SECRET_SETTING)
    if not isinstance(stored, dict) or not stored.get("secret"):
        return None, None
    created = stored.get("createdAt")
    until = stored.get("previousUntil")
    if not (isinstance(until, int) and until > now_ms() and stored.get("previous")):
        until = None  # no previous secret that still signs
    return (created if isinstance(created, int) else None), until


def _open_secrets(box: SecretBox, stored: JsonValue) -> list[str]:
    """The secrets to sign with, the current one first; empty when there is none."""
    current = stored.get("secret") if isinstance(stored, dict) else None
    if not isinstance(stored, dict) or not isinstance(current, str):
        return []
    keys = [box.open(current, SECRET_PURPOSE)]
    previous, until = stored.get("previous"), stored.get("previousUntil")
    if isinstance(previous, str) and previous and isinstance(until, int) and until > now_ms():
        keys.append(box.open(previous, SECRET_PURPOSE))
    return keys


class WebhookWorker:
    """Claims due deliveries and sends them, at most ``CONCURRENCY`` at once."""

    def __init__(
        self,
        pool: Pool,
        box: SecretBox,
        config: Config,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._pool = pool
        self._box = box
        self._config = config
        self._metrics = metrics
        self._claimed: dict[str, int] = {}  # delivery id → attempts when claimed

    async def run(self) -> None:
        in_flight: set[asyncio.Task[None]] = set()
        poll = self._config.webhook_poll_seconds
        async with aiohttp.ClientSession(connector=PinnedConnector()) as session:
            try:
                while True:
                    free = CONCURRENCY - len(in_flight)
                    batch = await self._claim_logged(free) if free > 0 else None
                    if batch is not None:
                        keys, due = batch
                        for delivery in due:
                            task = asyncio.create_task(
                                self._deliver(session, keys, delivery),
                                name=f"webhook-{delivery.id}",
                            )
                            in_flight.add(task)
                            task.add_done_callback(in_flight.discard)
                        if due and len(due) == free:
                            continue  # there may be more due: claim again as slots free up
                    if len(in_flight) >= CONCURRENCY:
                        await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    else:
                        await asyncio.sleep(poll)
            finally:
                for task in in_flight:
                    task.cancel()
                await asyncio.gather(*in_flight, return_exceptions=True)
                await self._release()

    async def _claim_logged(self, limit: int) -> tuple[list[str], list[Due]] | None:
        try:
            return await self._claim(limit)
        except Exception as exc:  # database down: try again on the next poll
            log.warning("webhooks.claim_failed", error=describe(exc))
            return None

    async def _claim(self, limit: int) -> tuple[list[str], list[Due]] | None:
        async with self._pool.connection() as conn:
            due = await webhooks.claim(conn, lease_seconds(self._config), limit)
            if not due:
                return None
            # Per batch, so a rotation on any replica applies to the next batch everywhere.
            # Should this fail, the claims' leases run out and the deliveries wait no longer.
            stored = await settings.read_setting(conn, SECRET_SETTING)
        keys = _open_secrets(self._box, stored)
        if not keys:
            log.error("webhooks.no_secret", setting=SECRET_SETTING, claimed=len(due))
            return None
        for delivery in due:
            self._claimed[delivery.id] = delivery.attempts
        return keys, due

    async def _deliver(self, session: aiohttp.ClientSession, keys: list[str], due: Due) -> None:
        number = due.attempts + 1
        with structlog.contextvars.bound_contextvars(
            execution_id=due.execution_id, delivery_id=due.id, attempt=number
        ):
            body = encode_payload(due.payload)
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                DELIVERY_HEADER: due.id,
                SIGNATURE_HEADER: signature(keys[0], int(time.time()), body, *keys[1:]),
            }
            started = time.monotonic()
            try:
                response = await safe_request(
                    "POST",
                    due.url,
                    allow_private=self._config.allow_private_networks,
                    headers=headers,
                    body=body,
                    timeout=self._config.webhook_timeout_seconds,
                    max_redirects=0,
                    max_bytes=MAX_RESPONSE_BYTES,
                    session=session,
                )
            except Exception as exc:
                attempt = judge_error(exc)
            else:
                attempt = judge_status(response.status, response.body)
            duration_ms = int((time.monotonic() - started) * 1000)
            state = next_state(attempt, number, self._config.webhook_max_attempts)
            if self._metrics is not None:
                result = "retry" if state == "pending" else state
                self._metrics.webhook_attempts.labels(result=result).inc()
            delay = backoff_seconds(number, self._config.webhook_backoff_seconds)
            sent = Sent(number, attempt.status, attempt.error, state, delay, duration_ms)
            try:
                recorded = await webhooks.record_attempt(self._pool, due, sent)
            except Exception as exc:
                # The claim's lease runs out and the delivery is sent again: at least once.
                log.warning("webhooks.record_failed", error=describe(exc))
                return
            # Only now: a claim left over by a failed or cancelled record is handed back on
            # stop, and handing back one that was recorded changes nothing (attempts moved on).
            self._claimed.pop(due.id, None)
            fields: dict[str, object] = {
                "status": attempt.status,
                "state": state,
                "duration_ms": duration_ms,
                "recorded": recorded,
            }
            if state == "delivered":
                log.info("webhooks.delivered", **fields)
            elif state == "pending":
                log.info(
                    "webhooks.retrying", error=attempt.error, delay_s=round(delay, 1), **fields
                )
            else:
                log.warning("webhooks.failed", error=attempt.error, **fields)

    async def _release(self) -> None:
        claimed, self._claimed = self._claimed, {}
        if not claimed:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await webhooks.release(self._pool, claimed)
                log.info("webhooks.released", deliveries=len(claimed))


async def run_webhooks(
    pool: Pool, box: SecretBox, config: Config, metrics: GatewayMetrics | None = None
) -> None:
    """The delivery worker of one gateway replica, until cancelled."""
    await ensure_secret(pool, box, config.data_dir)
    await WebhookWorker(pool, box, config, metrics).run()
