"""ZIP archives of cabinet items, on disk: the member names a zip gives the items, and the
safe extraction of a ZIP a page handed over (Figranium's cabinet zip and unzip).

Nothing here holds a file whole in memory: members are written from files and extracted
into files chunk by chunk. Extraction is bounded (:mod:`zip_bounds`) and refuses entry
names that could climb out of their folder or mean something else on another system,
since a folder's files are downloaded again as a ZIP.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import zipfile
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from figranium_common.jsontypes import JsonObject
from figranium_gateway.zip_bounds import ArchiveError, Expansion, ZipBounds, checked_infos

ZIP_SUFFIX: Final = ".zip"
UNZIP_MAX_ENTRIES: Final = 10_000
UNZIP_MAX_BYTES: Final = 1024**3  # every file, uncompressed (and at most a cabinet's quota)
MAX_PATH_CHARS: Final = 1024
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The bytes of an object of the cabinets bucket, chunk by chunk.
ObjectReader = Callable[[str], AsyncIterator[bytes]]


@dataclass(frozen=True)
class Member:
    """One file of an archive being built: its name in the ZIP, its object and size."""

    arcname: str
    object: str
    size: int


def members(item: JsonObject) -> list[Member]:
    """What an item puts in a ZIP: a file under its name, a folder's files under
    ``<folder>/<path>`` (Figranium's layout). ``item`` holds the row's ``name``,
    ``object`` and ``entries``."""
    name = str(item["name"])
    if isinstance(item.get("object"), str):
        return [Member(name, str(item["object"]), int(str(item["size"])))]
    entries = item.get("entries")
    listed = entries if isinstance(entries, list) else []
    return [
        Member(f"{name}/{entry['path']}", str(entry["object"]), int(str(entry["size"])))
        for entry in listed
        if isinstance(entry, dict)
    ]


class _Pending:
    """Where a ZIP being streamed is written: what it wrote since last taken."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes, /) -> int:
        self.buffer += data
        return len(data)

    def flush(self) -> None:
        """Nothing to flush: :meth:`take` hands the bytes on."""

    def close(self) -> None:
        """Nothing to close: the stream ends with the last :meth:`take`."""

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


async def zip_stream(members: Iterable[Member], read: ObjectReader) -> AsyncIterator[bytes]:
    """The ZIP of ``members`` (deflated), piece by piece as each is read: a member's bytes
    are read with ``read`` chunk by chunk, and compressed off the event loop."""
    pending = _Pending()
    when = time.localtime()[:6]
    with zipfile.ZipFile(pending, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for member in members:
            info = zipfile.ZipInfo(member.arcname, date_time=when)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.file_size = member.size  # Zip64 from the start when the size needs it
            with zf.open(info, "w") as handle:
                async for chunk in read(member.object):
                    await asyncio.to_thread(handle.write, chunk)
                    if pending.buffer:
                        yield pending.take()
    yield pending.take()


def unzipped_name(name: str) -> str:
    """The folder a ZIP item becomes: its name without ``.zip``."""
    return name[: -len(ZIP_SUFFIX)] if name.lower().endswith(ZIP_SUFFIX) else name


def entry_path(name: str) -> str | None:
    """The path of a ZIP entry inside its folder, ``/``-separated; None for a directory.

    Refused (``ARCHIVE_UNSAFE_NAME``): control characters (NUL included), absolute paths,
    drive letters, and ``..`` anywhere; backslashes count as separators, as Windows
    tools write them.
    """
    if _CONTROL.search(name) or len(name) > MAX_PATH_CHARS:
        raise ArchiveError("ARCHIVE_UNSAFE_NAME", f"entry name {name!r} is not allowed")
    path = name.replace("\\", "/")
    parts = path.split("/")
    if path.startswith("/") or _DRIVE.match(path) or ".." in parts:
        raise ArchiveError("ARCHIVE_UNSAFE_NAME", f"entry name {name!r} climbs out of its folder")
    if path.endswith("/"):
        return None
    kept = [part for part in parts if part not in ("", ".")]
    return "/".join(kept) if kept else None


@dataclass(frozen=True)
class ExtractedFile:
    """One file of an unzipped archive, in a temporary file until it is stored."""

    path: str  # inside the folder
    file: Path
    size: int
    sha256: str


def extract(archive: Path, into: Path, bounds: ZipBounds) -> list[ExtractedFile]:
    """Every file of the ZIP at ``archive``, written into ``into`` (numbered in entry
    order), or :class:`ArchiveError` with nothing usable: ``NOT_A_ZIP``,
    ``ARCHIVE_UNSAFE_NAME`` (a name refused by :func:`entry_path`, twice the same path,
    a symbolic link), ``ARCHIVE_ENCRYPTED``, ``ARCHIVE_TOO_MANY_ENTRIES``,
    ``ARCHIVE_BOMB`` (past ``bounds``, claimed or real), ``INVALID_ZIP`` (a damaged
    entry)."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ArchiveError("NOT_A_ZIP", f"the item is not a ZIP archive ({exc})") from None
    with zf:
        files = _planned(checked_infos(zf, bounds))
        expansion = Expansion(bounds, archive.stat().st_size)
        extracted = []
        for index, (path, info) in enumerate(files):
            target = into / str(index)
            digest = hashlib.sha256()
            size = 0
            with target.open("wb") as out:
                for chunk in expansion.read(zf, info):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            extracted.append(ExtractedFile(path, target, size, digest.hexdigest()))
        return extracted


def _planned(infos: Iterable[zipfile.ZipInfo]) -> list[tuple[str, zipfile.ZipInfo]]:
    """The files to extract with their paths: names checked, directories left out."""
    files: list[tuple[str, zipfile.ZipInfo]] = []
    seen: set[str] = set()
    for info in infos:
        path = entry_path(info.filename)
        if path is None:
            continue
        if info.flag_bits & 0x1:
            raise ArchiveError("ARCHIVE_ENCRYPTED", f"entry {info.filename!r} is encrypted")
        if path in seen:
            raise ArchiveError("ARCHIVE_UNSAFE_NAME", f"entry {path!r} appears twice")
        seen.add(path)
        files.append((path, info))
    return files


def file_digest(path: Path) -> str:
    """The hex SHA-256 of the file at ``path``, read in chunks."""
    with path.open("rb") as source:
        return hashlib.file_digest(source, "sha256").hexdigest()
