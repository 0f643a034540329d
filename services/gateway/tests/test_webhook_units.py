from __future__ import annotations

import hashlib
import hmac

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from figranium_common.errors import FigraniumError, InvalidUrlError, TooManyRedirects
from figranium_common.models import now_ms
from figranium_common.outbound_http import safe_request
from figranium_common.secretbox import SecretBox
from figranium_gateway import webhook_delivery
from figranium_gateway.webhook_delivery import (
    backoff_seconds,
    judge_error,
    judge_status,
    next_state,
    signature,
    verify,
)


def test_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    body = b'{"executionId":"exec_1"}'
    header = signature("whsec_x", 1700000000, body)
    expected = hmac.new(b"whsec_x", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify("whsec_x", header, body, now=1700000100)
    assert not verify("whsec_y", header, body, now=1700000100)
    assert not verify("whsec_x", header, body + b" ", now=1700000100)
    assert not verify("whsec_x", header, body, now=1700000000 + 301)  # too old: a replay
    assert not verify("whsec_x", "v1=abc", body, now=1700000000)


def test_during_an_overlap_both_secrets_sign_the_new_one_first() -> None:
    body = b"{}"
    header = signature("whsec_new", 1700000000, body, "whsec_old")
    new = hmac.new(b"whsec_new", b"1700000000." + body, hashlib.sha256).hexdigest()
    old = hmac.new(b"whsec_old", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={new},v1={old}"
    assert verify("whsec_new", header, body, now=1700000000)
    assert verify("whsec_old", header, body, now=1700000000)
    assert not verify("whsec_other", header, body, now=1700000000)
    # Two timestamps make the header ambiguous: refused.
    assert not verify("whsec_new", "t=1700000000," + header, body, now=1700000000)


def test_the_previous_secret_signs_only_until_the_overlap_ends() -> None:
    box = SecretBox(b"k" * 32)
    sealed = {
        "secret": box.seal("whsec_new", webhook_delivery.SECRET_PURPOSE),
        "previous": box.seal("whsec_old", webhook_delivery.SECRET_PURPOSE),
    }
    later = now_ms() + 60_000
    assert webhook_delivery._open_secrets(box, {**sealed, "previousUntil": later}) == [
        "whsec_new",
        "whsec_old",
    ]
    assert webhook_delivery._open_secrets(box, {**sealed, "previousUntil": now_ms() - 1}) == [
        "whsec_new"
    ]
    assert webhook_delivery._open_secrets(box, {"secret": sealed["secret"]}) == ["whsec_new"]
    assert webhook_delivery._open_secrets(box, None) == []


def test_secrets_are_new_and_prefixed() -> None:
    first, second = webhook_delivery.new_secret(), webhook_delivery.new_secret()
    assert first.startswith("whsec_") and len(first) > 40 and first != second


def test_backoff_grows_to_about_an_hour_with_jitter() -> None:
    middle = [backoff_seconds(n, 30, rand=lambda: 0.5) for n in range(1, 6)]
    assert middle == [30, 120, 300, 900, 2400]
    assert 3000 < sum(middle) < 4500  # six attempts over about an hour
    assert backoff_seconds(9, 30, rand=lambda: 0.5) == 2400  # capped
    low = backoff_seconds(1, 30, rand=lambda: 0.0)
    high = backoff_seconds(1, 30, rand=lambda: 1.0)
    assert low == pytest.approx(24) and high == pytest.approx(36)


def test_which_answers_are_retried() -> None:
    assert judge_status(200).delivered and judge_status(204).delivered
    for status in (500, 502, 503, 408, 429):
        attempt = judge_status(status, b"busy")
        assert attempt.retry and not attempt.delivered
        assert attempt.error == f"HTTP {status}: busy"
    for status in (400, 401, 404, 410, 301, 302):
        assert not judge_status(status).retry
    assert "redirect" in (judge_status(302).error or "")


def test_which_errors_are_retried() -> None:
    assert judge_error(FigraniumError("timed out", code="HTTP_ERROR")).retry
    assert not judge_error(FigraniumError("big", code="RESPONSE_TOO_LARGE")).retry
    assert not judge_error(TooManyRedirects("went elsewhere")).retry
    assert not judge_error(InvalidUrlError("resolves to a blocked address")).retry
    try:
        raise InvalidUrlError("cannot resolve host") from OSError("dns")
    except InvalidUrlError as exc:
        assert judge_error(exc).retry  # DNS may answer later


def test_attempts_run_out() -> None:
    retry = judge_status(503)
    assert next_state(retry, 1, 6) == "pending"
    assert next_state(retry, 6, 6) == "failed"
    assert next_state(judge_status(400), 1, 6) == "failed"
    assert next_state(judge_status(200), 6, 6) == "delivered"


async def test_redirects_are_not_followed() -> None:
    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    app = web.Application()
    app.router.add_post("/hook", moved)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("/hook"))
        with pytest.raises(TooManyRedirects) as caught:
            await safe_request("POST", url, allow_private=True, body=b"{}", max_redirects=0)
    assert not judge_error(caught.value).retry
