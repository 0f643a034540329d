"""The API's own description: the OpenAPI document and the browsable page's files.

The page is Swagger UI from the ``swagger-ui-py`` wheel, served from the gateway itself:
nothing is loaded from a CDN, so the docs work offline and behind strict egress rules.
Its paths are public (auth.py reads :data:`PUBLIC_PATHS`); ``routes/docs.py`` serves them.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from figranium_gateway.openapi import build_spec

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
# Reachable without an API key.
PUBLIC_PATHS = frozenset(
    {
        "/api/openapi.json",
        "/api/docs",
        *(f"/api/docs/static/{name}" for name in (*STATIC_FILES, *OWN_FILES)),
    }
)
_OWN_DIR = Path(__file__).resolve().parent / "static"

# Relative URLs, so the page also works behind a reverse proxy that adds a path prefix.
# No inline script or style: the Content-Security-Policy (served_files) forbids them.
PAGE = """<!doctype html>
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


def doc_file(name: str) -> tuple[Path, str] | None:
    """The path and content type of a file the page loads; None for any other name."""
    folder = _OWN_DIR if name in OWN_FILES else _static_dir()
    content_type = OWN_FILES.get(name) or STATIC_FILES.get(name)
    if content_type is None or folder is None or not (folder / name).is_file():
        return None
    return folder / name, content_type
