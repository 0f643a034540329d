"""Files uploaded into a cabinet from outside (``POST /api/cabinets/:id/items``, our own
addition to Figranium's API): streamed from the multipart body into the cabinets bucket,
never held whole, hashed on the way, and refused past the quotas.

The quotas are checked twice: while the bytes arrive, against the room there was when the
upload began (so an upload far too large stops early), and again under the quota lock
when the item is added (other writers may have taken the room meanwhile). A refused
upload's object is deleted; the items already there stay as they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog
from aiohttp import BodyPartReader, MultipartReader, web
from nats.js import JetStreamContext

from figranium_common.cabinet_models import item_object
from figranium_common.cabinet_names import safe_name
from figranium_common.db import Pool
from figranium_common.jsontypes import JsonObject
from figranium_common.nats import CABINETS_BUCKET, is_no_room, put_stream_object
from figranium_gateway.cabinet_cleanup import delete_objects_logged
from figranium_gateway.errors import ApiError
from figranium_gateway.multipart_forms import form_reader
from figranium_gateway.store import cabinets
from figranium_gateway.store.cabinets import Quotas, Usage

log = structlog.get_logger(__name__)

READ_SIZE = 64 * 1024


def over_quota(cabinet_id: str, name: str, reason: str) -> ApiError:
    log.warning("cabinets.upload_refused", cabinet=cabinet_id, name=name, reason=reason)
    return ApiError(413, "CABINET_QUOTA_EXCEEDED", f"{name!r} was not stored: {reason}")


async def file_part(request: web.Request) -> BodyPartReader:
    """The body's first part that is a file (has a filename); parts before it are read and
    discarded, those after it are not read."""
    if not request.content_type.startswith("multipart/form-data"):
        raise ApiError(400, "INVALID_BODY", "send the file as multipart/form-data")
    try:
        reader = await form_reader(request)
        while (part := await reader.next()) is not None:
            if isinstance(part, MultipartReader):
                raise ApiError(400, "INVALID_BODY", "nested multipart bodies are not accepted")
            if part.filename is not None:
                return part
            await part.release()
    except (ValueError, AssertionError, RuntimeError) as exc:  # aiohttp's malformed-body errors
        raise ApiError(400, "INVALID_BODY", f"malformed multipart body: {exc}") from None
    raise ApiError(400, "INVALID_BODY", "the body has no file part (one with a filename)")


class _OverQuota(Exception):
    """The bytes arriving passed a quota; the message says which."""


async def _within_room(part: BodyPartReader, used: Usage, quotas: Quotas) -> AsyncIterator[bytes]:
    size = 0
    while chunk := await part.read_chunk(READ_SIZE):
        size += len(chunk)
        reason = cabinets.quota_refusal(used, size, quotas)
        if reason is not None:
            raise _OverQuota(reason)
        yield chunk


async def store_upload(
    pool: Pool, js: JetStreamContext, cabinet_id: str, part: BodyPartReader, quotas: Quotas
) -> JsonObject:
    """Store the part's file as a new item of the cabinet; answers the item."""
    name = safe_name(part.filename)
    async with pool.connection() as conn:
        used = await cabinets.usage(conn, cabinet_id)
    item_id = cabinets.new_item_id()
    stored_as = item_object(item_id)
    source = _within_room(part, used, quotas)
    try:
        stored = await put_stream_object(js, CABINETS_BUCKET, stored_as, source)
    except _OverQuota as exc:
        raise over_quota(cabinet_id, name, str(exc)) from None
    except Exception as exc:
        if is_no_room(exc):
            reason = "the cabinets bucket is full (CABINETS_MAX_TOTAL_BYTES)"
            raise over_quota(cabinet_id, name, reason) from None
        raise
    try:
        async with pool.connection() as conn, conn.transaction():
            await cabinets.lock_quotas(conn)
            if not await cabinets.lock_cabinet(conn, cabinet_id):
                raise ApiError(404, "CABINET_NOT_FOUND", f"cabinet {cabinet_id!r} was deleted")
            used = await cabinets.usage(conn, cabinet_id)
            refusal = cabinets.quota_refusal(used, stored.size, quotas)
            if refusal is not None:
                raise over_quota(cabinet_id, name, refusal)
            row = await cabinets.insert_item(
                conn,
                cabinets.NewItem(
                    id=item_id,
                    cabinet_id=cabinet_id,
                    name=name,
                    kind="file",
                    size=stored.size,
                    sha256=stored.sha256,
                    object=stored_as,
                ),
            )
    except BaseException:
        await delete_objects_logged(js, [stored_as])
        raise
    return cabinets.item_out(row)
