"""Reading ZIP archives from outside within bounds: entry count, links, and how far the
entries expand (zip bombs), by their headers' claims and by the bytes really read.

Shared by the settings import (``backup.archive``) and cabinet unzip
(``cabinet_archives``); each says its own bounds (:class:`ZipBounds`). A fault is an
:class:`ArchiveError` whose code names it, answered with a 400.
"""

from __future__ import annotations

import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

from figranium_common.errors import FigraniumError

READ_CHUNK = 256 * 1024


class ArchiveError(FigraniumError):
    """An archive refused as a whole; ``code`` says why (answered with a 400)."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(details, code=code)


@dataclass(frozen=True)
class ZipBounds:
    """How far an archive may go.

    ``max_ratio`` bounds what an entry expands to against its compressed size (deflate
    reaches ~1000:1 on repeated bytes; real files stay far below 200:1), and the whole
    archive's expansion against the archive's size; entries (and archives) expanding to
    at most ``ratio_floor`` bytes may compress as well as they like.
    """

    max_entries: int
    max_total_bytes: int  # every entry, uncompressed
    max_ratio: int = 200
    ratio_floor: int = 1024 * 1024


def checked_infos(zf: zipfile.ZipFile, bounds: ZipBounds) -> list[zipfile.ZipInfo]:
    """The archive's entries, once their count, kinds and claimed sizes pass ``bounds``
    (names are for the caller to judge)."""
    infos = zf.infolist()
    if len(infos) > bounds.max_entries:
        raise ArchiveError("ARCHIVE_TOO_MANY_ENTRIES", f"more than {bounds.max_entries} entries")
    claimed = 0
    for info in infos:
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ArchiveError("ARCHIVE_UNSAFE_NAME", f"entry {info.filename!r} is a symbolic link")
        _check_ratio(info.filename, info.file_size, info.compress_size, bounds)
        claimed += info.file_size
        if claimed > bounds.max_total_bytes:
            raise ArchiveError(
                "ARCHIVE_BOMB", f"the entries expand past {bounds.max_total_bytes} bytes"
            )
    return infos


class Expansion:
    """The bytes an archive's entries really expand to while they are read, whatever their
    headers claim: an entry past its ratio, or all of them past the total or the archive's
    ratio, stop the reading with ``ARCHIVE_BOMB``."""

    def __init__(self, bounds: ZipBounds, archive_bytes: int) -> None:
        self.bounds = bounds
        self.archive_bytes = archive_bytes
        self.total = 0

    def read(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
        """The entry's bytes, chunk by chunk, counted as they come."""
        read = 0
        try:
            with zf.open(info) as handle:
                while chunk := handle.read(READ_CHUNK):
                    read += len(chunk)
                    self.total += len(chunk)
                    _check_ratio(info.filename, read, info.compress_size, self.bounds)
                    self._check_total()
                    yield chunk
        except (zipfile.BadZipFile, NotImplementedError, EOFError, ValueError) as exc:
            raise ArchiveError("INVALID_ZIP", f"{info.filename}: {exc}") from None

    def _check_total(self) -> None:
        if self.total > self.bounds.max_total_bytes:
            raise ArchiveError(
                "ARCHIVE_BOMB", f"the entries expand past {self.bounds.max_total_bytes} bytes"
            )
        _check_ratio("the archive", self.total, self.archive_bytes, self.bounds)


def _check_ratio(name: str, expanded: int, compressed: int, bounds: ZipBounds) -> None:
    if expanded > bounds.ratio_floor and expanded > max(compressed, 1) * bounds.max_ratio:
        raise ArchiveError("ARCHIVE_BOMB", f"{name!r} expands more than {bounds.max_ratio}:1")
