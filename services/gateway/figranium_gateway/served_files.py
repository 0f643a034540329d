"""Headers for stored files (captures, downloads) and for every HTML page the gateway serves.

Stored files come from pages nobody here controls, and the gateway serves them from the
API's own origin, where the API key lives (``?key=``, the docs page's localStorage). So
a stored file is only ever shown inline when its type cannot run script (PNG, JPEG,
WebM); anything else is a download of an inert type, and browsers are told not to sniff.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import quote

from aiohttp import web

# By the name's suffix only, never the host's mime.types: what is not listed is a download.
INLINE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webm": "video/webm",
}
DOWNLOAD_TYPE = "application/octet-stream"

# For HTML the gateway writes itself: scripts, styles and images from its own origin only
# (Swagger UI's CSS draws icons from data: URLs), no plugins, no framing, no <base>.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

# What an old-style `filename="..."` may hold: printable ASCII without quote and backslash.
_UNSAFE_FALLBACK = re.compile(r'[^\x20-\x7e]|["\\]')


def file_headers(name: str) -> dict[str, str]:
    """The Content-Type, Content-Disposition and nosniff headers for a stored file."""
    inline = INLINE_TYPES.get(PurePosixPath(name).suffix.lower())
    if inline is not None:
        return {"Content-Type": inline, "X-Content-Type-Options": "nosniff"}
    return {
        "Content-Type": DOWNLOAD_TYPE,
        "Content-Disposition": attachment(name),
        "X-Content-Type-Options": "nosniff",
    }


def attachment(name: str) -> str:
    """``attachment`` with an ASCII ``filename`` and the exact name as RFC 5987 ``filename*``."""
    fallback = _UNSAFE_FALLBACK.sub("_", name).strip() or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


async def secure_html(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every HTML answer gets the CSP; every answer gets nosniff.

    A signal rather than a middleware so streamed answers and those built by other
    middlewares are covered too.
    """
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if response.content_type in ("text/html", "application/xhtml+xml"):
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["Referrer-Policy"] = "no-referrer"
