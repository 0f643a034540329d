"""GET /api/actions/palette: the action palette, behind the key, revalidated by its ETag."""

from __future__ import annotations

import httpx

from figranium_common.action_palette import ACTION_PALETTE


def test_the_palette_is_answered_with_an_etag_and_revalidated(api: httpx.Client) -> None:
    answer = api.get("/api/actions/palette")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == ACTION_PALETTE.model_dump(mode="json")
    etag = answer.headers["etag"]
    assert etag.startswith('"') and "no-cache" in answer.headers["cache-control"]

    again = api.get("/api/actions/palette", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    other = api.get("/api/actions/palette", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.json() == answer.json()

    keyless = httpx.get(f"{api.base_url}/api/actions/palette")
    assert keyless.status_code == 401
