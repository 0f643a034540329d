"""Types for values that are arbitrary JSON: task variables' values, extracted data,
stored ``jsonb`` columns, request bodies; and the browser state a run starts from.

``JsonValue`` is what ``json.dumps`` takes and ``json.loads`` returns. Its arrays and
objects are read-only sequences and mappings, so that a ``list[str]`` or a
``dict[str, int]`` is JSON too; code that changes one narrows it with ``isinstance(value,
list)`` or ``dict`` first. ``JsonObject`` is an object being built. Model fields use the
``Given`` aliases: the type checker sees the JSON type, while pydantic keeps the value as
given, as it always has (validating arbitrary JSON would copy every extracted row and
refuse values that older messages or callers may carry).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypedDict, TypeGuard

__all__ = [
    "GivenJson",
    "GivenObject",
    "GivenStorageState",
    "JsonMapping",
    "JsonObject",
    "JsonValue",
    "StorageState",
    "is_storage_state",
]

JsonValue: TypeAlias = (
    Mapping[str, "JsonValue"] | Sequence["JsonValue"] | str | int | float | bool | None
)
JsonObject: TypeAlias = dict[str, JsonValue]
# What a function that only reads an object takes: a dict[str, str] is one too.
JsonMapping: TypeAlias = Mapping[str, JsonValue]


class Cookie(TypedDict, total=False):
    name: str
    value: str
    domain: str
    path: str
    expires: float
    httpOnly: bool
    secure: bool
    sameSite: Literal["Lax", "None", "Strict"]


class LocalStorageEntry(TypedDict):
    name: str
    value: str


class OriginState(TypedDict):
    origin: str
    localStorage: list[LocalStorageEntry]


class StorageState(TypedDict, total=False):
    """A browser context's cookies and local storage, as Playwright gives and takes them."""

    cookies: list[Cookie]
    origins: list[OriginState]


def is_storage_state(value: object) -> TypeGuard[StorageState]:
    """Whether ``value`` may be handed to Playwright as a storage state: an object. Its
    fields are Playwright's to check (a state it refuses starts the run clean)."""
    return isinstance(value, dict)


if TYPE_CHECKING:
    GivenJson: TypeAlias = JsonValue
    GivenObject: TypeAlias = JsonObject
    GivenStorageState: TypeAlias = StorageState
else:
    GivenJson = Any
    GivenObject = dict[str, Any]
    GivenStorageState = dict[str, Any]
