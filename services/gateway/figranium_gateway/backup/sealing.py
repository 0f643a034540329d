"""Secrets in an archive: sealed under a key derived from the user's passphrase, or masked.

An archive leaves the server, so no secret is written in clear: with a passphrase each
secret becomes ``enc:export:v1:<base64url(nonce ‖ AES-256-GCM ciphertext ‖ tag)>`` under a
key stretched from the passphrase with scrypt (salt and cost in the manifest), the place it
came from (``task:<id>:<variable>``, ``setting:<name>``) as associated data. The manifest
holds a sealed check value, so a wrong passphrase is refused before anything is read.
Without a passphrase every secret is written as the mask ``********``; importing such an
archive keeps the secret already stored at that place (:func:`fill_masks`).

Opened secrets are :class:`Secret` strings, so code that stores them knows to seal them.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from figranium_common.jsontypes import JsonObject, JsonValue
from figranium_common.redact import SECRET_MASK, secret_names
from figranium_gateway.backup.archive import ArchiveError

PREFIX: Final = "enc:export:v1:"
MIN_PASSPHRASE: Final = 12
MAX_PASSPHRASE: Final = 1024
SCRYPT_N: Final = 2**15  # 32 MiB and ~0.1 s per derivation
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
_MAX_N: Final = 2**20  # an archive may not make the server spend more than this
_NONCE: Final = 12
_CHECK: Final = "figranium export"
_CHECK_PLACE: Final = "check"

# How a secret is written out (sealed or masked), given its value and place.
Hide = Callable[[str, str], str]


class Secret(str):
    """A secret's clear value while it is in memory: sealed again before it is stored."""

    __slots__ = ()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def checked_passphrase(passphrase: str) -> str:
    if not MIN_PASSPHRASE <= len(passphrase) <= MAX_PASSPHRASE:
        raise ArchiveError(
            "INVALID_PASSPHRASE",
            f"passphrase: {MIN_PASSPHRASE} to {MAX_PASSPHRASE} characters",
        )
    return passphrase


class ExportSeal:
    """Seals and opens an archive's secrets with the passphrase's key."""

    def __init__(self, key: bytes, salt: bytes, n: int) -> None:
        self._aead = AESGCM(key)
        self._salt = salt
        self._n = n

    @classmethod
    def new(cls, passphrase: str) -> ExportSeal:
        salt = secrets.token_bytes(16)
        return cls(_derive(checked_passphrase(passphrase), salt, SCRYPT_N), salt, SCRYPT_N)

    @classmethod
    def from_manifest(cls, block: JsonObject, passphrase: str | None) -> ExportSeal:
        """The seal an archive's manifest describes, once the passphrase opens its check."""
        if not passphrase:
            raise ArchiveError(
                "PASSPHRASE_REQUIRED",
                "the archive's secrets are sealed: send the export passphrase"
                " in the X-Figranium-Passphrase header",
            )
        salt, n, check = block.get("salt"), block.get("n"), block.get("check")
        valid_n = isinstance(n, int) and 2 <= n <= _MAX_N and n & (n - 1) == 0
        if not (isinstance(salt, str) and isinstance(check, str) and valid_n):
            raise ArchiveError("INVALID_FIGRANIUM_EXPORT", "manifest.json: bad secrets block")
        assert isinstance(n, int)
        try:
            raw_salt = _unb64(salt)
        except (binascii.Error, ValueError):
            raise ArchiveError("INVALID_FIGRANIUM_EXPORT", "manifest.json: bad salt") from None
        seal = cls(_derive(passphrase, raw_salt, n), raw_salt, n)
        try:
            seal.open(check, _CHECK_PLACE)
        except ArchiveError:
            raise ArchiveError(
                "WRONG_PASSPHRASE", "the passphrase does not open this archive's secrets"
            ) from None
        return seal

    def manifest(self) -> JsonObject:
        """The manifest's ``secrets`` block: how to derive the key again, and the check."""
        return {
            "sealing": "passphrase",
            "cipher": "AES-256-GCM",
            "kdf": "scrypt",
            "salt": _b64(self._salt),
            "n": self._n,
            "r": SCRYPT_R,
            "p": SCRYPT_P,
            "check": self.seal(_CHECK, _CHECK_PLACE),
        }

    def seal(self, plaintext: str, place: str) -> str:
        nonce = secrets.token_bytes(_NONCE)
        return PREFIX + _b64(nonce + self._aead.encrypt(nonce, plaintext.encode(), place.encode()))

    def open(self, value: str, place: str) -> Secret:
        try:
            raw = _unb64(value[len(PREFIX) :])
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], place.encode())
            return Secret(plain.decode())
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise ArchiveError(
                "INVALID_FIGRANIUM_EXPORT", f"a secret at {place} cannot be opened"
            ) from exc


def _derive(passphrase: str, salt: bytes, n: int) -> bytes:
    kdf = Scrypt(salt=salt, length=32, n=n, r=SCRYPT_R, p=SCRYPT_P)
    return kdf.derive(passphrase.encode())


def mask(_value: str, _place: str) -> str:
    """A :data:`Hide` for exports without a passphrase."""
    return SECRET_MASK


MASKED: Final[JsonObject] = {"sealing": "masked"}


def is_export_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def opener(block: JsonObject | None, passphrase: str | None) -> Callable[[str, str], str]:
    """How an archive's secret strings are read: opened when sealed (a :class:`Secret`),
    as written otherwise (a mask, or Figranium's clear values)."""
    seal = (
        ExportSeal.from_manifest(block, passphrase)
        if block is not None and block.get("sealing") == "passphrase"
        else None
    )

    def read(value: str, place: str) -> str:
        if not is_export_sealed(value):
            return value
        if seal is None:
            raise ArchiveError("INVALID_FIGRANIUM_EXPORT", f"{place}: sealed, but no secrets block")
        return seal.open(value, place)

    return read


# --- where secrets are --------------------------------------------------------------------


def map_strings(value: JsonValue, change: Callable[[str], str]) -> JsonValue:
    """``value`` with ``change`` applied to every string in it (object keys excepted)."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [map_strings(item, change) for item in value]
    if isinstance(value, dict):
        return {key: map_strings(item, change) for key, item in value.items()}
    return value


def map_task_secrets(task: JsonObject, change: Callable[[str, str], str]) -> JsonObject:
    """``task`` with ``change(value, place)`` applied to each secret variable's value, in
    the task and in each of its versions' snapshots."""
    task_id = str(task.get("id"))
    changed = _map_variables(task, task_id, change)
    versions = task.get("versions")
    if isinstance(versions, list):
        changed["versions"] = [
            {**v, "snapshot": _map_variables(v["snapshot"], task_id, change)}
            if isinstance(v, dict) and isinstance(v.get("snapshot"), dict)
            else v
            for v in versions
        ]
    return changed


def _map_variables(body: JsonObject, task_id: str, change: Callable[[str, str], str]) -> JsonObject:
    variables = body.get("variables")
    names = secret_names(body)
    if not names or not isinstance(variables, dict):
        return dict(body)
    mapped = dict(variables)
    for name in names:
        spec = mapped[name]
        if isinstance(spec, dict) and isinstance(spec.get("value"), str) and spec["value"]:
            mapped[name] = {**spec, "value": change(spec["value"], f"task:{task_id}:{name}")}
    return {**body, "variables": mapped}


# --- masks --------------------------------------------------------------------------------

_DROP: Final = object()


def fill_masks(imported: JsonValue, current: JsonValue) -> JsonValue:
    """``imported`` with each mask replaced by the value ``current`` has at the same place
    (list items matched by ``id`` when they have one); a mask with nothing there is left
    out, so no mask is ever stored as a secret."""
    filled = _fill(imported, current)
    return None if filled is _DROP else filled  # type: ignore[return-value]


def _fill(imported: JsonValue, current: JsonValue) -> object:
    if imported == SECRET_MASK:
        return current if isinstance(current, str) and current != SECRET_MASK else _DROP
    if isinstance(imported, dict):
        before = current if isinstance(current, dict) else {}
        out = {key: _fill(value, before.get(key)) for key, value in imported.items()}
        return {key: value for key, value in out.items() if value is not _DROP}
    if isinstance(imported, list):
        old = current if isinstance(current, list) else []
        by_id = {item["id"]: item for item in old if isinstance(item, dict) and "id" in item}
        items = []
        for index, item in enumerate(imported):
            if isinstance(item, dict) and "id" in item:
                match: JsonValue = by_id.get(item["id"])
            else:
                match = old[index] if index < len(old) else None
            filled = _fill(item, match)
            if filled is not _DROP:
                items.append(filled)
        return items
    return imported
