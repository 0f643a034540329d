"""Cabinet item names as Figranium makes them: sanitised from what a site or user suggests,
and unique within their cabinet, ignoring case (``x.csv``, then ``x (2).csv``).

Shared by the gateway's cabinet API and the ingester, which name uploads and downloads.
"""

from __future__ import annotations

import re
from collections.abc import Collection

MAX_NAME_LENGTH = 180
FALLBACK_NAME = "download"

# Separators, Windows' reserved characters and control characters.
_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


def safe_name(name: str | None, fallback: str = FALLBACK_NAME) -> str:
    """``name``'s last path part with unsafe characters replaced by ``_``, trimmed, at most
    MAX_NAME_LENGTH characters; ``fallback`` when nothing (or only ``.``/``..``) is left."""
    base = (name or fallback).rstrip("/").rsplit("/", 1)[-1]
    value = _UNSAFE.sub("_", base).strip()[:MAX_NAME_LENGTH]
    return fallback if value in ("", ".", "..") else value


def split_extension(name: str) -> tuple[str, str]:
    """``name`` as stem and extension (``"x.tar.gz"`` → ``("x.tar", ".gz")``); a name whose
    only dots lead it (``.env``) has none."""
    dot = name.rfind(".")
    if dot <= 0 or not name[:dot].strip("."):
        return name, ""
    return name[:dot], name[dot:]


def unique_name(name: str, taken: Collection[str]) -> str:
    """``name``, or ``stem (n)ext`` with the smallest n from 2 not in ``taken`` (names
    already in the cabinet, lower-cased)."""
    stem, ext = split_extension(name)
    candidate, index = name, 2
    while candidate.lower() in taken:
        candidate = f"{stem} ({index}){ext}"
        index += 1
    return candidate
