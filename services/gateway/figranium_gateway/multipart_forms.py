"""Multipart forms read in two steps: the console's CSRF check reads a form's first field
(its token) and the handler then streams the file after it, from the same reader, so the
file is never held whole nor read before the token checks out."""

from __future__ import annotations

from aiohttp import BodyPartReader, MultipartReader, web

_READER = "multipart.reader"  # request key: the reader a first field was read from
# A token is 64 characters; a first field longer than this is not one.
FIELD_LIMIT = 1024


async def form_reader(request: web.Request) -> MultipartReader:
    """The body's multipart reader: the one a first field was read from, if any."""
    reader: MultipartReader | None = request.get(_READER)
    if reader is None:
        reader = await request.multipart()
        request[_READER] = reader
    return reader


async def first_field(request: web.Request, name: str) -> str:
    """The value of the form's first part when it is the plain field ``name`` (at most
    FIELD_LIMIT bytes); else "". Only that part is read."""
    try:
        part = await (await form_reader(request)).next()
        if not isinstance(part, BodyPartReader) or part.name != name or part.filename:
            return ""
        value = b""
        while chunk := await part.read_chunk(FIELD_LIMIT):
            value += chunk
            if len(value) > FIELD_LIMIT:
                return ""
    except (ValueError, AssertionError, RuntimeError):  # aiohttp's malformed-body errors
        return ""
    return value.decode("utf-8", errors="replace")
