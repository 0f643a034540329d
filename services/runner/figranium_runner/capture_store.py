"""Storing a run's captures (screenshots, downloads, its video) in the captures bucket."""

from __future__ import annotations

import structlog
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from figranium_common.capture_models import StoredCapture, capture_kind
from figranium_common.models import now_ms
from figranium_common.nats import (
    CAPTURES_BUCKET,
    captures_store,
    is_no_room,
    put_file_object,
    put_new_object,
)
from figranium_runner.state import Capture, LogSink, discard_files

log = structlog.get_logger(__name__)


class CaptureStore:
    """The captures bucket as every run of this runner writes to it."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        # Looked up once, not once per run: each lookup is a request to NATS.
        self._ready = False  # the object store exists

    async def upload(self, captures: list[Capture], emit: LogSink) -> list[StoredCapture]:
        """Store every capture, then remove the files of those kept on disk; answers those
        stored, for the gateway's index. A capture the bucket has no room for is dropped
        and said in the run's log (``emit``); any other NATS error raises."""
        stored: list[StoredCapture] = []
        try:
            for capture in captures:
                try:
                    stored.append(await self._put(capture))
                except NatsError as exc:
                    if is_no_room(exc):
                        await _dropped(capture, emit)
                        continue
                    # Looked up again, once: the bucket may be gone with a NATS server
                    # that lost its store (until a gateway declares it again).
                    self._ready = False
                    try:
                        stored.append(await self._put(capture))
                    except NatsError as again:
                        if not is_no_room(again):
                            raise
                        await _dropped(capture, emit)
        finally:
            discard_files(captures)
        return stored

    async def _put(self, capture: Capture) -> StoredCapture:
        if not self._ready:
            # Looked up only: the gateway declares it (runners may not).
            await captures_store(self._js, create=False)
            self._ready = True
        if capture.path is not None:
            size = await put_file_object(self._js, CAPTURES_BUCKET, capture.name, capture.path)
        else:
            await put_new_object(self._js, CAPTURES_BUCKET, capture.name, capture.data)
            size = len(capture.data)
        name = capture.name
        return StoredCapture(name=name, kind=capture_kind(name), size=size, at=now_ms())


async def _dropped(capture: Capture, emit: LogSink) -> None:
    # Not the run's fault, and storing it again would fail the same way: the run finishes
    # without this file rather than run again.
    log.error("run.capture_dropped", capture=capture.name, reason="CAPTURES_MAX_BYTES")
    await emit(
        f"[CAPTURE ERROR] {capture.name} dropped: the captures bucket is full (CAPTURES_MAX_BYTES)"
    )
