"""The API's own description: ``/api/openapi.json`` and a browsable page at ``/api/docs``.

The page is Swagger UI from the ``swagger-ui-py`` wheel, served from the gateway itself:
nothing is loaded from a CDN, so the docs work offline and behind strict egress rules.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from aiohttp import web

from figranium_gateway.errors import ApiError
from figranium_gateway.openapi import build_spec, documented

routes = web.RouteTableDef()

TITLE = "Figranium"
# The Swagger UI files the page loads; nothing else from the package is served.
STATIC_FILES: dict[str, str] = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
# The gateway's own files for the page (its start-up script and style), in static/.
OWN_FILES: dict[str, str] = {"docs-init.js": "text/javascript", "docs.css": "text/css"}
# Reachable without an API key (auth.py's PUBLIC_PATHS should include these).
PUBLIC_PATHS = frozenset(
    {
        "/api/openapi.json",
        "/api/docs",
        *(f"/api/docs/static/{name}" for name in (*STATIC_FILES, *OWN_FILES)),
    }
)
_OWN_DIR = Path(__file__).resolve().parent.parent / "static"

# Relative URLs, so the page also works behind a reverse proxy that adds a path prefix.
# No inline script or style: the Content-Security-Policy (served_files) forbids them.
_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Figranium API</title>
  <link rel="stylesheet" href="docs/static/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/static/favicon-32x32.png" sizes="32x32">
  <link rel="stylesheet" href="docs/static/docs.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/static/swagger-ui-bundle.js"></script>
  <script src="docs/static/docs-init.js"></script>
</body>
</html>
"""


def _gateway_version() -> str:
    try:
        return version("figranium-gateway")
    except PackageNotFoundError:
        return "0.0.0"


@functools.cache
def spec_bytes() -> bytes:
    """Built on first request, when every route module has recorded its routes."""
    return json.dumps(build_spec(TITLE, _gateway_version())).encode()


@functools.cache
def _static_dir() -> Path | None:
    # find_spec locates the package without importing it (its __init__ pulls in jinja2).
    found = importlib.util.find_spec("swagger_ui")
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations))) / "static"


@routes.get("/api/openapi.json")
@documented(
    "GET",
    "/api/openapi.json",
    "This API's OpenAPI 3.1 document",
    tag="docs",
    responses={200: None},
    content_types={200: "application/json"},
    public=True,
)
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=spec_bytes(), content_type="application/json")


@routes.get("/api/docs")
@documented(
    "GET",
    "/api/docs",
    "Browsable API documentation (Swagger UI, served locally)",
    tag="docs",
    responses={200: None},
    content_types={200: "text/html"},
    public=True,
)
async def docs_page(request: web.Request) -> web.Response:
    return web.Response(text=_PAGE, content_type="text/html")


@routes.get("/api/docs/static/{name}")
@documented(
    "GET",
    "/api/docs/static/{name}",
    "A static file of the documentation page",
    tag="docs",
    responses={200: None, 404: None},
    content_types={200: "*/*"},
    public=True,
)
async def docs_static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    folder = _OWN_DIR if name in OWN_FILES else _static_dir()
    content_type = OWN_FILES.get(name) or STATIC_FILES.get(name)
    if content_type is None or folder is None or not (folder / name).is_file():
        raise ApiError(404, "NOT_FOUND", f"no documentation file {name!r}")
    return web.FileResponse(
        folder / name,
        headers={"Content-Type": content_type, "Cache-Control": "public, max-age=86400"},
    )
