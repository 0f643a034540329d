"""Cabinet zip, unzip and folder download through the API: the round trip keeps every byte
and path, hostile archives are refused and leave their item as it was, quotas hold."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from figranium_common.cabinet_models import item_object
from figranium_devstack.postgres import LocalPostgres
from tests.integration.cabinet_helpers import items, new_cabinet, object_names, upload
from tests.integration.stack import Stack, own_stack

JsonItem = dict[str, object]


def _zip_bytes(entries: dict[str, bytes], *, level: int = 6) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _unzipped(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _zip(api: httpx.Client, cabinet_id: str, ids: list[object], **body: object) -> JsonItem:
    answer = api.post(f"/api/cabinets/{cabinet_id}/zip", json={"itemIds": ids, **body})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _unzip(api: httpx.Client, cabinet_id: str, item: JsonItem, expect: int = 200) -> JsonItem:
    answer = api.post(f"/api/cabinets/{cabinet_id}/items/{item['id']}/unzip")
    assert answer.status_code == expect, answer.text
    return dict(answer.json())


def _download(api: httpx.Client, cabinet_id: str, item: JsonItem) -> httpx.Response:
    answer = api.get(f"/api/cabinets/{cabinet_id}/items/{item['id']}/download")
    assert answer.status_code == 200, answer.text
    return answer


def _folder_objects(names: set[str], folder: JsonItem) -> set[str]:
    return {name for name in names if name.startswith(f"{item_object(str(folder['id']))}/")}


def test_zip_unzip_and_folder_download_keep_bytes_and_paths(
    api: httpx.Client, stack: tuple[Stack, httpx.Client]
) -> None:
    nats_url = stack[0].env["NATS_URL"]
    cabinet_id = new_cabinet(api, "Archives")
    contents = {
        "report.csv": b"id,total\n1,9.50\n2,12.00\n",
        "photo.bin": os.urandom(300_000),
        "notes \u00e9t\u00e9.txt": "d\u00e9j\u00e0 vu\n".encode() * 2000,
    }
    uploaded = {name: upload(api, cabinet_id, name, data).json() for name, data in contents.items()}
    chosen = [uploaded["report.csv"], uploaded["photo.bin"]]

    archive = _zip(api, cabinet_id, [i["id"] for i in chosen], name="bundle.zip")
    assert (archive["name"], archive["kind"], archive["status"]) == (
        "bundle.zip",
        "file",
        "unuploaded",
    )
    listed = items(api, cabinet_id)
    assert {i["name"] for i in listed} == {"bundle.zip", "notes \u00e9t\u00e9.txt"}
    names = object_names(nats_url)
    assert item_object(str(archive["id"])) in names
    assert not {item_object(i["id"]) for i in chosen} & names  # the zipped items' bytes went

    zipped = _download(api, cabinet_id, archive).content
    assert len(zipped) == archive["size"]
    assert hashlib.sha256(zipped).hexdigest() == archive["sha256"]
    assert _unzipped(zipped) == {name: contents[name] for name in ("report.csv", "photo.bin")}

    folder = _unzip(api, cabinet_id, archive)
    assert (folder["name"], folder["kind"]) == ("bundle", "folder")
    assert folder["size"] == len(contents["report.csv"]) + len(contents["photo.bin"])
    assert "bundle.zip" not in {i["name"] for i in items(api, cabinet_id)}
    names = object_names(nats_url)
    assert item_object(str(archive["id"])) not in names
    assert len(_folder_objects(names, folder)) == 2

    answer = _download(api, cabinet_id, folder)
    assert answer.headers["x-content-type-options"] == "nosniff"
    disposition = answer.headers["content-disposition"]
    assert disposition.startswith("attachment;") and 'filename="bundle.zip"' in disposition
    assert _unzipped(answer.content) == {
        "bundle/report.csv": contents["report.csv"],
        "bundle/photo.bin": contents["photo.bin"],
    }

    # A folder zips with its paths, beside a file; the default name is archive-<ms>.zip.
    notes = uploaded["notes \u00e9t\u00e9.txt"]
    again = _zip(api, cabinet_id, [folder["id"], notes["id"]])
    assert str(again["name"]).startswith("archive-") and str(again["name"]).endswith(".zip")
    assert _unzipped(_download(api, cabinet_id, again).content) == {
        "bundle/report.csv": contents["report.csv"],
        "bundle/photo.bin": contents["photo.bin"],
        "notes \u00e9t\u00e9.txt": contents["notes \u00e9t\u00e9.txt"],
    }
    assert [i["id"] for i in items(api, cabinet_id)] == [again["id"]]
    assert not _folder_objects(object_names(nats_url), folder)


def test_the_archive_name_is_sanitised_and_made_unique(api: httpx.Client) -> None:
    cabinet_id = new_cabinet(api, "Archive names")
    upload(api, cabinet_id, "pack.zip", b"not the archive")
    one = upload(api, cabinet_id, "one.txt", b"1").json()
    archive = _zip(api, cabinet_id, [one["id"]], name="../PACK.zip")
    assert archive["name"] == "PACK (2).zip"


@pytest.mark.parametrize(
    ("entries", "code"),
    [
        ({"fine.txt": b"ok", "../escape.txt": b"evil"}, "ARCHIVE_UNSAFE_NAME"),
        ({"C:\\Windows\\evil.dll": b"evil"}, "ARCHIVE_UNSAFE_NAME"),
        ({"/etc/cron.d/evil": b"evil"}, "ARCHIVE_UNSAFE_NAME"),
        ({"zeros.bin": bytes(16 * 1024 * 1024)}, "ARCHIVE_BOMB"),
    ],
    ids=["climbing", "drive", "absolute", "bomb"],
)
def test_hostile_archives_are_refused_and_left_as_they_were(
    api: httpx.Client, stack: tuple[Stack, httpx.Client], entries: dict[str, bytes], code: str
) -> None:
    nats_url = stack[0].env["NATS_URL"]
    cabinet_id = new_cabinet(api, "Hostile")
    data = _zip_bytes(entries, level=9)
    hostile = upload(api, cabinet_id, "hostile.zip", data).json()
    before = object_names(nats_url)
    answer = api.post(f"/api/cabinets/{cabinet_id}/items/{hostile['id']}/unzip")
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == code
    assert items(api, cabinet_id) == [hostile]
    assert _download(api, cabinet_id, hostile).content == data
    assert object_names(nats_url) == before


def test_only_zip_files_unzip(api: httpx.Client) -> None:
    cabinet_id = new_cabinet(api, "Not zips")
    fake = upload(api, cabinet_id, "data.zip", b"name,value\n" * 50).json()
    refused = api.post(f"/api/cabinets/{cabinet_id}/items/{fake['id']}/unzip")
    assert (refused.status_code, refused.json()["error"]) == (400, "NOT_A_ZIP")
    text = upload(api, cabinet_id, "real.txt", _zip_bytes({"a.txt": b"a"})).json()
    refused = api.post(f"/api/cabinets/{cabinet_id}/items/{text['id']}/unzip")
    assert (refused.status_code, refused.json()["error"]) == (400, "NOT_A_ZIP")
    assert {i["id"] for i in items(api, cabinet_id)} == {fake["id"], text["id"]}


def test_unknown_ids_and_bad_bodies(api: httpx.Client) -> None:
    cabinet_id = new_cabinet(api, "Bad input")
    missing_cabinet = api.post("/api/cabinets/cab_00000000000000000000/zip", json={"itemIds": []})
    assert (missing_cabinet.status_code, missing_cabinet.json()["error"]) == (
        404,
        "CABINET_NOT_FOUND",
    )
    nothing = api.post(f"/api/cabinets/{cabinet_id}/zip", json={"itemIds": ["item_nope"]})
    assert (nothing.status_code, nothing.json()["error"]) == (400, "NO_ITEMS_SELECTED")
    for body in ({"itemIds": "item_x"}, {"itemIds": [1]}, {"itemIds": [], "name": 5}):
        bad = api.post(f"/api/cabinets/{cabinet_id}/zip", json=body)
        assert (bad.status_code, bad.json()["error"]) == (400, "INVALID_BODY"), body
    unknown = api.post(f"/api/cabinets/{cabinet_id}/items/item_00000000000000000000/unzip")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "ITEM_NOT_FOUND")


# --- quotas, on a gateway of their own with a small one --------------------------------------

CABINET_MAX = 300_000


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, postgres: LocalPostgres) -> Iterator[Stack]:
    env = {"CABINET_MAX_BYTES": str(CABINET_MAX)}
    with own_stack(Path(tmp_path_factory.mktemp("archive-quotas")), postgres, **env) as stack:
        stack.start_gateway()
        yield stack


def test_quotas_hold_for_zip_and_unzip_results(small: Stack) -> None:
    api = small.clients[0]
    cabinet_id = new_cabinet(api)
    # Incompressible files filling the cabinet: their ZIP is larger than they are.
    parts = [upload(api, cabinet_id, f"{n}.bin", os.urandom(99_900)).json() for n in range(3)]
    answer = api.post(f"/api/cabinets/{cabinet_id}/zip", json={"itemIds": [p["id"] for p in parts]})
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"] == "CABINET_QUOTA_EXCEEDED"
    assert "CABINET_MAX_BYTES" in answer.json()["details"]
    assert {i["id"] for i in items(api, cabinet_id)} == {p["id"] for p in parts}
    assert object_names(small.env["NATS_URL"]) == {item_object(p["id"]) for p in parts}

    # A small ZIP whose files would not fit beside what is there stays a ZIP.
    api.post(f"/api/cabinets/{cabinet_id}/clear")
    upload(api, cabinet_id, "kept.bin", os.urandom(100_000))
    archive = upload(api, cabinet_id, "text.zip", _zip_bytes({"t.txt": b"0123456789" * 25_000}))
    refused = api.post(f"/api/cabinets/{cabinet_id}/items/{archive.json()['id']}/unzip")
    assert refused.status_code == 413, refused.text
    assert refused.json()["error"] == "CABINET_QUOTA_EXCEEDED"
    assert {i["name"] for i in items(api, cabinet_id)} == {"kept.bin", "text.zip"}
    assert len(object_names(small.env["NATS_URL"])) == 2
