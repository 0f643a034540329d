"""The JetStream topology: streams, durable consumers and buckets, declared idempotently by
the gateway (which owns them) and waited for by runners (which may not declare them).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import structlog
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import OBJ_STREAM_TEMPLATE, ObjectStore

from figranium_common.errors import describe
from figranium_common.nats import subjects

log = structlog.get_logger(__name__)

# JetStream reserves a bucket's maximum size up front; this answers a reservation larger
# than the server's storage (its max_file_store) allows.
_NO_STORAGE_CODE = 10047


@dataclass(frozen=True)
class RunConsumerLimits:
    ack_wait_seconds: float
    max_deliver: int
    # RUN_EVENTS keeps events only until the ingester can be expected to have stored them.
    events_max_age_seconds: float = 86_400.0


async def declare_topology(
    js: JetStreamContext,
    limits: RunConsumerLimits,
    *,
    captures_max_bytes: int = 0,
    results_max_bytes: int = 0,
    cabinets_max_bytes: int = 0,
    replicas: int = 1,
) -> None:
    """Create streams, durable consumers and the buckets, or bring those of an older release
    up to date; safe to call concurrently. ``*_max_bytes``: the object store buckets' sizes
    (CAPTURES_MAX_BYTES, RESULTS_MAX_BYTES, CABINETS_MAX_TOTAL_BYTES; 0: no limit).
    ``replicas`` (NATS_REPLICAS): copies of each stream and bucket in a JetStream cluster;
    those made with fewer are raised to it (consumers follow their stream's count)."""
    await _ensure_stream(
        js,
        subjects.RUNS_STREAM,
        [f"{subjects.RUNS_SUBJECT_PREFIX}.>"],
        RetentionPolicy.WORK_QUEUE,
        duplicate_window=300,
        num_replicas=replicas,
    )
    for durable, subject in (
        (subjects.RUNNERS_CONSUMER, subjects.RUNS_DEFAULT_SUBJECT),
        (subjects.HEADFUL_CONSUMER, subjects.RUNS_HEADFUL_SUBJECT),
    ):
        await _ensure_consumer(
            js,
            subjects.RUNS_STREAM,
            _durable(
                durable,
                limits.ack_wait_seconds,
                filter_subject=subject,
                max_deliver=limits.max_deliver,
                max_ack_pending=10_000,
            ),
        )
    await _ensure_stream(
        js,
        subjects.EVENTS_STREAM,
        [f"{subjects.EVENTS_SUBJECT_PREFIX}.>"],
        RetentionPolicy.LIMITS,
        max_age=limits.events_max_age_seconds,
        duplicate_window=300,
        num_replicas=replicas,
    )
    ingester = _durable(subjects.INGESTER_CONSUMER, 30, max_ack_pending=10_000)
    await _ensure_consumer(js, subjects.EVENTS_STREAM, ingester)
    await _ensure_stream(
        js,
        subjects.DEAD_STREAM,
        subjects.DEAD_SUBJECTS,
        RetentionPolicy.WORK_QUEUE,
        num_replicas=replicas,
    )
    await _ensure_consumer(js, subjects.DEAD_STREAM, _durable(subjects.DEAD_CONSUMER, 30))
    await _ensure_object_store(
        js,
        subjects.CAPTURES_BUCKET,
        max_bytes=captures_max_bytes,
        setting="CAPTURES_MAX_BYTES",
        replicas=replicas,
    )
    await _ensure_object_store(
        js,
        subjects.RESULTS_BUCKET,
        max_bytes=results_max_bytes,
        ttl=subjects.RESULTS_TTL_SECONDS,
        setting="RESULTS_MAX_BYTES",
        replicas=replicas,
    )
    await _ensure_object_store(
        js,
        subjects.CABINETS_BUCKET,
        max_bytes=cabinets_max_bytes,
        setting="CABINETS_MAX_TOTAL_BYTES",
        replicas=replicas,
    )
    await stops_store(js, replicas=replicas)
    await _update_stops(js, replicas)


def _durable(name: str, ack_wait: float, **limits: Any) -> ConsumerConfig:
    """A durable consumer that reads its stream from the start and acks each message."""
    return ConsumerConfig(
        durable_name=name,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait,
        **limits,
    )


async def _ensure_stream(
    js: JetStreamContext,
    name: str,
    stream_subjects: list[str],
    retention: RetentionPolicy,
    **limits: Any,
) -> None:
    config = StreamConfig(
        name=name,
        subjects=stream_subjects,
        retention=retention,
        storage=StorageType.FILE,
        **limits,
    )
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


async def _ensure_object_store(
    js: JetStreamContext,
    bucket: str,
    *,
    max_bytes: int,
    setting: str,
    ttl: float | None = None,
    replicas: int = 1,
) -> None:
    """Create the bucket with these limits, or set them on the one there (an older release
    made it without, or the settings changed; its replicas are only ever raised).
    ``setting`` names ``max_bytes``'s setting."""
    limit = max_bytes or -1
    config = ObjectStoreConfig(max_bytes=limit, ttl=ttl, replicas=replicas)
    try:
        await js.create_object_store(bucket, config=config)
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
    if (
        info.config.max_bytes == limit
        and (ttl is None or info.config.max_age == ttl)
        and (info.config.num_replicas or 1) >= replicas
    ):
        return
    info.config.max_bytes = limit
    if ttl is not None:
        info.config.max_age = ttl
    info.config.num_replicas = max(info.config.num_replicas or 1, replicas)
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


async def stops_store(js: JetStreamContext, *, create: bool = True, replicas: int = 1) -> KeyValue:
    """The bucket of stops asked for runs that had not started. A runner looks each run up
    in it: with direct gets allowed, the server answers a lookup with the entry itself
    rather than through its JetStream API (a JSON reply with the value in base64).
    Without ``create`` (runners, who may not declare it), only looked up; ``replicas``:
    its copies when made here."""
    try:
        return await js.key_value(subjects.STOPS_BUCKET)
    except (NotFoundError, BucketNotFoundError):
        if not create:
            raise
        config = KeyValueConfig(
            bucket=subjects.STOPS_BUCKET, ttl=24 * 3600, direct=True, replicas=replicas
        )
        return await js.create_key_value(config)


async def _update_stops(js: JetStreamContext, replicas: int) -> None:
    """A stops bucket made by an older release, without direct gets or with fewer
    replicas: allow them, raise them, now."""
    stream = await js.stream_info(subjects.STOPS_STREAM)
    fewer = (stream.config.num_replicas or 1) < replicas
    if not stream.config.allow_direct or fewer:
        stream.config.allow_direct = True
        stream.config.num_replicas = max(stream.config.num_replicas or 1, replicas)
        await js.update_stream(stream.config)


async def captures_store(js: JetStreamContext, *, create: bool = True) -> ObjectStore:
    return await _object_store(js, subjects.CAPTURES_BUCKET, create, None)


async def cabinets_store(js: JetStreamContext, *, create: bool = True) -> ObjectStore:
    return await _object_store(js, subjects.CABINETS_BUCKET, create, None)


async def results_store(js: JetStreamContext, *, create: bool = True) -> ObjectStore:
    config = ObjectStoreConfig(ttl=subjects.RESULTS_TTL_SECONDS)
    return await _object_store(js, subjects.RESULTS_BUCKET, create, config)


async def _object_store(
    js: JetStreamContext, bucket: str, create: bool, config: ObjectStoreConfig | None
) -> ObjectStore:
    """The object store ``bucket``; made with ``config`` when it is missing and ``create``."""
    try:
        return await js.object_store(bucket)
    except NotFoundError:
        if not create:
            raise
        return await js.create_object_store(bucket, config=config)


async def bind_topology(
    js: JetStreamContext, consumer: str, stopping: asyncio.Event | None = None
) -> bool:
    """Wait until the gateway, which owns the topology, has declared what a runner uses:
    its consumer on RUNS and the buckets. Runners may not declare them (their NATS
    user is refused those requests). False when ``stopping`` is set first."""
    waited = False
    while stopping is None or not stopping.is_set():
        try:
            await js.consumer_info(subjects.RUNS_STREAM, consumer)
            await js.stream_info(subjects.STOPS_STREAM)
            await js.stream_info(OBJ_STREAM_TEMPLATE.format(bucket=subjects.CAPTURES_BUCKET))
            await js.stream_info(OBJ_STREAM_TEMPLATE.format(bucket=subjects.CABINETS_BUCKET))
            if waited:
                log.info("nats.topology_bound", consumer=consumer)
            return True
        except (NotFoundError, TimeoutError) as exc:
            if not waited:
                log.info("nats.waiting_for_topology", consumer=consumer, error=describe(exc))
            waited = True
        if stopping is None:
            await asyncio.sleep(1)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=1)
    return False
