"""Every console page says how long the gateway took to make it (``Server-Timing``), the
figure `make bench` reads; API answers do not carry it."""

from __future__ import annotations

import re

import httpx

APP_TIMING = re.compile(r"app;dur=(\d+\.\d)")


def server_ms(response: httpx.Response) -> float:
    found = APP_TIMING.fullmatch(response.headers.get("server-timing", ""))
    assert found, f"{response.request.url}: {response.headers.get('server-timing')!r}"
    return float(found.group(1))


def test_console_pages_carry_their_server_time(browser_like: httpx.Client) -> None:
    for path in ("/", "/console/executions", "/console/schedules"):
        answer = browser_like.get(path)
        assert answer.status_code == 200
        assert 0 <= server_ms(answer) < 30_000
    missing = browser_like.get("/console/executions/no-such-execution")
    assert missing.status_code == 404
    assert server_ms(missing) >= 0


def test_the_sign_in_redirect_carries_it_and_the_api_does_not(api: httpx.Client) -> None:
    with httpx.Client(base_url=str(api.base_url)) as anonymous:
        redirect = anonymous.get("/", follow_redirects=False)
    assert redirect.status_code == 303
    assert server_ms(redirect) >= 0
    assert "server-timing" not in api.get("/api/tasks/list").headers
