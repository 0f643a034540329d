"""Storing objects in a JetStream object store in one round trip, and telling a store that
has no room from one that failed for a while.

Objects are written in the layout nats-py's ``ObjectStore.put`` writes and its ``get``
reads, for a name not in use (a name in use gets the new object, and the chunks of the old
one stay behind). ``put`` first looks the name up, to delete an object it replaces (one
round trip), then publishes chunk after chunk and the meta message, each after the last
one's ack; here the acks are awaited together. They still arrive in order, on one
connection, so the meta is stored after its chunks. An object that cannot be stored whole
is removed, chunks and meta.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
from collections.abc import AsyncIterable, AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from nats.js.api import Header, ObjectInfo, ObjectMetaOptions, PubAck
from nats.js.errors import APIError
from nats.js.kv import MSG_ROLLUP_SUBJECT
from nats.js.object_store import (
    OBJ_CHUNKS_PRE_TEMPLATE,
    OBJ_DEFAULT_CHUNK_SIZE,
    OBJ_DIGEST_TEMPLATE,
    OBJ_META_PRE_TEMPLATE,
    OBJ_STREAM_TEMPLATE,
)
from nats.nuid import NUID

# JetStream's answers to a message its stream has no room for (the bucket is full, or
# the message exceeds the stream's limits): storing it again would fail the same way.
_NO_ROOM_CODES = frozenset({10047, 10054, 10077})
# Chunks of a file being stored that may await their acks at once: the file streams from
# disk with this much of it in memory, not all of it.
_FILE_CHUNKS_IN_FLIGHT = 16
_NUID = NUID()


def is_no_room(exc: BaseException) -> bool:
    """Whether a publish failed because the stream cannot take it, not for a transient
    reason (NATS unreachable, a timeout): retrying will not help."""
    return isinstance(exc, MaxPayloadError) or (
        isinstance(exc, APIError) and exc.err_code in _NO_ROOM_CODES
    )


@dataclass(frozen=True)
class _NewObject:
    """Where one object being stored goes: its chunks' subject and its meta's."""

    js: JetStreamContext
    bucket: str
    name: str
    nuid: str = field(default_factory=lambda: _NUID.next().decode())

    @property
    def chunks_subject(self) -> str:
        return OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=self.bucket, obj=self.nuid)

    @property
    def meta_subject(self) -> str:
        encoded = base64.urlsafe_b64encode(self.name.encode()).decode()
        return OBJ_META_PRE_TEMPLATE.format(bucket=self.bucket, obj=encoded)

    def publish_chunk(self, chunk: bytes) -> Awaitable[PubAck]:
        return self.js.publish(self.chunks_subject, chunk)

    def publish_meta(self, size: int, chunks: int, sha256: bytes) -> Awaitable[PubAck]:
        """The meta message that makes the chunks an object (the last one of its subject)."""
        info = ObjectInfo(
            name=self.name,
            bucket=self.bucket,
            nuid=self.nuid,
            size=size,
            chunks=chunks,
            mtime=datetime.now(UTC).isoformat(),
            digest=OBJ_DIGEST_TEMPLATE.format(digest=base64.urlsafe_b64encode(sha256).decode()),
            options=ObjectMetaOptions(max_chunk_size=OBJ_DEFAULT_CHUNK_SIZE),
        )
        return self.js.publish(
            self.meta_subject,
            json.dumps(info.as_dict()).encode(),
            headers={Header.ROLLUP: MSG_ROLLUP_SUBJECT},
        )

    async def discard(self) -> None:
        """Remove what was stored of an object that could not be stored whole."""
        stream = OBJ_STREAM_TEMPLATE.format(bucket=self.bucket)
        for subject in (self.meta_subject, self.chunks_subject):
            with contextlib.suppress(Exception):
                await self.js.purge_stream(stream, subject=subject)


async def put_new_object(js: JetStreamContext, bucket: str, name: str, data: bytes) -> None:
    """Store ``data`` as object ``name`` of the object store ``bucket``: the chunks and
    the meta go out together and their acks are awaited at once, one round trip."""
    new = _NewObject(js, bucket, name)
    step = OBJ_DEFAULT_CHUNK_SIZE
    chunks = [data[i : i + step] for i in range(0, len(data), step)]
    publishes = [new.publish_chunk(chunk) for chunk in chunks]
    publishes.append(new.publish_meta(len(data), len(chunks), hashlib.sha256(data).digest()))
    outcomes = await asyncio.gather(*publishes, return_exceptions=True)
    failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
    if failed is None:
        return
    await new.discard()
    raise failed


@dataclass(frozen=True)
class StoredObject:
    """What was stored of an object: its size and its SHA-256 (hex)."""

    size: int
    sha256: str


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    """The file at ``path``, chunk by chunk, read off the event loop."""
    with path.open("rb") as source:
        while chunk := await asyncio.to_thread(source.read, OBJ_DEFAULT_CHUNK_SIZE):
            yield chunk


async def put_file_object(js: JetStreamContext, bucket: str, name: str, path: Path) -> int:
    """As :func:`put_new_object`, for the file at ``path``, read chunk by chunk (a download
    may be far larger than the memory a run should take); returns its size."""
    return (await put_stream_object(js, bucket, name, file_chunks(path))).size


async def put_stream_object(
    js: JetStreamContext, bucket: str, name: str, source: AsyncIterable[bytes]
) -> StoredObject:
    """As :func:`put_new_object`, for bytes arriving from ``source`` in pieces of any size:
    stored in the bucket's chunks as they come, with at most a few chunks in memory. When
    ``source`` raises (a limit it enforces, a client gone), what was stored is removed and
    the error propagates."""
    new = _NewObject(js, bucket, name)
    digest = hashlib.sha256()
    size = count = 0
    pending: list[asyncio.Future[PubAck]] = []
    try:
        async for chunk in _rechunked(source):
            digest.update(chunk)
            size += len(chunk)
            count += 1
            pending.append(asyncio.ensure_future(new.publish_chunk(chunk)))
            if len(pending) >= _FILE_CHUNKS_IN_FLIGHT:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        await new.publish_meta(size, count, digest.digest())
    except BaseException:
        for task in pending:
            task.cancel()
        await new.discard()
        raise
    return StoredObject(size=size, sha256=digest.hexdigest())


async def _rechunked(source: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """``source``'s bytes in chunks of the object store's chunk size (the last one shorter)."""
    buffer = bytearray()
    async for piece in source:
        buffer += piece
        while len(buffer) >= OBJ_DEFAULT_CHUNK_SIZE:
            yield bytes(buffer[:OBJ_DEFAULT_CHUNK_SIZE])
            del buffer[:OBJ_DEFAULT_CHUNK_SIZE]
    if buffer:
        yield bytes(buffer)


async def read_object(js: JetStreamContext, bucket: str, name: str) -> AsyncIterator[bytes]:
    """The object's bytes, chunk by chunk, each fetched when the previous one was taken
    (direct gets: the reader sets the pace, nothing is pushed ahead of it). Raises
    ``ObjectNotFoundError`` before the first chunk when there is no such object, and
    ``ValueError`` after the last when the bytes do not match the object's digest."""
    info = await (await js.object_store(bucket)).get_info(name)
    stream = OBJ_STREAM_TEMPLATE.format(bucket=bucket)
    subject = OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=bucket, obj=info.nuid)
    digest = hashlib.sha256()
    sequence = 1
    for _ in range(info.chunks or 0):
        msg = await js.get_msg(stream, seq=sequence, subject=subject, direct=True, next=True)
        chunk = msg.data or b""
        digest.update(chunk)
        sequence = (msg.seq or sequence) + 1
        yield chunk
    expected = OBJ_DIGEST_TEMPLATE.format(digest=base64.urlsafe_b64encode(digest.digest()).decode())
    if info.digest and info.digest.lower() != expected.lower():
        raise ValueError(f"object {name!r} of {bucket!r} does not match its digest")
