"""Cabinet archives on disk: the members a zip gives items, and unzip's bounds and names."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import warnings
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from figranium_gateway.cabinet_archives import (
    Member,
    entry_path,
    extract,
    members,
    unzipped_name,
    zip_stream,
)
from figranium_gateway.zip_bounds import ArchiveError, Expansion, ZipBounds

BOUNDS = ZipBounds(max_entries=50, max_total_bytes=64 * 1024 * 1024)
MiB = 1024 * 1024


def _zip(path: Path, entries: dict[str, bytes], *, level: int = 6) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _refused(archive: Path, tmp_path: Path, bounds: ZipBounds = BOUNDS) -> str:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    with pytest.raises(ArchiveError) as caught:
        extract(archive, out, bounds)
    return caught.value.code


def test_extract_gives_each_file_with_its_path_bytes_and_digest(tmp_path: Path) -> None:
    contents = {"a.csv": b"x,y\n1,2\n", "sub/deeper/b.bin": bytes(range(256)) * 40}
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("sub/", b"")  # a directory entry: no file of its own
        for name, data in contents.items():
            zf.writestr(name, data)
        zf.writestr("./dot\\windows.txt", b"w")
    out = tmp_path / "out"
    out.mkdir()
    files = extract(archive, out, BOUNDS)
    contents["dot/windows.txt"] = b"w"
    assert [f.path for f in files] == list(contents)
    for file in files:
        data = file.file.read_bytes()
        assert data == contents[file.path]
        assert file.size == len(data)
        assert file.sha256 == hashlib.sha256(data).hexdigest()
        assert file.file.parent == out


@pytest.mark.parametrize(
    "name",
    ["/etc/passwd", "../up.txt", "a/../../up.txt", "..\\up.txt", "a\\..\\..\\up", "C:\\x", "c:x"],
)
def test_names_that_climb_are_refused(tmp_path: Path, name: str) -> None:
    archive = _zip(tmp_path / "bad.zip", {"fine.txt": b"ok", name: b"evil"})
    assert _refused(archive, tmp_path) == "ARCHIVE_UNSAFE_NAME"
    assert not list((tmp_path / "out").iterdir())  # refused before anything is written


@pytest.mark.parametrize("name", ["a\x00b", "a\nb", "a\x7fb", "x" * 1025])
def test_control_characters_and_overlong_names_are_refused(name: str) -> None:
    # zipfile cuts names at NUL when it reads them; the check does not rely on it.
    with pytest.raises(ArchiveError) as caught:
        entry_path(name)
    assert caught.value.code == "ARCHIVE_UNSAFE_NAME"


def test_entry_paths_are_normalised() -> None:
    assert entry_path("a\\b.txt") == "a/b.txt"
    assert entry_path("./a//b.txt") == "a/b.txt"
    assert entry_path("dir/") is None
    assert entry_path("..foo/bar..") == "..foo/bar.."


def test_symbolic_links_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        link = zipfile.ZipInfo("passwd")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    assert _refused(archive, tmp_path) == "ARCHIVE_UNSAFE_NAME"


def test_the_same_path_twice_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "twice.zip"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate it writes
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("a.txt", b"1")
            zf.writestr("a.txt", b"2")
    assert _refused(archive, tmp_path) == "ARCHIVE_UNSAFE_NAME"


def test_encrypted_entries_are_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "locked.zip", {"secret.txt": b"not really encrypted"})
    data = bytearray(archive.read_bytes())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        data[data.index(signature) + flags_at] |= 0x1  # "encrypted"
    archive.write_bytes(bytes(data))
    assert _refused(archive, tmp_path) == "ARCHIVE_ENCRYPTED"


def test_too_many_entries_are_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "many.zip", {f"{n}.txt": b"x" for n in range(4)})
    bounds = ZipBounds(max_entries=3, max_total_bytes=MiB)
    assert _refused(archive, tmp_path, bounds) == "ARCHIVE_TOO_MANY_ENTRIES"


def test_an_entry_expanding_past_the_ratio_is_a_bomb(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "bomb.zip", {"zeros.bin": bytes(8 * MiB)}, level=9)
    assert _refused(archive, tmp_path) == "ARCHIVE_BOMB"


def test_entries_past_the_total_are_a_bomb(tmp_path: Path) -> None:
    data = {f"{n}.bin": hashlib.sha256(str(n).encode()).digest() * 1000 for n in range(3)}
    archive = _zip(tmp_path / "big.zip", data)
    bounds = ZipBounds(max_entries=10, max_total_bytes=80_000)
    assert _refused(archive, tmp_path, bounds) == "ARCHIVE_BOMB"


def test_small_entries_adding_up_past_the_archive_ratio_are_a_bomb(tmp_path: Path) -> None:
    # Each entry stays under the ratio floor, so no header claim is refused; what they
    # expand to together, counted while reading, is.
    archive = _zip(tmp_path / "many-small.zip", {f"{n}.bin": bytes(MiB) for n in range(6)})
    assert _refused(archive, tmp_path) == "ARCHIVE_BOMB"
    assert extract(archive, tmp_path / "out", ZipBounds(10, 64 * MiB, max_ratio=10_000))


def test_expansion_counts_real_bytes_whatever_was_checked_before(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "two.zip", {"a.bin": bytes(600), "b.bin": bytes(600)})
    with zipfile.ZipFile(archive) as zf:
        expansion = Expansion(ZipBounds(max_entries=10, max_total_bytes=1000), 10**9)
        assert sum(len(c) for c in expansion.read(zf, zf.getinfo("a.bin"))) == 600
        with pytest.raises(ArchiveError) as caught:
            list(expansion.read(zf, zf.getinfo("b.bin")))
    assert caught.value.code == "ARCHIVE_BOMB"


def _lie_about_size(archive: Path, claimed: int) -> None:
    """Rewrite both headers of the archive's single entry to claim ``claimed`` bytes."""
    data = bytearray(archive.read_bytes())
    local = data.index(b"PK\x03\x04")
    struct.pack_into("<I", data, local + 22, claimed)
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, claimed)
    archive.write_bytes(bytes(data))


def test_a_header_that_understates_its_size_is_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "liar.zip", {"zeros.bin": bytes(8 * MiB)}, level=9)
    _lie_about_size(archive, 1000)
    assert _refused(archive, tmp_path) == "INVALID_ZIP"
    written = sum(p.stat().st_size for p in (tmp_path / "out").iterdir())
    assert written <= 1000


def test_not_a_zip_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain.zip"
    plain.write_bytes(b"name,value\n" * 100)
    assert _refused(plain, tmp_path) == "NOT_A_ZIP"


def test_members_name_files_and_folder_paths() -> None:
    file_item = {"name": "a.csv", "object": "items/item_1", "entries": None, "size": 8}
    folder = {
        "name": "reports",
        "object": None,
        "entries": [
            {"path": "x.txt", "object": "items/item_2/0", "size": 1, "sha256": "0"},
            {"path": "sub/y.txt", "object": "items/item_2/1", "size": 2, "sha256": "0"},
        ],
    }
    assert members(file_item) == [Member("a.csv", "items/item_1", 8)]
    assert members(folder) == [
        Member("reports/x.txt", "items/item_2/0", 1),
        Member("reports/sub/y.txt", "items/item_2/1", 2),
    ]


def test_unzipped_name_drops_the_suffix_whatever_its_case() -> None:
    assert unzipped_name("export.ZIP") == "export"
    assert unzipped_name("archive.tar.zip") == "archive.tar"


def test_stored_entries_extract_too(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("plain.txt", b"stored, not deflated")
    archive = tmp_path / "stored.zip"
    archive.write_bytes(buffer.getvalue())
    out = tmp_path / "out"
    out.mkdir()
    (only,) = extract(archive, out, BOUNDS)
    assert only.file.read_bytes() == b"stored, not deflated"


CHUNK = 128 * 1024


def _reader(objects: dict[str, bytes]) -> Callable[[str], AsyncIterator[bytes]]:
    async def read(name: str) -> AsyncIterator[bytes]:
        data = objects[name]
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]

    return read


async def test_zip_stream_writes_members_piece_by_piece(tmp_path: Path) -> None:
    objects = {
        "items/a": os.urandom(5 * CHUNK),  # incompressible: each chunk gives a piece
        "items/b/0": b"",
        "items/b/1": "caf\u00e9\n".encode() * 1000,
    }
    wanted = [
        Member("big.bin", "items/a", 5 * CHUNK),
        Member("folder/empty.txt", "items/b/0", 0),
        Member("folder/sub/caf\u00e9.txt", "items/b/1", len(objects["items/b/1"])),
    ]
    pieces = [piece async for piece in zip_stream(wanted, _reader(objects))]
    assert len(pieces) > 5
    assert max(len(piece) for piece in pieces) < 2 * CHUNK
    archive = tmp_path / "streamed.zip"
    archive.write_bytes(b"".join(pieces))
    with zipfile.ZipFile(archive) as zf:
        assert zf.namelist() == [member.arcname for member in wanted]
        for member in wanted:
            assert zf.read(member.arcname) == objects[member.object]
    out = tmp_path / "out"
    out.mkdir()
    extracted = extract(archive, out, BOUNDS)
    assert [(f.path, f.file.read_bytes()) for f in extracted] == [
        (m.arcname, objects[m.object]) for m in wanted
    ]
