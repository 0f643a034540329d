"""``/api/openapi.json`` and the browsable documentation page at ``/api/docs``."""

from __future__ import annotations

from aiohttp import web

from figranium_gateway import api_docs
from figranium_gateway.errors import ApiError
from figranium_gateway.routing import Router

api = Router("docs")


@api.get(
    "/api/openapi.json",
    "This API's OpenAPI 3.1 document",
    responses={200: None},
    content_types={200: "application/json"},
    public=True,
)
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=api_docs.spec_bytes(), content_type="application/json")


@api.get(
    "/api/docs",
    "Browsable API documentation (Swagger UI, served locally)",
    responses={200: None},
    content_types={200: "text/html"},
    public=True,
)
async def docs_page(request: web.Request) -> web.Response:
    return web.Response(text=api_docs.PAGE, content_type="text/html")


@api.get(
    "/api/docs/static/{name}",
    "A static file of the documentation page",
    responses={200: None, 404: None},
    content_types={200: "*/*"},
    public=True,
)
async def docs_static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    found = api_docs.doc_file(name)
    if found is None:
        raise ApiError(404, "NOT_FOUND", f"no documentation file {name!r}")
    path, content_type = found
    return web.FileResponse(
        path, headers={"Content-Type": content_type, "Cache-Control": "public, max-age=86400"}
    )
