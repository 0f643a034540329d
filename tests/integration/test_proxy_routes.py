"""The proxy routes under /api/settings/proxies, in Figranium's shapes and error codes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from tests.integration.stack import Stack

HOST = {
    "id": "host",
    "server": "host_ip",
    "username": None,
    "label": "Host IP (no proxy)",
    "default": True,
    "hasPassword": False,
    "isRotatingPool": False,
    "estimatedPoolSize": None,
}
EMPTY = {
    "proxies": [HOST],
    "defaultProxyId": "host",
    "includeDefaultInRotation": False,
    "rotationMode": "round-robin",
}
PROXY_KEYS = ("proxies", "proxy_rotation", "proxy_rotation_turn")


def clear_proxy_settings(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM settings WHERE key = ANY(%s)", (list(PROXY_KEYS),))


@pytest.fixture
def clean(stack: tuple[Stack, httpx.Client]) -> Iterator[None]:
    clear_proxy_settings(stack[0].env["DATABASE_URL"])
    yield
    clear_proxy_settings(stack[0].env["DATABASE_URL"])


def _stored(stack: tuple[Stack, httpx.Client]) -> list[dict[str, object]]:
    with psycopg.connect(stack[0].env["DATABASE_URL"]) as conn:
        row = conn.execute("SELECT value FROM settings WHERE key = 'proxies'").fetchone()
    assert row is not None
    stored: list[dict[str, object]] = row[0]
    return stored


def _saved(answer: httpx.Response) -> list[dict[str, object]]:
    assert answer.status_code == 200, answer.text
    proxies: list[dict[str, object]] = answer.json()["proxies"]
    assert proxies[0]["id"] == "host"
    return proxies[1:]


def test_add_list_choose_default_and_delete(
    api: httpx.Client, stack: tuple[Stack, httpx.Client], clean: None
) -> None:
    assert api.get("/api/settings/proxies").json() == EMPTY
    first = api.post(
        "/api/settings/proxies",
        json={
            "server": "http://127.0.0.1:8080",
            "username": "u",
            "password": "p4ss",
            "label": "A",
            "isRotatingPool": True,
            "estimatedPoolSize": 50,
        },
    )
    assert first.status_code == 200, first.text
    second = api.post(
        "/api/settings/proxies", json={"server": "socks5://127.0.0.2:1080", "default": True}
    )
    assert "p4ss" not in second.text and "password" not in second.text
    a, b = _saved(second)
    assert a["id"] != b["id"] and str(a["id"]).startswith("proxy_")
    assert a == {
        "id": a["id"],
        "server": "http://127.0.0.1:8080",
        "username": "u",
        "label": "A",
        "default": False,
        "hasPassword": True,
        "isRotatingPool": True,
        "estimatedPoolSize": 50,
    }
    assert b["default"] is True and b["hasPassword"] is False and b["username"] is None
    listing = second.json()
    assert listing["defaultProxyId"] == b["id"] and listing["proxies"][0]["default"] is False
    assert api.get("/api/settings/proxies").json() == listing

    # A new default is the only default; defaultId (this API's older way) still chooses.
    third = api.post("/api/settings/proxies", json={"server": "https://127.0.0.3", "default": True})
    assert [p["default"] for p in _saved(third)] == [False, False, True]
    chosen = api.post("/api/settings/proxies", json={"defaultId": a["id"]})
    assert [p["default"] for p in _saved(chosen)] == [True, False, False]
    missing = api.post("/api/settings/proxies", json={"defaultId": "proxy_nope"})
    assert missing.status_code == 404 and missing.json()["error"] == "PROXY_NOT_FOUND"

    # What dispatch reads keeps its shape (server, username, password), the password sealed.
    stored = _stored(stack)
    assert stored[0]["server"] == "http://127.0.0.1:8080" and stored[0]["username"] == "u"
    assert str(stored[0]["password"]).startswith("enc:v1:") and "p4ss" not in str(stored)

    deleted = api.delete(f"/api/settings/proxies/{b['id']}")
    assert b["id"] not in {p["id"] for p in _saved(deleted)}
    gone = api.delete(f"/api/settings/proxies/{b['id']}")
    assert gone.status_code == 404 and gone.json()["error"] == "PROXY_NOT_FOUND"
    host = api.delete("/api/settings/proxies/host")
    assert host.status_code == 400 and host.json()["error"] == "INVALID_ID"
    assert len(_saved(api.get("/api/settings/proxies"))) == 2


def test_a_server_without_scheme_is_http(api: httpx.Client, clean: None) -> None:
    added = api.post("/api/settings/proxies", json={"server": " 127.0.0.1:3128 "})
    assert [p["server"] for p in _saved(added)] == ["http://127.0.0.1:3128"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "MISSING_SERVER"),
        ({"server": ""}, "MISSING_SERVER"),
        ({"server": "  "}, "MISSING_SERVER"),
        ({"server": 5}, "MISSING_SERVER"),
        ({"server": None, "label": "x"}, "MISSING_SERVER"),
        ({"server": "ftp://127.0.0.1:21"}, "INVALID_BODY"),
        ({"server": "http://"}, "INVALID_BODY"),
        ({"server": "socks5://:1080"}, "INVALID_BODY"),
        ({"server": "http://user:pw@127.0.0.1:8080"}, "INVALID_BODY"),
        ({"server": "http://127.0.0.1:99999"}, "INVALID_BODY"),
        ({"server": "http://127.0.0.1:8080/path"}, "INVALID_BODY"),
        ({"server": "http://169.254.169.254"}, "INVALID_URL"),
        ({"server": "169.254.169.254:80"}, "INVALID_URL"),
        ({"server": "http://127.0.0.1", "default": "sometimes"}, "INVALID_BODY"),
        ({"server": "http://127.0.0.1", "estimatedPoolSize": 0}, "INVALID_BODY"),
        ({"server": "http://127.0.0.1", "defaultId": "x"}, "INVALID_BODY"),
    ],
)
def test_bad_proxies_are_refused(
    api: httpx.Client, clean: None, body: dict[str, object], code: str
) -> None:
    for method, path in (
        ("POST", "/api/settings/proxies"),
        ("PUT", "/api/settings/proxies/proxy_any"),
    ):
        if method == "PUT" and {"default", "defaultId"} & body.keys():
            continue  # fields of POST only
        response = api.request(method, path, json=body)
        assert response.status_code == 400, (method, response.text)
        assert response.json()["error"] == code, (method, response.text)
        assert response.json()["details"]
    assert api.get("/api/settings/proxies").json() == EMPTY


def test_proxies_saved_without_ids_get_stable_ones(
    api: httpx.Client, stack: tuple[Stack, httpx.Client], clean: None
) -> None:
    saved = [{"server": "http://127.0.0.1:3128", "username": "x", "password": "y"}]
    with psycopg.connect(stack[0].env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO settings (key, value) VALUES ('proxies', %s)", (json.dumps(saved),)
        )
    listed = _saved(api.get("/api/settings/proxies"))
    assert listed == _saved(api.get("/api/settings/proxies"))
    assert api.delete(f"/api/settings/proxies/{listed[0]['id']}").json() == EMPTY


def test_import_takes_figranium_formats(
    api: httpx.Client, stack: tuple[Stack, httpx.Client], clean: None
) -> None:
    existing = _saved(
        api.post(
            "/api/settings/proxies",
            json={"server": "http://127.0.0.1:9001", "password": "kept", "default": True},
        )
    )[0]
    imported = api.post(
        "/api/settings/proxies/import",
        json={
            "proxies": [
                "127.0.0.1:9002:ann:pa:ss",  # the editor's lines: host:port:user:password
                "socks5://bob:s%40cret@127.0.0.1:9003",
                "carl:pw@127.0.0.1:9004",
                "127.0.0.1:9005",
                {"url": "https://127.0.0.1:9006", "user": "dan", "pass": "x", "label": "D"},
                {"proxy": "127.0.0.1:9007", "isRotatingPool": True, "estimatedPoolSize": 9},
                # Already saved: its fields are replaced, its id, default and password kept.
                {"server": "HTTP://127.0.0.1:9001", "label": "again"},
                "127.0.0.1:9005:second:time",  # a repeat within the import: the first wins
            ]
        },
    )
    saved = _saved(imported)
    assert [(p["server"], p["username"], p["hasPassword"]) for p in saved] == [
        ("http://127.0.0.1:9001", None, True),
        ("http://127.0.0.1:9002", "ann", True),
        ("socks5://127.0.0.1:9003", "bob", True),
        ("http://127.0.0.1:9004", "carl", True),
        ("http://127.0.0.1:9005", None, False),
        ("https://127.0.0.1:9006", "dan", True),
        ("http://127.0.0.1:9007", None, False),
    ]
    assert saved[0]["id"] == existing["id"] and saved[0]["default"] is True
    assert saved[0]["label"] == "again" and saved[5]["label"] == "D"
    assert saved[6]["isRotatingPool"] is True and saved[6]["estimatedPoolSize"] == 9
    box = stack[0].master_box()
    passwords = [
        box.open(str(p["password"]), "proxy-password") if p.get("password") else None
        for p in _stored(stack)
    ]
    assert passwords == ["kept", "pa:ss", "s@cret", "pw", None, "x", None]


@pytest.mark.parametrize(
    ("body", "code", "where"),
    [
        ({}, "MISSING_PROXIES", "proxies"),
        ({"proxies": []}, "MISSING_PROXIES", "proxies"),
        ({"proxies": "127.0.0.1:1"}, "MISSING_PROXIES", "proxies"),
        ({"proxies": ["127.0.0.1:1", {"label": "no server"}]}, "MISSING_SERVER", "proxies[1]"),
        ({"proxies": ["127.0.0.1:1", "   "]}, "MISSING_SERVER", "proxies[1]"),
        ({"proxies": ["127.0.0.1:1", "just-a-host"]}, "INVALID_BODY", "proxies[1]"),
        ({"proxies": ["127.0.0.1:1", 7]}, "INVALID_BODY", "proxies[1]"),
        ({"proxies": ["ftp://127.0.0.1:1"]}, "INVALID_BODY", "proxies[0].server"),
        ({"proxies": ["169.254.169.254:80"]}, "INVALID_URL", "proxies[0].server"),
        (
            {"proxies": [{"server": "127.0.0.1:1", "estimatedPoolSize": -1}]},
            "INVALID_BODY",
            "proxies[0].estimatedPoolSize",
        ),
        ({"proxies": ["127.0.0.1:1"] * 1001}, "TOO_MANY_PROXIES", "proxies"),
    ],
)
def test_a_bad_import_saves_nothing(
    api: httpx.Client, clean: None, body: dict[str, object], code: str, where: str
) -> None:
    response = api.post("/api/settings/proxies/import", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == code
    assert response.json()["details"].startswith(where), response.text
    assert api.get("/api/settings/proxies").json() == EMPTY


def test_put_replaces_fields_and_keeps_an_unsent_password(
    api: httpx.Client, stack: tuple[Stack, httpx.Client], clean: None
) -> None:
    (proxy,) = _saved(
        api.post(
            "/api/settings/proxies",
            json={
                "server": "http://127.0.0.1:9101",
                "username": "u",
                "password": "pw",
                "label": "L",
            },
        )
    )
    path = f"/api/settings/proxies/{proxy['id']}"
    (changed,) = _saved(api.put(path, json={"server": "127.0.0.1:9102", "isRotatingPool": True}))
    assert changed == {
        **proxy,
        "server": "http://127.0.0.1:9102",
        "username": None,
        "label": None,
        "hasPassword": True,
        "isRotatingPool": True,
    }
    box = stack[0].master_box()
    assert box.open(str(_stored(stack)[0]["password"]), "proxy-password") == "pw"
    (renewed,) = _saved(api.put(path, json={"server": "127.0.0.1:9102", "password": "new"}))
    assert box.open(str(_stored(stack)[0]["password"]), "proxy-password") == "new"
    assert renewed["hasPassword"] is True and renewed["isRotatingPool"] is False
    (cleared,) = _saved(api.put(path, json={"server": "127.0.0.1:9102", "password": None}))
    assert cleared["hasPassword"] is False and "password" not in _stored(stack)[0]

    missing = api.put("/api/settings/proxies/proxy_nope", json={"server": "127.0.0.1:1"})
    assert missing.status_code == 404 and missing.json()["error"] == "PROXY_NOT_FOUND"
    host = api.put("/api/settings/proxies/host", json={"server": "127.0.0.1:1"})
    assert host.status_code == 400 and host.json()["error"] == "INVALID_ID"


def test_bulk_delete_default_and_rotation(api: httpx.Client, clean: None) -> None:
    imported = api.post(
        "/api/settings/proxies/import",
        json={"proxies": ["127.0.0.1:9201", "127.0.0.1:9202", "127.0.0.1:9203"]},
    )
    a, b, c = (str(p["id"]) for p in _saved(imported))

    chosen = api.post("/api/settings/proxies/default", json={"id": b})
    assert chosen.json()["defaultProxyId"] == b
    assert [p["default"] for p in chosen.json()["proxies"]] == [False, False, True, False]
    for none in ({"id": None}, {"id": ""}, {"id": "host"}, {}):
        api.post("/api/settings/proxies/default", json={"id": b})
        cleared = api.post("/api/settings/proxies/default", json=none)
        assert cleared.json()["defaultProxyId"] == "host", none
        assert cleared.json()["proxies"][0]["default"] is True
    missing = api.post("/api/settings/proxies/default", json={"id": "proxy_nope"})
    assert missing.status_code == 404 and missing.json()["error"] == "PROXY_NOT_FOUND"

    rotation = api.post(
        "/api/settings/proxies/rotation",
        json={"includeDefaultInRotation": True, "rotationMode": "random"},
    )
    assert rotation.status_code == 200, rotation.text
    assert (rotation.json()["includeDefaultInRotation"], rotation.json()["rotationMode"]) == (
        True,
        "random",
    )
    # Each field alone changes only itself.
    only_mode = api.post("/api/settings/proxies/rotation", json={"rotationMode": "round-robin"})
    assert only_mode.json()["includeDefaultInRotation"] is True
    assert only_mode.json()["rotationMode"] == "round-robin"
    only_flag = api.post("/api/settings/proxies/rotation", json={"includeDefaultInRotation": False})
    assert only_flag.json()["rotationMode"] == "round-robin"
    assert only_flag.json()["includeDefaultInRotation"] is False
    for bad in ({"rotationMode": "sticky"}, {"includeDefaultInRotation": "maybe"}):
        refused = api.post("/api/settings/proxies/rotation", json=bad)
        assert refused.status_code == 400 and refused.json()["error"] == "INVALID_BODY", bad

    api.post("/api/settings/proxies/default", json={"id": a})
    bulk = api.request("DELETE", "/api/settings/proxies", json={"ids": [a, c, "proxy_nope"]})
    assert [p["id"] for p in _saved(bulk)] == [b]
    assert bulk.json()["defaultProxyId"] == "host"  # the default was among them
    for bad, code in (
        ({}, "MISSING_IDS"),
        ({"ids": []}, "MISSING_IDS"),
        ({"ids": [1]}, "INVALID_BODY"),
    ):
        refused = api.request("DELETE", "/api/settings/proxies", json=bad)
        assert refused.status_code == 400 and refused.json()["error"] == code, bad
    assert [p["id"] for p in _saved(api.get("/api/settings/proxies"))] == [b]
