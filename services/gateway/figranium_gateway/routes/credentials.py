"""Credentials for third parties (Baserow), as Figranium's /api/credentials.

Tokens are sealed at rest (``store.credentials``) and never answered: every answer carries
the redacted ``••••••••`` instead, and a client sending that value back keeps the stored
token. The Baserow proxy routes let the editor list databases and tables without ever
seeing the token.
"""

from __future__ import annotations

import re

from aiohttp import web
from pydantic import BaseModel, Field, RootModel

from figranium_common import baserow
from figranium_common.errors import FigraniumError, InvalidUrlError
from figranium_common.jsontypes import JsonObject, JsonValue
from figranium_common.outbound_http import safe_request
from figranium_common.secretbox import SecretError
from figranium_gateway import credential_changes
from figranium_gateway.credential_changes import REDACTED, CredentialBody, CredentialUpdate
from figranium_gateway.errors import ApiError
from figranium_gateway.openapi import ErrorBody
from figranium_gateway.request_input import read_model
from figranium_gateway.routing import Router
from figranium_gateway.state import BOX, CONFIG, POOL
from figranium_gateway.store import credentials as credential_store
from figranium_gateway.store.credentials import Credential

api = Router("credentials")

BASEROW_TIMEOUT_SECONDS = 15.0
MAX_BASEROW_ANSWER = 5 * 1024 * 1024
_BASEROW_ID = re.compile(r"[0-9]{1,18}")


# --- models ---------------------------------------------------------------------------


class CredentialConfigOut(BaseModel):
    baseUrl: str
    token: str = Field(description=f"{REDACTED!r} when a token is stored, else empty")


class CredentialOut(BaseModel):
    id: str
    name: str
    provider: str
    config: CredentialConfigOut


class CredentialList(RootModel[list[CredentialOut]]):
    pass


class DeletedAnswer(BaseModel):
    success: bool


class BaserowDatabase(BaseModel):
    id: int
    name: str = Field(
        description="Baserow tells a database token no database names: the credential's"
        ' name when the token sees one database, else "Database <id>"'
    )
    workspaceName: str = Field(description="empty: a database token cannot learn it")


class BaserowDatabaseList(RootModel[list[BaserowDatabase]]):
    pass


class BaserowTable(BaseModel):
    id: int
    name: str


class BaserowTableList(RootModel[list[BaserowTable]]):
    pass


# --- helpers --------------------------------------------------------------------------


def _out(credential: Credential) -> JsonObject:
    config = CredentialConfigOut(
        baseUrl=credential.base_url, token=REDACTED if credential.has_token else ""
    )
    out = CredentialOut(
        id=credential.id, name=credential.name, provider=credential.provider, config=config
    )
    return out.model_dump()


def _credential_id(request: web.Request) -> str:
    return request.match_info["credential_id"]


async def _found(request: web.Request) -> Credential:
    return await credential_changes.found(request.app, _credential_id(request))


# --- CRUD -----------------------------------------------------------------------------


@api.get("/api/credentials", "Saved credentials (tokens redacted)", responses={200: CredentialList})
async def list_credentials(request: web.Request) -> web.Response:
    credentials = await credential_store.list_credentials(request.app[POOL])
    return web.json_response([_out(credential) for credential in credentials])


@api.post(
    "/api/credentials",
    "Save a Baserow credential (the token is encrypted at rest)",
    body=CredentialBody,
    responses={200: CredentialOut, 400: ErrorBody},
)
async def create_credential(request: web.Request) -> web.Response:
    body = await read_model(request, CredentialBody)
    return web.json_response(_out(await credential_changes.create(request.app, body)))


@api.put(
    "/api/credentials/{credential_id}",
    "Change a credential's name, base URL or token",
    body=CredentialUpdate,
    responses={200: CredentialOut, 400: ErrorBody, 404: ErrorBody},
)
async def update_credential(request: web.Request) -> web.Response:
    body = await read_model(request, CredentialUpdate)
    updated = await credential_changes.update(request.app, _credential_id(request), body)
    return web.json_response(_out(updated))


@api.delete(
    "/api/credentials/{credential_id}",
    "Delete a credential (tasks pushing through it then fail their output step)",
    responses={200: DeletedAnswer, 404: ErrorBody},
)
async def delete_credential(request: web.Request) -> web.Response:
    await credential_changes.delete(request.app, _credential_id(request))
    return web.json_response(DeletedAnswer(success=True).model_dump())


# --- Baserow proxy --------------------------------------------------------------------


async def _baserow_get(request: web.Request, credential: Credential, path: str) -> JsonValue:
    """GET a Baserow API path with the credential's token; Baserow's JSON answer."""
    if credential.provider != "baserow":
        raise ApiError(
            400, "UNSUPPORTED_PROVIDER", f"credential {credential.id!r} is not a Baserow one"
        )
    try:
        token = credential.open_token(request.app[BOX])
    except SecretError as exc:
        raise ApiError(409, exc.code, exc.details) from None
    try:
        response = await safe_request(
            "GET",
            f"{credential.base_url}{path}",
            allow_private=request.app[CONFIG].allow_private_networks,
            headers=baserow.auth_headers(token),
            timeout=BASEROW_TIMEOUT_SECONDS,
            max_bytes=MAX_BASEROW_ANSWER,
        )
    except InvalidUrlError as exc:
        raise ApiError(400, "INVALID_BASE_URL", f"config.baseUrl: {exc.details}") from None
    except FigraniumError as exc:
        raise ApiError(502, "BASEROW_UNREACHABLE", exc.details) from None
    if not 200 <= response.status < 300:
        # Baserow's refusals (a wrong token: 401) are the client's to fix; its failures are
        # a bad gateway from here.
        status = response.status if 400 <= response.status < 500 else 502
        raise ApiError(status, "BASEROW_ERROR", baserow.problem(response))
    try:
        answer: JsonValue = response.json()
    except ValueError:
        raise ApiError(502, "BASEROW_ERROR", "Baserow's answer is not JSON") from None
    return answer


# The one listing Baserow gives a database token (its applications and per-database
# listings take a user's JWT): every table the token may use, with its database's id.
ALL_TABLES_PATH = "/api/database/tables/all-tables/"


def token_tables(answer: JsonValue) -> list[tuple[int, BaserowTable]]:
    """(database id, table) for each table in Baserow's ``all-tables`` answer."""
    if not isinstance(answer, list):
        raise ApiError(502, "BASEROW_ERROR", "Baserow's answer is not a list of tables")
    found = []
    for item in answer:
        if not isinstance(item, dict):
            continue
        table_id, database_id = _baserow_int(item.get("id")), _baserow_int(item.get("database_id"))
        if table_id is not None and database_id is not None:
            found.append((database_id, BaserowTable(id=table_id, name=str(item.get("name") or ""))))
    return found


def _baserow_int(value: JsonValue) -> int | None:
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    return int(text) if _BASEROW_ID.fullmatch(text) else None


def databases_of(
    tables: list[tuple[int, BaserowTable]], credential_name: str
) -> list[BaserowDatabase]:
    """The databases holding the token's tables, in Baserow's order."""
    ids = list(dict.fromkeys(database_id for database_id, _ in tables))
    named = len(ids) == 1 and credential_name
    return [
        BaserowDatabase(
            id=database_id,
            name=credential_name if named else f"Database {database_id}",
            workspaceName="",
        )
        for database_id in ids
    ]


@api.get(
    "/api/credentials/{credential_id}/proxy/baserow/databases",
    "The Baserow databases the credential's token can see (numeric ids)",
    responses={
        200: BaserowDatabaseList,
        400: ErrorBody,
        403: ErrorBody,
        404: ErrorBody,
        409: ErrorBody,
        502: ErrorBody,
    },
)
async def baserow_databases(request: web.Request) -> web.Response:
    credential = await _found(request)
    tables = token_tables(await _baserow_get(request, credential, ALL_TABLES_PATH))
    databases = databases_of(tables, credential.name)
    return web.json_response([database.model_dump() for database in databases])


@api.get(
    "/api/credentials/{credential_id}/proxy/baserow/databases/{database_id}/tables",
    "The tables of one Baserow database the credential's token can see (numeric ids)",
    responses={
        200: BaserowTableList,
        400: ErrorBody,
        403: ErrorBody,
        404: ErrorBody,
        409: ErrorBody,
        502: ErrorBody,
    },
)
async def baserow_tables(request: web.Request) -> web.Response:
    database_id = request.match_info["database_id"]
    if not _BASEROW_ID.fullmatch(database_id):
        raise ApiError(400, "INVALID_DATABASE_ID", "databaseId must be a number")
    credential = await _found(request)
    tables = token_tables(await _baserow_get(request, credential, ALL_TABLES_PATH))
    wanted = int(database_id)
    mine = [table.model_dump() for in_database, table in tables if in_database == wanted]
    if not mine:
        raise ApiError(
            404,
            "DATABASE_NOT_FOUND",
            f"the credential's token sees no table in Baserow database {database_id}",
        )
    return web.json_response(mine)
