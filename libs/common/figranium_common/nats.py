"""The NATS JetStream topology shared by all services, declared idempotently."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import structlog
from nats.aio.client import Client as NATS
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    Header,
    KeyValueConfig,
    ObjectInfo,
    ObjectMetaOptions,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.kv import MSG_ROLLUP_SUBJECT, KeyValue
from nats.js.object_store import (
    OBJ_CHUNKS_PRE_TEMPLATE,
    OBJ_DEFAULT_CHUNK_SIZE,
    OBJ_DIGEST_TEMPLATE,
    OBJ_META_PRE_TEMPLATE,
    OBJ_STREAM_TEMPLATE,
    ObjectStore,
)
from nats.nuid import NUID

from figranium_common.config import Config
from figranium_common.redact import redact_url

log = structlog.get_logger(__name__)

RUNS_STREAM = "RUNS"
RUNS_SUBJECT_PREFIX = "figranium.runs.v1"
RUNS_DEFAULT_SUBJECT = f"{RUNS_SUBJECT_PREFIX}.default"
RUNNERS_CONSUMER = "runners"
# Headful runs (a visible browser) go to headful runners only, through a consumer of their
# own; the "runners" consumer stays on the default subject (KEDA scales runners on it).
RUNS_HEADFUL_SUBJECT = f"{RUNS_SUBJECT_PREFIX}.headful"
HEADFUL_CONSUMER = "headful-runners"

EVENTS_STREAM = "RUN_EVENTS"
EVENTS_SUBJECT_PREFIX = "figranium.events.v1"
INGESTER_CONSUMER = "ingester"

# JetStream publishes an advisory when a run message exhausted its deliveries; keeping
# those advisories in a stream makes "mark it crashed" durable even if no gateway is up.
DEAD_STREAM = "RUN_DEAD"
_MAX_DELIVERIES_ADVISORY = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{RUNS_STREAM}"
DEAD_SUBJECTS = [
    f"{_MAX_DELIVERIES_ADVISORY}.{consumer}" for consumer in (RUNNERS_CONSUMER, HEADFUL_CONSUMER)
]
DEAD_CONSUMER = "dead-letters"

NOTIFY_SUBJECT_PREFIX = "figranium.notify.v1.execution"
# A setting changed (e.g. the API key): every gateway replica reloads it at once.
SETTINGS_NOTIFY_SUBJECT = "figranium.notify.v1.settings"
# Core NATS ping, no body: "execution_changes has new rows", so every replica's change
# streams read PostgreSQL now instead of at their next poll.
CHANGES_NOTIFY_SUBJECT = "figranium.notify.v1.changes"
# Core NATS ping, no body: "a schedule was saved or deleted", so every scheduler replica
# recomputes its wake-up time now instead of at its next timed poll.
SCHEDULES_NOTIFY_SUBJECT = "figranium.notify.v1.schedules"
CAPTURES_BUCKET = "captures"
# Run results too large for one NATS message wait here, named by execution and attempt
# (result_object_name), until a gateway stored them; the TTL clears what none took.
RESULTS_BUCKET = "results"
RESULTS_TTL_SECONDS = 7 * 24 * 3600
# Stop requests: a key per execution id, so a runner that picks the run up later skips it,
# and a core-NATS subject that interrupts a runner already running it.
STOPS_BUCKET = "stops"
STOPS_STREAM = f"KV_{STOPS_BUCKET}"  # the stream under the bucket
STOP_SUBJECT_PREFIX = "figranium.control.v1.stop"
# Core-NATS request/reply services every runner answers, one runner per request (a queue
# group): PageCaptureRequest and ScriptCheckRequest (figranium_common.models).
TOOLS_PAGE_SUBJECT = "figranium.tools.v1.page"
TOOLS_SCRIPT_SUBJECT = "figranium.tools.v1.script"
TOOLS_QUEUE = "figranium-runners"
# Headful runners (figranium_common.headful), over core NATS: each announces its
# HeadfulPresence every few seconds and whenever pinged (empty body); a viewer ticket is a
# request/reply to one runner's own subject.
HEADFUL_PRESENCE_SUBJECT = "figranium.headful.v1.presence"
HEADFUL_PING_SUBJECT = "figranium.headful.v1.ping"
HEADFUL_TICKET_SUBJECT_PREFIX = "figranium.headful.v1.ticket"


def run_subject(task: Mapping[str, Any]) -> str:
    """Where a run request for ``task`` is published: headful tasks to headful runners."""
    return RUNS_HEADFUL_SUBJECT if task.get("mode") == "headful" else RUNS_DEFAULT_SUBJECT


def headful_ticket_subject(runner_id: str) -> str:
    return f"{HEADFUL_TICKET_SUBJECT_PREFIX}.{runner_id}"


def stop_subject(execution_id: str) -> str:
    return f"{STOP_SUBJECT_PREFIX}.{execution_id}"


def event_subject(execution_id: str) -> str:
    return f"{EVENTS_SUBJECT_PREFIX}.{execution_id}"


def notify_subject(execution_id: str) -> str:
    return f"{NOTIFY_SUBJECT_PREFIX}.{execution_id}"


@dataclass(frozen=True)
class RunConsumerLimits:
    ack_wait_seconds: float
    max_deliver: int
    # RUN_EVENTS keeps events only until the ingester can be expected to have stored them.
    events_max_age_seconds: float = 86_400.0


async def _on_error(exc: Exception) -> None:
    # One line instead of the client's default traceback for every failed reconnect.
    log.warning("nats.error", error=str(exc) or type(exc).__name__)


async def _on_disconnected() -> None:
    log.warning("nats.disconnected")


async def _on_reconnected() -> None:
    log.info("nats.reconnected")


@dataclass(frozen=True)
class NatsAuth:
    """How a service proves who it is to NATS, and whether the connection uses TLS."""

    user: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None

    @classmethod
    def from_config(cls, config: Config) -> NatsAuth:
        return cls(config.nats_user, config.nats_password, tls_context(config))


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
    subjects (:func:`inbox_prefix`); without it, NATS's shared ``_INBOX``.
    """
    deadline = asyncio.get_running_loop().time() + wait_seconds
    auth = auth or NatsAuth()
    credentials: dict[str, Any] = {}
    if auth.user:
        credentials = {"user": auth.user, "password": auth.password or ""}
    if auth.tls is not None:
        credentials["tls"] = auth.tls
    if role is not None:
        credentials["inbox_prefix"] = inbox_prefix(role)
    while True:
        try:
            return await nats.connect(
                url,
                name=name,
                **credentials,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                connect_timeout=2,
                drain_timeout=5,
                error_cb=_on_error,
                disconnected_cb=_on_disconnected,
                reconnected_cb=_on_reconnected,
            )
        except Exception as exc:  # nats raises several unrelated types for "not reachable"
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.info(
                "nats.connect_retry", url=redact_url(url), error=str(exc) or type(exc).__name__
            )
            await asyncio.sleep(1)


async def close(nc: NATS) -> None:
    """Drain (flush what is pending) when the server is there, else just close."""
    try:
        if nc.is_connected:
            await nc.drain()
    except Exception as exc:
        log.warning("nats.drain_failed", error=str(exc) or type(exc).__name__)
    finally:
        if not nc.is_closed:
            try:
                await nc.close()
            except OSError as exc:  # the server went away first: nothing left to flush
                log.info("nats.closed_without_flush", error=str(exc) or type(exc).__name__)


async def unsubscribe(sub: Any) -> None:
    """Unsubscribe at shutdown without hanging: while the client is reconnecting (the
    server stopped first), nats-py can wait for a flush that never comes."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(sub.unsubscribe(), timeout=1)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError:
        # Exists with another configuration (an older release): bring it up to date.
        await js.update_stream(config)


async def _ensure_consumer(js: JetStreamContext, stream: str, config: ConsumerConfig) -> None:
    try:
        await js.add_consumer(stream, config)
    except BadRequestError as exc:
        log.warning(
            "nats.consumer_kept",
            stream=stream,
            consumer=config.durable_name,
            reason=str(exc),
        )


async def declare_topology(
    js: JetStreamContext,
    limits: RunConsumerLimits,
    *,
    captures_max_bytes: int = 0,
    results_max_bytes: int = 0,
) -> None:
    """Create streams, durable consumers and the buckets, or bring those of an older release
    up to date; safe to call concurrently. ``*_max_bytes``: the object store buckets' sizes
    (CAPTURES_MAX_BYTES, RESULTS_MAX_BYTES; 0: no limit)."""
    await _ensure_stream(
        js,
        StreamConfig(
            name=RUNS_STREAM,
            subjects=[f"{RUNS_SUBJECT_PREFIX}.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=300,
        ),
    )
    for durable, subject in (
        (RUNNERS_CONSUMER, RUNS_DEFAULT_SUBJECT),
        (HEADFUL_CONSUMER, RUNS_HEADFUL_SUBJECT),
    ):
        await _ensure_consumer(
            js,
            RUNS_STREAM,
            ConsumerConfig(
                durable_name=durable,
                filter_subject=subject,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=limits.ack_wait_seconds,
                max_deliver=limits.max_deliver,
                max_ack_pending=10_000,
            ),
        )
    await _ensure_stream(
        js,
        StreamConfig(
            name=EVENTS_STREAM,
            subjects=[f"{EVENTS_SUBJECT_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=limits.events_max_age_seconds,
            duplicate_window=300,
        ),
    )
    await _ensure_consumer(
        js,
        EVENTS_STREAM,
        ConsumerConfig(
            durable_name=INGESTER_CONSUMER,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=30,
            max_ack_pending=10_000,
        ),
    )
    await _ensure_stream(
        js,
        StreamConfig(
            name=DEAD_STREAM,
            subjects=DEAD_SUBJECTS,
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
        ),
    )
    await _ensure_consumer(
        js,
        DEAD_STREAM,
        ConsumerConfig(
            durable_name=DEAD_CONSUMER,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=30,
        ),
    )
    await _ensure_object_store(
        js, CAPTURES_BUCKET, max_bytes=captures_max_bytes, setting="CAPTURES_MAX_BYTES"
    )
    await _ensure_object_store(
        js,
        RESULTS_BUCKET,
        max_bytes=results_max_bytes,
        ttl=RESULTS_TTL_SECONDS,
        setting="RESULTS_MAX_BYTES",
    )
    await stops_store(js)
    await _allow_direct_stops(js)


async def stops_store(js: JetStreamContext, *, create: bool = True) -> KeyValue:
    """The bucket of stops asked for runs that had not started. A runner looks each run up
    in it: with direct gets allowed, the server answers a lookup with the entry itself
    rather than through its JetStream API (a JSON reply with the value in base64).
    Without ``create`` (runners, who may not declare it), only looked up."""
    try:
        return await js.key_value(STOPS_BUCKET)
    except (NotFoundError, BucketNotFoundError):
        if not create:
            raise
        config = KeyValueConfig(bucket=STOPS_BUCKET, ttl=24 * 3600, direct=True)
        return await js.create_key_value(config)


async def _allow_direct_stops(js: JetStreamContext) -> None:
    """A stops bucket made by an older release, without direct gets: allow them now."""
    stream = await js.stream_info(STOPS_STREAM)
    if not stream.config.allow_direct:
        stream.config.allow_direct = True
        await js.update_stream(stream.config)


async def captures_store(js: JetStreamContext, *, create: bool = True) -> ObjectStore:
    try:
        return await js.object_store(CAPTURES_BUCKET)
    except NotFoundError:
        if not create:
            raise
        return await js.create_object_store(CAPTURES_BUCKET)


async def bind_topology(
    js: JetStreamContext, consumer: str, stopping: asyncio.Event | None = None
) -> bool:
    """Wait until the gateway, which owns the topology, has declared what a runner uses:
    its consumer on RUNS and the two buckets. Runners may not declare them (their NATS
    user is refused those requests). False when ``stopping`` is set first."""
    waited = False
    while stopping is None or not stopping.is_set():
        try:
            await js.consumer_info(RUNS_STREAM, consumer)
            await js.stream_info(STOPS_STREAM)
            await js.stream_info(OBJ_STREAM_TEMPLATE.format(bucket=CAPTURES_BUCKET))
            if waited:
                log.info("nats.topology_bound", consumer=consumer)
            return True
        except (NotFoundError, TimeoutError) as exc:
            if not waited:
                log.info(
                    "nats.waiting_for_topology",
                    consumer=consumer,
                    error=str(exc) or type(exc).__name__,
                )
            waited = True
        if stopping is None:
            await asyncio.sleep(1)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=1)
    return False


async def results_store(js: JetStreamContext, *, create: bool = True) -> ObjectStore:
    try:
        return await js.object_store(RESULTS_BUCKET)
    except NotFoundError:
        if not create:
            raise
        config = ObjectStoreConfig(ttl=RESULTS_TTL_SECONDS)
        return await js.create_object_store(RESULTS_BUCKET, config=config)


def result_object_name(execution_id: str, attempt: int) -> str:
    return f"{execution_id}.{attempt}"


# JetStream reserves a bucket's maximum size up front; this answers a reservation larger
# than the server's storage (its max_file_store) allows.
_NO_STORAGE_CODE = 10047


async def _ensure_object_store(
    js: JetStreamContext, bucket: str, *, max_bytes: int, setting: str, ttl: float | None = None
) -> None:
    """Create the bucket with these limits, or set them on the one there (an older release
    made it without, or the settings changed). ``setting`` names ``max_bytes``'s setting."""
    limit = max_bytes or -1
    try:
        await js.create_object_store(bucket, config=ObjectStoreConfig(max_bytes=limit, ttl=ttl))
        return
    except BadRequestError:
        pass  # there already, with other limits
    except APIError as exc:
        if exc.err_code == _NO_STORAGE_CODE:
            raise RuntimeError(
                f"{setting}={max_bytes} is more than the NATS server's JetStream storage"
                f" allows for the {bucket!r} bucket: lower {setting} (or give NATS more)"
            ) from exc
        raise
    info = await js.stream_info(OBJ_STREAM_TEMPLATE.format(bucket=bucket))
    if info.config.max_bytes == limit and (ttl is None or info.config.max_age == ttl):
        return
    info.config.max_bytes = limit
    if ttl is not None:
        info.config.max_age = ttl
    try:
        await js.update_stream(info.config)
    except APIError as exc:
        # The bucket keeps working with its old limits; the services must still start.
        log.error(
            "nats.bucket_limit_not_set",
            bucket=bucket,
            setting=setting,
            max_bytes=max_bytes,
            error=exc.description or str(exc),
        )


# JetStream's answers to a message its stream has no room for (the bucket is full, or
# the message exceeds the stream's limits): storing it again would fail the same way.
_NO_ROOM_CODES = frozenset({10047, 10054, 10077})


def is_no_room(exc: BaseException) -> bool:
    """Whether a publish failed because the stream cannot take it, not for a transient
    reason (NATS unreachable, a timeout): retrying will not help."""
    return isinstance(exc, MaxPayloadError) or (
        isinstance(exc, APIError) and exc.err_code in _NO_ROOM_CODES
    )


_NUID = NUID()


async def put_new_object(js: JetStreamContext, bucket: str, name: str, data: bytes) -> None:
    """Store ``data`` as object ``name`` of the object store ``bucket``, in the layout
    nats-py's ``ObjectStore.put`` writes and its ``get`` reads, for a name not in use (a
    name in use gets the new object, and the chunks of the old one stay behind).

    ``put`` first looks the name up, to delete an object it replaces (one round trip),
    then publishes chunk after chunk and the meta message, each after the last one's ack.
    Here the chunks and the meta go out together and their acks are awaited at once: one
    round trip. They still arrive in order, on one connection, so the meta is stored after
    its chunks. An object that cannot be stored whole is removed, chunks and meta.
    """
    nuid = _NUID.next().decode()
    chunks_subject = OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=bucket, obj=nuid)
    meta_subject = OBJ_META_PRE_TEMPLATE.format(
        bucket=bucket, obj=base64.urlsafe_b64encode(name.encode()).decode()
    )
    step = OBJ_DEFAULT_CHUNK_SIZE
    chunks = [data[i : i + step] for i in range(0, len(data), step)]
    info = ObjectInfo(
        name=name,
        bucket=bucket,
        nuid=nuid,
        size=len(data),
        chunks=len(chunks),
        mtime=datetime.now(UTC).isoformat(),
        digest=OBJ_DIGEST_TEMPLATE.format(
            digest=base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()
        ),
        options=ObjectMetaOptions(max_chunk_size=step),
    )
    publishes = [js.publish(chunks_subject, chunk) for chunk in chunks]
    publishes.append(
        js.publish(
            meta_subject,
            json.dumps(info.as_dict()).encode(),
            headers={Header.ROLLUP: MSG_ROLLUP_SUBJECT},
        )
    )
    outcomes = await asyncio.gather(*publishes, return_exceptions=True)
    failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
    if failed is None:
        return
    stream = OBJ_STREAM_TEMPLATE.format(bucket=bucket)
    for subject in (meta_subject, chunks_subject):
        with contextlib.suppress(Exception):
            await js.purge_stream(stream, subject=subject)
    raise failed


# Chunks of a file being stored that may await their acks at once: the file streams from
# disk with this much of it in memory, not all of it.
_FILE_CHUNKS_IN_FLIGHT = 16


async def put_file_object(js: JetStreamContext, bucket: str, name: str, path: Path) -> int:
    """As :func:`put_new_object`, for the file at ``path``, read chunk by chunk (a download
    may be far larger than the memory a run should take); returns its size."""
    nuid = _NUID.next().decode()
    chunks_subject = OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=bucket, obj=nuid)
    meta_subject = OBJ_META_PRE_TEMPLATE.format(
        bucket=bucket, obj=base64.urlsafe_b64encode(name.encode()).decode()
    )
    step = OBJ_DEFAULT_CHUNK_SIZE
    digest = hashlib.sha256()
    size = count = 0
    pending: list[asyncio.Future[Any]] = []
    try:
        with path.open("rb") as source:
            while chunk := await asyncio.to_thread(source.read, step):
                digest.update(chunk)
                size += len(chunk)
                count += 1
                pending.append(asyncio.ensure_future(js.publish(chunks_subject, chunk)))
                if len(pending) >= _FILE_CHUNKS_IN_FLIGHT:
                    await asyncio.gather(*pending)
                    pending = []
            await asyncio.gather(*pending)
        info = ObjectInfo(
            name=name,
            bucket=bucket,
            nuid=nuid,
            size=size,
            chunks=count,
            mtime=datetime.now(UTC).isoformat(),
            digest=OBJ_DIGEST_TEMPLATE.format(
                digest=base64.urlsafe_b64encode(digest.digest()).decode()
            ),
            options=ObjectMetaOptions(max_chunk_size=step),
        )
        await js.publish(
            meta_subject,
            json.dumps(info.as_dict()).encode(),
            headers={Header.ROLLUP: MSG_ROLLUP_SUBJECT},
        )
    except BaseException:
        for task in pending:
            task.cancel()
        stream = OBJ_STREAM_TEMPLATE.format(bucket=bucket)
        for subject in (meta_subject, chunks_subject):
            with contextlib.suppress(Exception):
                await js.purge_stream(stream, subject=subject)
        raise
    return size
