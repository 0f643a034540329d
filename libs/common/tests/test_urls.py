from __future__ import annotations

import pytest

from figranium_common.errors import InvalidUrlError
from figranium_common.outbound_urls import check_url

REFUSED = [
    "ftp://example.com/",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "http://localhost/",
    "http://app.localhost/",
    "http://127.0.0.1/",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://017700000001/",
    "http://0.0.0.0/",
    "http://10.0.0.1/",
    "http://192.168.1.1/",
    "http://172.16.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
    "http://public@127.0.0.1/",
    "http://localhost./",
    "http://224.0.0.1/",
    "http:///nohost",
]


@pytest.mark.parametrize("url", REFUSED)
async def test_private_and_odd_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidUrlError):
        await check_url(url, allow_private=False)


async def test_public_literal_addresses_pass() -> None:
    assert [str(a) for a in await check_url("https://93.184.215.14/x", allow_private=False)] == [
        "93.184.215.14"
    ]


async def test_private_networks_can_be_allowed_but_not_metadata() -> None:
    await check_url("http://127.0.0.1:8080/", allow_private=True)
    await check_url("http://localhost:8080/", allow_private=True)
    with pytest.raises(InvalidUrlError):
        await check_url("http://169.254.169.254/", allow_private=True)
    with pytest.raises(InvalidUrlError):
        await check_url("gopher://127.0.0.1/", allow_private=True)
