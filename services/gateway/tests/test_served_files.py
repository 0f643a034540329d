"""Headers for stored files: what may show inline, and attachment names of any text."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from figranium_gateway.served_files import attachment, file_headers


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("a.png", "image/png"),
        ("a.JPG", "image/jpeg"),
        ("b.jpeg", "image/jpeg"),
        ("v.webm", "video/webm"),
    ],
)
def test_images_and_videos_are_inline(name: str, content_type: str) -> None:
    assert file_headers(name) == {"Content-Type": content_type, "X-Content-Type-Options": "nosniff"}


@pytest.mark.parametrize(
    "name", ["r.html", "r.svg", "x.js", "r.xhtml", "r.xml", "r.png.html", "noext"]
)
def test_everything_else_is_an_inert_attachment(name: str) -> None:
    headers = file_headers(name)
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Disposition"].startswith("attachment; ")


def test_any_name_round_trips_through_rfc_5987() -> None:
    name = 'rapport d\'été "final"\\;\r\n.pdf'
    value = attachment(name)
    # One header line, and a fallback an old client can use as it is.
    assert value.isascii() and "\r" not in value and "\n" not in value
    assert 'filename="rapport d\'_t_ _final__;__.pdf"' in value
    extended = value.split("; filename*=", 1)[1]
    assert extended.startswith("UTF-8''")
    assert unquote(extended.removeprefix("UTF-8''"), errors="strict") == name
