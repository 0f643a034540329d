"""One declaration serves a route and documents it."""

from __future__ import annotations

from aiohttp import web

from figranium_gateway import openapi
from figranium_gateway.routing import Router


def test_a_declared_route_is_served_and_documented_with_the_routers_tag() -> None:
    router = Router("things")
    recorded = len(openapi.ROUTES)

    @router.patch("/api/things/{thing_id:[0-9]+}", "Change a thing", responses={200: None})
    async def change(request: web.Request) -> web.Response:
        return web.json_response({})

    @router.get("/api/things", "All things", tag="lists")
    async def listing(request: web.Request) -> web.Response:
        return web.json_response([])

    try:
        table = [r for r in router.table if isinstance(r, web.RouteDef)]
        served = [(r.method, r.path, r.handler) for r in table]
        assert served == [
            ("PATCH", "/api/things/{thing_id:[0-9]+}", change),
            ("GET", "/api/things", listing),
        ]
        patch, get = openapi.ROUTES[recorded:]
        assert (patch.method, patch.tag, patch.summary, patch.responses) == (
            "patch",
            "things",
            "Change a thing",
            {200: None},
        )
        assert (get.method, get.path, get.tag) == ("get", "/api/things", "lists")
        assert openapi.openapi_path(patch.path) == "/api/things/{thing_id}"
    finally:
        del openapi.ROUTES[recorded:]
