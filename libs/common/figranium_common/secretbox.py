"""Secrets at rest: AES-256-GCM under one master key, so a database dump alone reveals none.

A sealed value is the text ``enc:v1:<base64url(nonce ‖ ciphertext ‖ tag)>``. Each value is
sealed with a purpose (``credential:cred_…``, ``proxy-password``…) as associated data:
a ciphertext copied from one place to another does not open there.

The master key comes from ``FIGRANIUM_MASTER_KEY`` (32 bytes in base64, or any other
text of at least 32 characters, stretched with HKDF), else from ``master.key`` in the data
folder, created on first use. Every service that reads secrets must see the same key:
in a cluster, give them all the same ``FIGRANIUM_MASTER_KEY``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from figranium_common.config import Config
from figranium_common.errors import FigraniumError

PREFIX = "enc:v1:"
KEY_FILE = "master.key"
_NONCE = 12
MIN_PASSPHRASE = 32


class SecretError(FigraniumError):
    code = "SECRET_UNREADABLE"


def _decode_key(text: str) -> bytes:
    text = text.strip()
    with contextlib.suppress(binascii.Error, ValueError):
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        if len(raw) == 32:
            return raw
    if len(text) < MIN_PASSPHRASE:
        raise SecretError(
            f"FIGRANIUM_MASTER_KEY must be 32 bytes in base64 or at least {MIN_PASSPHRASE}"
            " characters of text"
        )
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"figranium master key")
    return hkdf.derive(text.encode())


def decode_key(text: str, setting: str) -> bytes:
    """A key given in ``setting``: 32 bytes in base64, or a passphrase (stretched)."""
    try:
        return _decode_key(text)
    except SecretError as exc:
        raise SecretError(exc.details.replace("FIGRANIUM_MASTER_KEY", setting)) from None


def new_key_text() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def _key_from_file(path: Path) -> bytes:
    """Read the key file, creating it first when absent (exclusively: two services starting
    together must not each write their own key)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(new_key_text() + "\n")
    text = path.read_text().strip()
    if not text:
        raise SecretError(f"{path} is empty; restore it from a backup or remove it")
    return _decode_key(text)


class SecretBox:
    """Seals and opens secret strings for one purpose each."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._key = key
        self._aead = AESGCM(key)

    @classmethod
    def from_config(cls, config: Config) -> SecretBox:
        if config.master_key:
            return cls(_decode_key(config.master_key))
        return cls(_key_from_file(config.data_dir / KEY_FILE))

    def subkey(self, purpose: str) -> bytes:
        """A 32-byte key for ``purpose`` derived from the master key (HKDF): other uses,
        such as keyed digests, never use the encryption key itself."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
        return hkdf.derive(self._key)

    def seal(self, plaintext: str, purpose: str) -> str:
        nonce = secrets.token_bytes(_NONCE)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), purpose.encode())
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, value: str, purpose: str) -> str:
        """The plaintext of a sealed value; a value that was never sealed is returned as is
        (stored before encryption existed) and sealed on its next write."""
        if not is_sealed(value):
            return value
        body = value[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], purpose.encode())
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise SecretError(
                f"a stored {purpose.split(':')[0]} cannot be decrypted: the master key is not"
                " the one it was sealed with"
            ) from exc
        return plain.decode()


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)
