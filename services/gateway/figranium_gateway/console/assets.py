"""The console's static files under fingerprinted names: ``console.3f2a9c1b7e04.css``.

The name carries a digest of the content, so a file can be cached for a year
(``immutable``) and a new release is fetched at once. A module importing a sibling
(``from "./csrf.js"``) is rewritten to the sibling's fingerprinted name before its own
digest is taken, so a change anywhere reaches every importer's name too.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

STATIC_DIR = Path(__file__).resolve().parent / "static"
URL_PREFIX = "/console/static/"
CACHE_CONTROL = "public, max-age=31536000, immutable"
CONTENT_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
_IMPORT = re.compile(r"""(\bfrom\s+|\bimport\s*\(\s*|\bimport\s+)(["'])\./([\w.-]+)\2""")
_DIGEST_CHARS = 12


@dataclass(frozen=True)
class Asset:
    """One served file: its fingerprinted name, bytes and content type."""

    name: str
    body: bytes
    content_type: str


class Assets:
    """Every file of a folder, read once, by its plain and its fingerprinted name."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._by_plain: dict[str, Asset] = {}
        for path in sorted(folder.iterdir()):
            if path.suffix in CONTENT_TYPES:
                self._load(path.name, ())
        self._by_served = {asset.name: asset for asset in self._by_plain.values()}

    def _load(self, plain: str, importers: tuple[str, ...]) -> Asset:
        if plain in importers:
            raise ValueError(f"static modules import each other in a cycle: {plain}")
        known = self._by_plain.get(plain)
        if known is not None:
            return known
        path = self._folder / plain
        body = path.read_bytes()
        if path.suffix == ".js":
            text = _IMPORT.sub(
                lambda m: m[1] + m[2] + "./" + self._load(m[3], (*importers, plain)).name + m[2],
                body.decode(),
            )
            body = text.encode()
        digest = hashlib.sha256(body).hexdigest()[:_DIGEST_CHARS]
        stem, suffix = PurePosixPath(plain).stem, PurePosixPath(plain).suffix
        asset = Asset(f"{stem}.{digest}{suffix}", body, CONTENT_TYPES[suffix])
        self._by_plain[plain] = asset
        return asset

    def url(self, plain: str) -> str:
        """The fingerprinted URL of a file, as templates link it; KeyError if unknown."""
        return URL_PREFIX + self._by_plain[plain].name

    def served(self, name: str) -> Asset | None:
        """The file answered for a fingerprinted name; None for any other name."""
        return self._by_served.get(name)


@functools.cache
def console_assets() -> Assets:
    return Assets(STATIC_DIR)
