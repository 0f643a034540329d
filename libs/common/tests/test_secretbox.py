"""The secret box: sealing round trips, purposes bind, keys come from env or a key file."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from figranium_common.config import Config
from figranium_common.secretbox import KEY_FILE, SecretBox, SecretError, is_sealed


def test_seal_and_open_round_trip_with_fresh_nonces() -> None:
    box = SecretBox(os.urandom(32))
    one, two = box.seal("tök€n", "credential:a"), box.seal("tök€n", "credential:a")
    assert one != two and is_sealed(one) and "tök€n" not in one
    assert box.open(one, "credential:a") == box.open(two, "credential:a") == "tök€n"


def test_a_sealed_value_opens_only_for_its_purpose_and_key() -> None:
    box = SecretBox(os.urandom(32))
    sealed = box.seal("secret", "credential:a")
    with pytest.raises(SecretError, match="cannot be decrypted"):
        box.open(sealed, "credential:b")  # copied onto another credential: refused
    with pytest.raises(SecretError):
        SecretBox(os.urandom(32)).open(sealed, "credential:a")
    with pytest.raises(SecretError):
        box.open(sealed[:-4] + "AAAA", "credential:a")  # tampered


def test_values_stored_before_encryption_read_as_they_are() -> None:
    assert SecretBox(bytes(32)).open("plain-old", "proxy-password") == "plain-old"


def test_key_file_is_created_once_and_reused(tmp_path: Path) -> None:
    config = Config(FIGRANIUM_DATA_DIR=tmp_path / "data")  # type: ignore[call-arg]
    sealed = SecretBox.from_config(config).seal("x", "p")
    key_file = tmp_path / "data" / KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert SecretBox.from_config(config).open(sealed, "p") == "x"


def test_master_key_from_the_environment(tmp_path: Path) -> None:
    raw = base64.urlsafe_b64encode(os.urandom(32)).decode()
    as_base64 = Config(FIGRANIUM_MASTER_KEY=raw, FIGRANIUM_DATA_DIR=tmp_path)  # type: ignore[call-arg]
    sealed = SecretBox.from_config(as_base64).seal("x", "p")
    assert SecretBox.from_config(as_base64).open(sealed, "p") == "x"
    assert not (tmp_path / KEY_FILE).exists()  # an environment key writes no file

    phrase = Config(FIGRANIUM_MASTER_KEY="a long passphrase of at least 32 chars")  # type: ignore[call-arg]
    assert SecretBox.from_config(phrase).open(SecretBox.from_config(phrase).seal("y", "p"), "p")
    with pytest.raises(SecretError, match="FIGRANIUM_MASTER_KEY"):
        SecretBox.from_config(Config(FIGRANIUM_MASTER_KEY="short"))  # type: ignore[call-arg]
