"""Declaring a route once: its method and path, the handler, and its OpenAPI description.

Each route module has one :class:`Router`; ``@api.patch("/api/tasks/{task_id}", ...)``
adds the handler to the module's aiohttp route table and records what it accepts and
answers for the OpenAPI document (``openapi.ROUTES``), so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TypedDict, TypeVar, Unpack

from aiohttp import web
from pydantic import BaseModel

from figranium_gateway.errors import Handler
from figranium_gateway.openapi import ROUTES, RouteDoc

H = TypeVar("H", bound=Handler)


class RouteOptions(TypedDict, total=False):
    """What the OpenAPI document says of a route besides its method, path and summary.

    4xx answers without a model default to ``ErrorBody``; ``public`` routes need no key;
    ``content_types`` names the media type of answers that are not JSON.
    """

    tag: str  # the router's tag when not given
    body: type[BaseModel] | None
    responses: dict[int, type[BaseModel] | None]
    query: dict[str, str]  # name → description
    public: bool
    content_types: dict[int, str]


class Router:
    """One route module's routes: an aiohttp route table and their OpenAPI records."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.table = web.RouteTableDef()

    def route(
        self, method: str, path: str, summary: str, **options: Unpack[RouteOptions]
    ) -> Callable[[H], H]:
        """Serve the handler at ``method path`` and document it; the handler is unchanged.

        ``path`` is aiohttp's (a ``{name:regex}`` part is written ``{name}`` in the document).
        """
        doc = replace(
            RouteDoc(method=method.lower(), path=path, summary=summary, tag=self.tag), **options
        )

        def register(handler: H) -> H:
            ROUTES.append(doc)
            self.table.route(method, path)(handler)
            return handler

        return register

    def get(self, path: str, summary: str, **options: Unpack[RouteOptions]) -> Callable[[H], H]:
        return self.route("GET", path, summary, **options)

    def post(self, path: str, summary: str, **options: Unpack[RouteOptions]) -> Callable[[H], H]:
        return self.route("POST", path, summary, **options)

    def put(self, path: str, summary: str, **options: Unpack[RouteOptions]) -> Callable[[H], H]:
        return self.route("PUT", path, summary, **options)

    def patch(self, path: str, summary: str, **options: Unpack[RouteOptions]) -> Callable[[H], H]:
        return self.route("PATCH", path, summary, **options)

    def delete(self, path: str, summary: str, **options: Unpack[RouteOptions]) -> Callable[[H], H]:
        return self.route("DELETE", path, summary, **options)
