"""The task-template catalogue: Figranium's hosted preset list, from a configured URL.

Figranium fetches its own hub; this server ships no catalogue and asks one only when
``TEMPLATES_CATALOG_URL`` names it. The catalogue answers an array of presets at the URL
and one preset at ``<url>/<id>``. Every fetch goes through the outbound URL policy (as a
webhook does), bounded in size and time; the list is kept for a few minutes per gateway,
and a failed refresh falls back to the list last fetched, as Figranium's does.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from figranium_common.config import Config
from figranium_common.errors import FigraniumError, InvalidUrlError
from figranium_common.jsontypes import JsonObject, JsonValue
from figranium_common.outbound_http import safe_request

FETCH_TIMEOUT_SECONDS = 12.0
MAX_CATALOG_BYTES = 5 * 1024 * 1024
CACHE_SECONDS = 300.0


class CatalogError(FigraniumError):
    """The catalogue could not be read: ``code`` is Figranium's error code for it."""

    code = "TEMPLATE_CATALOG_UNAVAILABLE"


class TemplateNotFound(FigraniumError):
    code = "TEMPLATE_NOT_FOUND"


def is_preset(value: JsonValue) -> bool:
    """Figranium's test of a catalogue entry: an id, a title and a configuration object."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("id"), str)
        and isinstance(value.get("title"), str)
        and isinstance(value.get("configuration"), dict)
    )


@dataclass
class _Cached:
    items: list[JsonObject]
    expires_at: float


class TemplateCatalog:
    """One per gateway: the configured URL, the cached list, one refresh at a time."""

    def __init__(self, config: Config) -> None:
        self._url = (config.templates_catalog_url or "").rstrip("/") or None
        self._allow_private = config.allow_private_networks
        self._allow_metadata = config.allow_metadata_address
        self._cached: _Cached | None = None
        self._lock = asyncio.Lock()

    @property
    def configured(self) -> bool:
        return self._url is not None

    async def presets(self) -> list[JsonObject]:
        """Every preset; a fresh copy at most CACHE_SECONDS old, else the last one fetched."""
        async with self._lock:
            cached = self._cached
            if cached is not None and cached.expires_at > time.monotonic():
                return cached.items
            try:
                items = await self._fetch_list()
            except CatalogError:
                if cached is not None:
                    return cached.items
                raise
            self._cached = _Cached(items, time.monotonic() + CACHE_SECONDS)
            return items

    async def preset(self, template_id: str) -> JsonObject:
        """One preset, as the catalogue answers it now; TemplateNotFound when it has none."""
        status, value = await self._get(f"{self._base()}/{template_id}")
        if status == 404:
            raise TemplateNotFound(f"the catalogue has no template {template_id!r}")
        if status >= 400:
            raise CatalogError(f"the template catalogue answered HTTP {status}")
        if not is_preset(value) or not isinstance(value, dict) or value["id"] != template_id:
            raise CatalogError(
                "the template catalogue answered something that is not that template",
                code="TEMPLATE_CATALOG_INVALID",
            )
        return value

    async def _fetch_list(self) -> list[JsonObject]:
        status, value = await self._get(self._base())
        if status >= 400:
            raise CatalogError(f"the template catalogue answered HTTP {status}")
        if not isinstance(value, list) or not all(is_preset(item) for item in value):
            raise CatalogError(
                "the template catalogue did not answer a list of templates",
                code="TEMPLATE_CATALOG_INVALID",
            )
        return [item for item in value if isinstance(item, dict)]

    def _base(self) -> str:
        if self._url is None:
            raise CatalogError("no template catalogue is configured")
        return self._url

    async def _get(self, url: str) -> tuple[int, JsonValue]:
        try:
            response = await safe_request(
                "GET",
                url,
                allow_private=self._allow_private,
                allow_metadata=self._allow_metadata,
                headers={"Accept": "application/json"},
                timeout=FETCH_TIMEOUT_SECONDS,
                max_bytes=MAX_CATALOG_BYTES,
            )
        except InvalidUrlError as exc:
            raise CatalogError(
                f"the template catalogue's address is refused: {exc.details}"
            ) from None
        except FigraniumError as exc:
            timed_out = "timed out" in exc.details
            code = "TEMPLATE_CATALOG_TIMEOUT" if timed_out else "TEMPLATE_CATALOG_UNAVAILABLE"
            raise CatalogError(f"the template catalogue: {exc.details}", code=code) from None
        if response.status >= 400:
            return response.status, None
        try:
            return response.status, response.json()
        except (ValueError, RecursionError):
            raise CatalogError(
                "the template catalogue did not answer JSON", code="TEMPLATE_CATALOG_INVALID"
            ) from None
