"""The API key every gateway replica checks requests against, kept in step across replicas.

The key itself is never stored: the ``settings`` row holds a keyed digest,
``hmac-sha256:<hex>`` = HMAC-SHA256(K, SHA-256(key)), K derived from the master key
(:meth:`SecretBox.subkey`). A database dump alone therefore allows no offline guessing of
the key: that also takes the master key, which is not in the database.

The inner SHA-256 is what makes migration exact. Earlier versions stored the bare digest
``sha256:<hex>`` (and before that the key in clear); neither can be turned back into the
key, but HMAC(K, <hex>) is precisely the new form of the same key, so :func:`migrate`
re-keys an old row on the first start, without waiting for the key to be presented.
The prefix of the stored value is the format marker. Once migrated, a gateway of an
earlier version no longer accepts the key: upgrade all replicas together.

A replica that changes the stored key updates its own copy at once and sends a core-NATS
notice; the others reload the key from PostgreSQL when it arrives. A notice can be missed
(NATS down, a replica reconnecting), so the stored key is also re-read whenever the copy
is older than ``MAX_AGE_SECONDS``: replicas agree within that bound even without NATS.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Literal

import structlog
from nats.aio.client import Client as NATS

from figranium_common.db import Pool
from figranium_common.errors import describe
from figranium_common.models import SettingsNotice
from figranium_common.nats import SETTINGS_NOTIFY_SUBJECT, Listener, notice_handler
from figranium_gateway.store import settings

log = structlog.get_logger(__name__)

API_KEY_SETTING = "api_key"
MAX_AGE_SECONDS = 2.0
# A request waits at most this long for a re-read; on a slow database it goes on with
# the copy it has rather than piling up behind the lock.
REFRESH_TIMEOUT_SECONDS = 1.0

KeySource = Literal["off", "environment", "stored"]
DIGEST_PREFIX = "hmac-sha256:"
LEGACY_DIGEST_PREFIX = "sha256:"
SUBKEY_PURPOSE = "figranium api key digest"
# Keys set through the API are at least this long; FIGRANIUM_API_KEY may be shorter
# (with a warning), so existing deployments keep working.
MIN_API_KEY_LENGTH = 24


class KeyHasher:
    """Turns keys, and stored values of every format, into the keyed digest."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _keyed(self, sha256_hex: str) -> str:
        mac = hmac.new(self._secret, sha256_hex.encode(), hashlib.sha256)
        return DIGEST_PREFIX + mac.hexdigest()

    def digest(self, key: str) -> str:
        return self._keyed(hashlib.sha256(key.encode()).hexdigest())

    def from_stored(self, stored: str) -> str:
        """The digest of a stored value, whatever format an earlier version wrote it in."""
        if stored.startswith(DIGEST_PREFIX):
            return stored
        if stored.startswith(LEGACY_DIGEST_PREFIX):
            return self._keyed(stored[len(LEGACY_DIGEST_PREFIX) :])
        return self.digest(stored)  # stored in clear by the oldest versions

    def matches(self, expected_digest: str, candidates: list[str]) -> bool:
        wanted = expected_digest.encode()
        matched = False
        for candidate in candidates:
            # compare_digest on every candidate: no early exit that would leak which matched
            matched |= hmac.compare_digest(wanted, self.digest(candidate).encode())
        return matched


class ApiKeyCache:
    """The digest of the key requests must carry; ``current()`` is None when auth is off."""

    def __init__(
        self,
        pool: Pool,
        source: KeySource,
        digest: str | None,
        hasher: KeyHasher,
        *,
        max_age: float = MAX_AGE_SECONDS,
    ) -> None:
        self._pool = pool
        self.source = source
        self.hasher = hasher
        self._key = digest
        self._max_age = max_age
        self._checked_at = time.monotonic()
        # Bumped by every local change, so a re-read that started before it cannot put
        # the previous key back.
        self._generation = 0
        self._lock = asyncio.Lock()
        self._listener = Listener()

    async def current(self) -> str | None:
        if self.source == "off":
            return None
        if self.source == "stored" and time.monotonic() - self._checked_at >= self._max_age:
            async with self._lock:
                if time.monotonic() - self._checked_at >= self._max_age:
                    await self._reload()
        return self._key

    def changed_here(self, key: str) -> None:
        """This replica stored ``key``: use it now, without waiting for a re-read."""
        self._generation += 1
        self._key = self.hasher.digest(key)
        self._checked_at = time.monotonic()

    async def _reload(self) -> None:
        generation = self._generation
        try:
            async with asyncio.timeout(REFRESH_TIMEOUT_SECONDS):
                stored = await settings.get_setting(self._pool, API_KEY_SETTING)
        except Exception as exc:  # driver, pool and timeout errors alike
            # Keeping the previous key is the lesser evil: refusing everything would take
            # the API down with the database, and requests that need it fail anyway.
            log.warning("auth.key_reload_failed", error=describe(exc))
        else:
            if generation == self._generation and isinstance(stored, str) and stored:
                self._key = self.hasher.from_stored(stored)
        finally:
            self._checked_at = time.monotonic()

    async def listen(self, nc: NATS) -> None:
        if self.source == "stored":
            on_notice = notice_handler(
                SettingsNotice, self._on_notice, bad_event="auth.bad_settings_notice"
            )
            await self._listener.listen(nc, SETTINGS_NOTIFY_SUBJECT, on_notice)

    async def stop_listening(self) -> None:
        await self._listener.stop()

    async def _on_notice(self, notice: SettingsNotice) -> None:
        if notice.key == API_KEY_SETTING:
            async with self._lock:
                await self._reload()


async def announce(nc: NATS, key: str) -> None:
    """Tell every replica that setting ``key`` changed; best effort (they re-read anyway)."""
    try:
        await nc.publish(
            SETTINGS_NOTIFY_SUBJECT, SettingsNotice(key=key).model_dump_json().encode()
        )
        await nc.flush(timeout=2)
    except Exception as exc:
        log.warning("settings.notice_failed", key=key, error=describe(exc))
