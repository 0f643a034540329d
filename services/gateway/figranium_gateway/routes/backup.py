"""Settings export, import (and its preview) and reset, at Figranium's paths.

``POST /api/settings/export {include, passphrase}`` answers the ZIP; ``POST
/api/settings/import`` and ``/api/settings/import/inspect`` take the ZIP as the request
body (``?include=tasks,proxies`` to import part of it; the passphrase in the
``X-Figranium-Passphrase`` header, never in the URL); ``POST /api/settings/reset`` needs
``{"confirm": "RESET"}``, or Figranium's ``currentPassword``, which here is the API key.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from aiohttp import web
from pydantic import BaseModel, Field

from figranium_common.jsontypes import JsonObject
from figranium_common.nats import SCHEDULES_NOTIFY_SUBJECT, ping
from figranium_gateway.backup import service
from figranium_gateway.backup.archive import FIGRANIUM_ONLY, KINDS, MAX_ARCHIVE_BYTES, ArchiveError
from figranium_gateway.backup.plan import Plan
from figranium_gateway.backup.sealing import MIN_PASSPHRASE
from figranium_gateway.errors import ApiError
from figranium_gateway.openapi import ErrorBody
from figranium_gateway.request_input import read_model
from figranium_gateway.routing import Router
from figranium_gateway.served_files import attachment
from figranium_gateway.state import AUTH, BOX, CONFIG, NC, POOL

log = structlog.get_logger(__name__)
api = Router("settings")

PASSPHRASE_HEADER = "X-Figranium-Passphrase"
RESET_CONFIRMATION = "RESET"
_CHUNK = 64 * 1024


class ExportBody(BaseModel):
    include: list[str] = Field(
        default_factory=list,
        description=f"kinds to export: {', '.join(KINDS)} (schedules need tasks); Figranium's"
        f" {', '.join(FIGRANIUM_ONLY)} are not exported here",
    )
    passphrase: str | None = Field(
        default=None,
        description=f"seals every secret (at least {MIN_PASSPHRASE} characters); without it,"
        " secrets are written as ******** and an import keeps the stored ones",
    )


class KindChangesOut(BaseModel):
    created: list[str]
    updated: list[str]
    unchanged: list[str]
    removed: list[str]


class InspectAnswer(BaseModel):
    available: list[str]
    exportedAt: str | None
    sealed: bool
    unsupported: list[str] = Field(description="Figranium kinds in the archive, not imported")
    ignored: list[str] = Field(description="settings in the archive this server does not know")
    changes: dict[str, KindChangesOut]


class ImportAnswer(InspectAnswer):
    success: bool
    imported: list[str]


class ResetBody(BaseModel):
    confirm: str | None = Field(default=None, description=f'"{RESET_CONFIRMATION}"')
    currentPassword: str | None = Field(
        default=None, description="Figranium's confirmation: here, the current API key"
    )


class Removed(BaseModel):
    tasks: int
    settings: list[str]


class ResetAnswer(BaseModel):
    success: bool
    removed: Removed


def _refused(exc: ArchiveError) -> ApiError:
    return ApiError(400, exc.code, exc.details)


@api.post(
    "/api/settings/export",
    "Export tasks, schedules, proxies and settings as Figranium's ZIP (secrets sealed)",
    body=ExportBody,
    responses={200: None, 400: ErrorBody},
    content_types={200: "application/zip"},
)
async def export(request: web.Request) -> web.Response:
    body = await read_model(request, ExportBody)
    if not any(kind in KINDS for kind in body.include):
        raise ApiError(
            400, "EXPORT_SELECTION_REQUIRED", f"include: one or more of {', '.join(KINDS)}"
        )
    try:
        archive = await service.export_archive(
            request.app[POOL], request.app[BOX], body.include, body.passphrase
        )
    except ArchiveError as exc:
        raise _refused(exc) from None
    date = datetime.now(UTC).date().isoformat()
    log.info("settings.exported", include=body.include, sealed=bool(body.passphrase))
    return web.Response(
        body=archive,
        content_type="application/zip",
        headers={
            "Content-Disposition": attachment(f"figranium-export-{date}.zip"),
            "Cache-Control": "no-store",
        },
    )


async def _archive_bytes(request: web.Request) -> bytes:
    """The request body, refused past MAX_ARCHIVE_BYTES without reading further."""
    too_large = ApiError(400, "ARCHIVE_TOO_LARGE", f"the archive is over {MAX_ARCHIVE_BYTES} bytes")
    if (request.content_length or 0) > MAX_ARCHIVE_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > MAX_ARCHIVE_BYTES:
            raise too_large
        chunks.append(chunk)
    # Authentication may have read a body already (a key sent in it): read() answers that.
    return b"".join(chunks) or await request.read()


async def _prepared(request: web.Request) -> service.Prepared:
    include = [kind for kind in request.query.get("include", "").split(",") if kind]
    try:
        return await service.prepare_import(
            await _archive_bytes(request),
            request.headers.get(PASSPHRASE_HEADER),
            include,
            allow_private=request.app[CONFIG].allow_private_networks,
        )
    except ArchiveError as exc:
        raise _refused(exc) from None


async def _answer(
    request: web.Request, prepared: service.Prepared, *, apply: bool
) -> tuple[JsonObject, Plan]:
    try:
        plan = await service.run_import(request.app[POOL], request.app[BOX], prepared, apply=apply)
    except ArchiveError as exc:
        raise _refused(exc) from None
    archive = prepared.archive
    secrets = archive.secrets or {}
    return {
        "available": archive.available,
        "exportedAt": archive.exported_at,
        "sealed": secrets.get("sealing") == "passphrase",
        "unsupported": archive.unsupported,
        "ignored": prepared.ignored,
        "changes": plan.out(),
    }, plan


_IMPORT_QUERY = {"include": "comma-separated kinds to import (default: all the archive holds)"}


@api.post(
    "/api/settings/import/inspect",
    "Preview an import: what each kind would create, update or leave (nothing is written)",
    responses={200: InspectAnswer, 400: ErrorBody},
    query=_IMPORT_QUERY,
)
async def inspect_import(request: web.Request) -> web.Response:
    answer, _ = await _answer(request, await _prepared(request), apply=False)
    return web.json_response(answer)


@api.post(
    "/api/settings/import",
    "Import a Figranium or own export ZIP (request body) in one transaction",
    responses={200: ImportAnswer, 400: ErrorBody},
    query=_IMPORT_QUERY,
)
async def import_archive(request: web.Request) -> web.Response:
    prepared = await _prepared(request)
    answer, plan = await _answer(request, prepared, apply=True)
    if plan.schedules:
        await ping(request.app[NC], SCHEDULES_NOTIFY_SUBJECT)  # wake the schedulers
    log.info("settings.imported", kinds=prepared.kinds)
    return web.json_response({"success": True, "imported": prepared.kinds, **answer})


@api.post(
    "/api/settings/reset",
    "Delete every task, schedule, proxy and setting (the API key stays)",
    body=ResetBody,
    responses={200: ResetAnswer, 400: ErrorBody, 401: ErrorBody},
)
async def reset(request: web.Request) -> web.Response:
    body = await read_model(request, ResetBody)
    if body.confirm is None and body.currentPassword is None:
        raise ApiError(
            400,
            "CONFIRMATION_REQUIRED",
            f'send {{"confirm": "{RESET_CONFIRMATION}"}} to delete every task and setting',
        )
    if body.confirm is not None and body.confirm != RESET_CONFIRMATION:
        raise ApiError(400, "CONFIRMATION_REQUIRED", f'confirm: must be "{RESET_CONFIRMATION}"')
    if body.confirm is None and not await _is_api_key(request, body.currentPassword or ""):
        raise ApiError(401, "INVALID_CURRENT_PASSWORD", "currentPassword: not the API key")
    removed = await service.reset(request.app[POOL])
    await ping(request.app[NC], SCHEDULES_NOTIFY_SUBJECT)
    log.warning("settings.reset", removed=removed)
    return web.json_response({"success": True, "removed": removed})


async def _is_api_key(request: web.Request, given: str) -> bool:
    cache = request.app[AUTH]
    current = await cache.current()
    return current is not None and bool(given) and cache.hasher.matches(current, [given])
