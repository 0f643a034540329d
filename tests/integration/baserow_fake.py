"""A local Baserow for tests: its wire format for applications, tables and row creation.

It runs in its own thread (with its own event loop), so both synchronous whole-stack
tests and asynchronous unit tests can use it, and records every request it receives.
Only the parts of Baserow's REST API the platform calls are spoken, as they answer a
*database token* (``Authorization: Token …``, the only credential the platform holds):

- ``GET /api/database/tables/all-tables/``: every table the token may use, each
  ``{id, name, order, database_id}`` (token authentication only);
- ``POST /api/database/rows/table/{id}/``: one row, answered with its id;
- ``POST /api/database/rows/table/{id}/batch/``: ``{"items": [...]}``, at most 200.

Listing workspaces' applications (``GET /api/applications/``) and a database's tables
(``GET /api/database/tables/database/{id}/``) take a user's JWT in Baserow's API; a
database token gets 401 there, as from Baserow. A wrong token gets Baserow's 401
``ERROR_INVALID_TOKEN``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.integration.threaded_app import ThreadedApp

BATCH_LIMIT = 200


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    content_type: str | None
    body: Any


@dataclass
class Database:
    """A database as a token sees it: its id and tables (a token never learns its name)."""

    id: int
    tables: dict[int, str] = field(default_factory=dict)  # id → name


DEFAULT_DATABASES = (
    Database(101, {12: "Products", 13: "Orders"}),
    Database(102, {21: "Contacts"}),
)


def _error(status: int, code: str, detail: Any) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


class BaserowFake(ThreadedApp):
    """``with BaserowFake(token="t") as fake:`` then point a credential at ``fake.url``."""

    name = "baserow-fake"

    def __init__(
        self,
        token: str = "baserow-token-123",
        *,
        databases: tuple[Database, ...] = DEFAULT_DATABASES,
    ) -> None:
        super().__init__()
        self.token = token
        self.databases = databases
        # Set to answer row creation with this status (Baserow being down, say), once
        # fail_after_rows rows have been created.
        self.fail_rows_with: int | None = None
        self.fail_after_rows = 0
        self.received: list[Received] = []
        self.rows: dict[int, list[dict[str, Any]]] = {}  # table id → rows created
        self._lock = threading.Lock()
        self._next_row_id = 1

    # --- what it saw --------------------------------------------------------------------

    def requests_to(self, path_part: str) -> list[Received]:
        with self._lock:
            return [seen for seen in self.received if path_part in seen.path]

    def rows_request_body(self, path: str) -> Any:
        """The body of the one request that created rows, once it is checked to be a JSON
        POST to ``path``, with the fake's token, naming fields as the user sees them."""
        (sent,) = self.requests_to("/rows/")
        assert (sent.method, sent.path) == ("POST", path)
        assert sent.query == {"user_field_names": "true"}
        assert sent.authorization == f"Token {self.token}"
        assert sent.content_type == "application/json"
        return sent.body

    def rows_in(self, table_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.rows.get(table_id, []))

    # --- the API ------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._record, self._authenticate])
        app.router.add_get("/api/applications/", self._user_only)
        app.router.add_get("/api/database/tables/database/{database_id}/", self._user_only)
        app.router.add_get("/api/database/tables/all-tables/", self._all_tables)
        app.router.add_post("/api/database/rows/table/{table_id}/", self._create_row)
        app.router.add_post("/api/database/rows/table/{table_id}/batch/", self._create_rows)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        seen = Received(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            authorization=request.headers.get("Authorization"),
            content_type=request.headers.get("Content-Type"),
            body=body,
        )
        with self._lock:
            self.received.append(seen)
        response: web.StreamResponse = await handler(request)
        return response

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Token {self.token}":
            return _error(401, "ERROR_INVALID_TOKEN", "Token does not exist.")
        response: web.StreamResponse = await handler(request)
        return response

    async def _user_only(self, request: web.Request) -> web.Response:
        """An endpoint of Baserow's that takes a user's JWT, never a database token."""
        return web.json_response(
            {"detail": "Authentication credentials were not provided."}, status=401
        )

    async def _all_tables(self, request: web.Request) -> web.Response:
        return web.json_response(
            [
                {"id": table_id, "name": name, "order": order, "database_id": database.id}
                for database in self.databases
                for order, (table_id, name) in enumerate(database.tables.items(), start=1)
            ]
        )

    def _table_id(self, request: web.Request) -> int | None:
        wanted = request.match_info["table_id"]
        for database in self.databases:
            for table_id in database.tables:
                if str(table_id) == wanted:
                    return table_id
        return None

    def _store(self, table_id: int, values: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            row = {"id": self._next_row_id, "order": f"{self._next_row_id}.00000000000000000000"}
            self._next_row_id += 1
            row.update(values)
            self.rows.setdefault(table_id, []).append(row)
            return row

    def _refusal(self, request: web.Request) -> web.Response | int:
        """The table id, or the answer Baserow would give instead."""
        with self._lock:
            created = sum(len(rows) for rows in self.rows.values())
        if self.fail_rows_with is not None and created >= self.fail_after_rows:
            return web.Response(
                status=self.fail_rows_with,
                text="<h1>Server Error (500)</h1>",
                content_type="text/html",
            )
        table_id = self._table_id(request)
        if table_id is None:
            return _error(404, "ERROR_TABLE_DOES_NOT_EXIST", "The requested table does not exist.")
        return table_id

    async def _create_row(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if isinstance(refused, web.Response):
            return refused
        body = await request.json()
        if not isinstance(body, dict):
            return _error(400, "ERROR_REQUEST_BODY_VALIDATION", "must be an object")
        return web.json_response(self._store(refused, body))

    async def _create_rows(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if isinstance(refused, web.Response):
            return refused
        body = await request.json()
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            return _error(400, "ERROR_REQUEST_BODY_VALIDATION", {"items": "must be a list"})
        if len(items) > BATCH_LIMIT:
            return _error(
                400,
                "ERROR_REQUEST_BODY_VALIDATION",
                {"items": [{"error": f"Ensure this field has no more than {BATCH_LIMIT}."}]},
            )
        return web.json_response({"items": [self._store(refused, item) for item in items]})
