"""Zip, unzip and folder download of cabinet items, between the cabinets bucket and the
database (Figranium's ``zipItems``, ``unzipItem`` and folder download).

Bytes stream: a ZIP is written into the bucket (or to a client) as its members are read
from it, and an unzipped archive goes through a temporary directory, bounded in size, one
file at a time. Zip and unzip store the new item's bytes first, then swap the rows in one
transaction (:func:`store.cabinet_archives.replace_items`), then delete the old objects:
a failure on the way leaves the old items as they were.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError, ObjectNotFoundError
from psycopg.rows import DictRow

from figranium_common.cabinet_models import item_object
from figranium_common.cabinet_names import safe_name
from figranium_common.db import Pool
from figranium_common.jsontypes import JsonObject
from figranium_common.nats import CABINETS_BUCKET, is_no_room, put_file_object, put_stream_object
from figranium_common.nats import read_object as read_bucket_object
from figranium_gateway.cabinet_archives import (
    UNZIP_MAX_BYTES,
    UNZIP_MAX_ENTRIES,
    ZIP_SUFFIX,
    ObjectReader,
    extract,
    members,
    unzipped_name,
    zip_stream,
)
from figranium_gateway.cabinet_cleanup import delete_objects_logged
from figranium_gateway.cabinet_uploads import over_quota
from figranium_gateway.errors import ApiError
from figranium_gateway.store.cabinet_archives import ItemsChanged, OverQuota, replace_items
from figranium_gateway.store.cabinets import NewItem, Quotas, item_out, new_item_id
from figranium_gateway.zip_bounds import ArchiveError, ZipBounds

# The folder's name when the ZIP's name is nothing but ".zip" (Figranium's).
UNZIP_FALLBACK_NAME = "extracted"


def _reader(js: JetStreamContext) -> ObjectReader:
    return lambda name: read_bucket_object(js, CABINETS_BUCKET, name)


def folder_zip(js: JetStreamContext, row: DictRow) -> AsyncIterator[bytes]:
    """A folder item's files as a ZIP under ``<folder>/``, made as it is taken."""
    return zip_stream(members(row), _reader(js))


def _bytes_missing(exc: Exception) -> ApiError:
    return ApiError(409, "ITEM_BYTES_MISSING", f"an item's stored bytes are gone ({exc})")


def _bucket_full(cabinet_id: str, name: str) -> ApiError:
    return over_quota(cabinet_id, name, "the cabinets bucket is full (CABINETS_MAX_TOTAL_BYTES)")


async def zip_items(
    pool: Pool, js: JetStreamContext, rows: Sequence[DictRow], name: str, quotas: Quotas
) -> JsonObject:
    """Replace ``rows`` (items of one cabinet) by one ZIP file item named ``name`` (made
    unique); answers it."""
    cabinet_id = rows[0]["cabinet_id"]
    item_id = new_item_id()
    stored_as = item_object(item_id)
    every = [member for row in rows for member in members(row)]
    pieces = zip_stream(every, _reader(js))
    try:
        stored = await put_stream_object(js, CABINETS_BUCKET, stored_as, pieces)
    except (ObjectNotFoundError, NotFoundError) as exc:
        raise _bytes_missing(exc) from None
    except Exception as exc:
        if is_no_room(exc):
            raise _bucket_full(cabinet_id, name) from None
        raise
    new = NewItem(item_id, cabinet_id, name, "file", stored.size, stored.sha256, stored_as)
    return await _replace(pool, js, [row["id"] for row in rows], new, quotas, [stored_as])


async def unzip_item(pool: Pool, js: JetStreamContext, row: DictRow, quotas: Quotas) -> JsonObject:
    """Replace the ZIP file item ``row`` by one folder item of its files, named after it;
    answers the folder. An archive refused (unsafe names, a bomb, not a ZIP) is a 400 and
    leaves the item as it was."""
    if row["kind"] != "file" or not str(row["name"]).lower().endswith(ZIP_SUFFIX):
        raise ApiError(400, "NOT_A_ZIP", f"item {row['id']!r} is not a .zip file")
    bounds = ZipBounds(
        max_entries=UNZIP_MAX_ENTRIES, max_total_bytes=min(UNZIP_MAX_BYTES, quotas.cabinet)
    )
    folder_id = new_item_id()
    stored: list[str] = []
    with tempfile.TemporaryDirectory(prefix="figranium-unzip-") as work:
        archive, files_dir = Path(work) / "archive.zip", Path(work) / "files"
        files_dir.mkdir()
        await _download(js, row["object"], archive)
        try:
            files = await asyncio.to_thread(extract, archive, files_dir, bounds)
        except ArchiveError as exc:
            raise ApiError(400, exc.code, exc.details) from None
        entries: list[JsonObject] = []
        try:
            for index, file in enumerate(files):
                name = f"{item_object(folder_id)}/{index}"
                await put_file_object(js, CABINETS_BUCKET, name, file.file)
                stored.append(name)
                file.file.unlink()
                entries.append(
                    {"path": file.path, "object": name, "size": file.size, "sha256": file.sha256}
                )
        except BaseException as exc:
            await delete_objects_logged(js, stored)
            if isinstance(exc, Exception) and is_no_room(exc):
                raise _bucket_full(row["cabinet_id"], row["name"]) from None
            raise
    folder = NewItem(
        id=folder_id,
        cabinet_id=row["cabinet_id"],
        name=safe_name(unzipped_name(row["name"]), UNZIP_FALLBACK_NAME),
        kind="folder",
        size=sum(file.size for file in files),
        entries=entries,
    )
    return await _replace(pool, js, [row["id"]], folder, quotas, stored)


async def _download(js: JetStreamContext, name: str, into: Path) -> None:
    """The object ``name`` written to the file ``into``, chunk by chunk."""
    try:
        with into.open("wb") as out:
            async for chunk in read_bucket_object(js, CABINETS_BUCKET, name):
                await asyncio.to_thread(out.write, chunk)
    except (ObjectNotFoundError, NotFoundError) as exc:
        raise _bytes_missing(exc) from None


async def _replace(
    pool: Pool,
    js: JetStreamContext,
    old_ids: list[str],
    new: NewItem,
    quotas: Quotas,
    written: list[str],
) -> JsonObject:
    """Swap the rows; the objects ``written`` for ``new`` go when that fails, the old
    items' objects when it succeeded."""
    try:
        replaced = await replace_items(pool, old_ids, new, quotas)
    except OverQuota as exc:
        await delete_objects_logged(js, written)
        raise over_quota(new.cabinet_id, new.name, str(exc)) from None
    except ItemsChanged as exc:
        await delete_objects_logged(js, written)
        raise ApiError(409, "ITEMS_CHANGED", str(exc)) from None
    except BaseException:
        await delete_objects_logged(js, written)
        raise
    await delete_objects_logged(js, replaced.doomed)
    return item_out(replaced.row)
