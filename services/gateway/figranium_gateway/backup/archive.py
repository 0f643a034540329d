"""The export archive: Figranium's ZIP layout, read defensively and written the same way.

Figranium's export is a ZIP holding ``manifest.json`` (``{"exportedAt", "included"}``) and
one JSON file per included kind: ``tasks.json`` is the array of tasks (each with its
``schedule`` and ``versions``), ``executions.json``, ``api-keys.json``, ``cookies.json`` and
a ``captures/`` folder. This server writes the same layout, so either side reads the other's
tasks, and adds two kinds of its own, ``proxies.json`` and ``settings.json`` (objects of
setting name → value), plus ``schedules`` in ``included`` when the tasks keep theirs.
The manifest also says how secrets were sealed (see ``sealing``).

An archive comes from outside: its size, entry count, names, compression ratio and JSON are
checked before anything is used, and any fault is an :class:`ArchiveError` naming it.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from typing import Final

from figranium_common.jsontypes import JsonObject, JsonValue
from figranium_gateway.zip_bounds import ArchiveError as ArchiveError
from figranium_gateway.zip_bounds import ZipBounds, checked_infos

MANIFEST: Final = "manifest.json"
FORMAT: Final = "figranium-python"
FORMAT_VERSION: Final = 1
# What this server exports and imports; ``schedules`` travel inside the tasks.
KINDS: Final[tuple[str, ...]] = ("tasks", "schedules", "proxies", "settings")
# Figranium's other kinds: recognised in an archive, never imported here.
FIGRANIUM_ONLY: Final[tuple[str, ...]] = ("executions", "captures", "apiKeys", "cookies")
FILES: Final = {"tasks": "tasks.json", "proxies": "proxies.json", "settings": "settings.json"}

MAX_ARCHIVE_BYTES: Final = 32 * 1024 * 1024
MAX_ENTRIES: Final = 2000
MAX_ENTRY_BYTES: Final = 64 * 1024 * 1024  # one JSON file, uncompressed
MAX_TOTAL_BYTES: Final = 256 * 1024 * 1024  # every entry, uncompressed
MAX_RATIO: Final = 200  # real JSON stays far below
_BOUNDS: Final = ZipBounds(
    max_entries=MAX_ENTRIES, max_total_bytes=MAX_TOTAL_BYTES, max_ratio=MAX_RATIO
)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._ ()@+-]+(/[A-Za-z0-9._ ()@+-]+)*/?$")


@dataclass
class Archive:
    """An archive's contents; a kind left out is None."""

    included: list[str]  # kinds of this server, as the manifest lists them
    exported_at: str | None = None
    secrets: JsonObject | None = None  # how secrets were sealed; None: in clear (Figranium)
    tasks: list[JsonObject] | None = None
    proxies: JsonObject | None = None
    settings: JsonObject | None = None
    unsupported: list[str] = field(default_factory=list)  # Figranium kinds present

    @property
    def available(self) -> list[str]:
        """What an import may apply. A Figranium archive does not list ``schedules``: its
        tasks carry them, so they are available whenever a task has one."""
        kinds = [kind for kind in KINDS if kind in self.included]
        has_schedule = any(isinstance(task.get("schedule"), dict) for task in self.tasks or [])
        if "schedules" not in kinds and "tasks" in kinds and has_schedule:
            kinds.insert(kinds.index("tasks") + 1, "schedules")
        return kinds


# --- writing ------------------------------------------------------------------------------


def write_archive(archive: Archive) -> bytes:
    """The ZIP of ``archive`` (deflated), manifest first."""
    manifest: JsonObject = {
        "exportedAt": archive.exported_at,
        "included": list(archive.included),
        "format": FORMAT,
        "formatVersion": FORMAT_VERSION,
    }
    if archive.secrets is not None:
        manifest["secrets"] = archive.secrets
    contents: dict[str, JsonValue] = {MANIFEST: manifest}
    if archive.tasks is not None:
        contents[FILES["tasks"]] = list(archive.tasks)
    if archive.proxies is not None:
        contents[FILES["proxies"]] = archive.proxies
    if archive.settings is not None:
        contents[FILES["settings"]] = archive.settings
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name, value in contents.items():
            zf.writestr(name, json.dumps(value, indent=2, ensure_ascii=False))
    return buffer.getvalue()


# --- reading ------------------------------------------------------------------------------


def read_archive(data: bytes) -> Archive:
    """The contents of a ZIP sent for import, or :class:`ArchiveError`."""
    if not data:
        raise ArchiveError("IMPORT_FILE_REQUIRED", "send the ZIP archive as the request body")
    if len(data) > MAX_ARCHIVE_BYTES:
        raise ArchiveError("ARCHIVE_TOO_LARGE", f"the archive is over {MAX_ARCHIVE_BYTES} bytes")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ArchiveError("INVALID_FIGRANIUM_EXPORT", f"not a ZIP archive ({exc})") from None
    with zf:
        entries = _checked_entries(zf)
        if MANIFEST not in entries:
            raise ArchiveError("INVALID_FIGRANIUM_EXPORT", "the archive has no manifest.json")
        manifest = _json_entry(zf, entries[MANIFEST])
        if not isinstance(manifest, dict):
            raise ArchiveError("INVALID_FIGRANIUM_EXPORT", "manifest.json is not an object")
        listed = manifest.get("included")
        included = [k for k in listed if isinstance(k, str)] if isinstance(listed, list) else []
        archive = Archive(
            included=[kind for kind in KINDS if kind in included],
            exported_at=_text(manifest.get("exportedAt")),
            secrets=_object(manifest.get("secrets"), "manifest.json secrets"),
            unsupported=[kind for kind in FIGRANIUM_ONLY if kind in included],
        )
        if "tasks" in archive.included:
            archive.tasks = _tasks(_json_entry(zf, _needed(entries, "tasks")))
        if "proxies" in archive.included:
            archive.proxies = _object(_json_entry(zf, _needed(entries, "proxies")), "proxies.json")
        if "settings" in archive.included:
            archive.settings = _object(
                _json_entry(zf, _needed(entries, "settings")), "settings.json"
            )
        return archive


def _checked_entries(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Every entry by name, once each: count, names, kinds and sizes within the limits."""
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in checked_infos(zf, _BOUNDS):
        name = info.filename
        if ".." in name.split("/") or not _SAFE_NAME.match(name):
            raise ArchiveError("ARCHIVE_UNSAFE_NAME", f"entry name {name!r} is not allowed")
        if name in entries:
            raise ArchiveError("ARCHIVE_UNSAFE_NAME", f"entry {name!r} appears twice")
        if info.flag_bits & 0x1:
            raise ArchiveError("INVALID_FIGRANIUM_EXPORT", f"entry {name!r} is encrypted")
        entries[name] = info
    return entries


def _needed(entries: dict[str, zipfile.ZipInfo], kind: str) -> zipfile.ZipInfo:
    name = FILES[kind]
    if name not in entries:
        raise ArchiveError(
            "INVALID_FIGRANIUM_EXPORT", f"the manifest lists {kind} but {name} is missing"
        )
    return entries[name]


def _json_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> JsonValue:
    """The entry's JSON, read at most MAX_ENTRY_BYTES whatever its header claims."""
    if info.file_size > MAX_ENTRY_BYTES:
        raise ArchiveError("ARCHIVE_TOO_LARGE", f"{info.filename} is over {MAX_ENTRY_BYTES} bytes")
    try:
        with zf.open(info) as handle:
            raw = handle.read(MAX_ENTRY_BYTES + 1)
    except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError, ValueError) as exc:
        raise ArchiveError("INVALID_FIGRANIUM_EXPORT", f"{info.filename}: {exc}") from None
    if len(raw) > MAX_ENTRY_BYTES:
        raise ArchiveError("ARCHIVE_BOMB", f"{info.filename} expands past {MAX_ENTRY_BYTES} bytes")
    try:
        value: JsonValue = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ArchiveError(
            "INVALID_FIGRANIUM_EXPORT", f"{info.filename}: not JSON ({exc})"
        ) from None
    return value


def _tasks(value: JsonValue) -> list[JsonObject]:
    if not isinstance(value, list) or not all(isinstance(task, dict) for task in value):
        raise ArchiveError("INVALID_FIGRANIUM_EXPORT", "tasks.json is not an array of tasks")
    tasks = [task for task in value if isinstance(task, dict)]
    for index, task in enumerate(tasks):
        if not isinstance(task.get("id"), str) or not task["id"]:
            raise ArchiveError("INVALID_FIGRANIUM_EXPORT", f"tasks.json[{index}] has no id")
    if len({task["id"] for task in tasks}) != len(tasks):
        raise ArchiveError("INVALID_FIGRANIUM_EXPORT", "tasks.json holds a task id twice")
    return tasks


def _object(value: JsonValue, where: str) -> JsonObject | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ArchiveError("INVALID_FIGRANIUM_EXPORT", f"{where} is not an object")
    return value


def _text(value: JsonValue) -> str | None:
    return value if isinstance(value, str) else None
