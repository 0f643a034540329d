"""A fake captcha solving service speaking the createTask/getTaskResult API (2Captcha,
Anti-Captcha, CapSolver), and pages with captcha widgets rendered as the real ones are:
a container with ``data-sitekey`` holding the widget's frame."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.integration.pages import QuietHandler, serve_http

TOKEN = "03AGdBq2-solved-token"


@dataclass
class FakeSolver:
    """What the fake was asked, and how it answers: ``processing`` polls before "ready",
    or ``error`` (an errorDescription) for every call."""

    url: str = ""
    processing: int = 1
    error: str | None = None
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def answer(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((path, body))
        if self.error is not None:
            return {"errorId": 1, "errorCode": "ERROR", "errorDescription": self.error}
        if path == "/createTask":
            return {"errorId": 0, "taskId": 4242}
        polls = sum(1 for called, _ in self.calls if called == "/getTaskResult")
        if path != "/getTaskResult" or body.get("taskId") != 4242:
            return {"errorId": 16, "errorDescription": "ERROR_NO_SUCH_CAPCHA_ID"}
        if polls <= self.processing:
            return {"errorId": 0, "status": "processing"}
        kind = self.created()["type"]
        solution = (
            {"token": TOKEN} if kind.startswith("Turnstile") else {"gRecaptchaResponse": TOKEN}
        )
        return {"errorId": 0, "status": "ready", "solution": solution}

    def created(self) -> dict[str, Any]:
        """The task of the last createTask."""
        tasks = [body["task"] for path, body in self.calls if path == "/createTask"]
        assert tasks, self.calls
        task: dict[str, Any] = tasks[-1]
        return task


@contextmanager
def serve_solver(solver: FakeSolver) -> Iterator[FakeSolver]:
    class Handler(QuietHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            answer = solver.answer(self.path, body)
            self.send_body(json.dumps(answer).encode(), "application/json")

    with serve_http(Handler) as url:
        solver.url = url
        yield solver


def _page(body: str) -> str:
    return f"<!doctype html><html><head><title>start</title></head><body>{body}</body></html>"


# A widget's frame, as its checkbox shows once rendered.
_CHECKBOX_FRAME = (
    '<iframe title="widget" style="width:300px;height:80px" srcdoc="'
    "<div id=&quot;{id}&quot; role=&quot;checkbox&quot; style=&quot;width:24px;height:24px;"
    'border:1px solid #999&quot;></div>"></iframe>'
)
TURNSTILE_FRAME_URL = (
    "https://challenges.cloudflare.com/cdn-cgi/challenge-platform/h/b/turnstile/if/ov2/av0"
    "/rcv/abc/0x4AAAAAAAturnstileKey/auto/normal"
)
CAPTCHA_PAGES = {
    # reCAPTCHA v2: the container first, its frame rendered 300 ms later (api.js loading).
    "/recaptcha": _page(
        '<form><div class="g-recaptcha" data-sitekey="site-rc" data-callback="onSolved"></div>'
        '<textarea name="g-recaptcha-response" style="display:none"></textarea></form>'
        "<script>function onSolved(t) { document.title = 'solved:' + t; }"
        "setTimeout(() => { document.querySelector('.g-recaptcha').innerHTML = "
        + json.dumps(_CHECKBOX_FRAME.format(id="recaptcha-anchor"))
        + "; }, 300);</script>"
    ),
    "/hcaptcha": _page(
        '<div class="h-captcha" data-sitekey="site-hc">'
        + _CHECKBOX_FRAME.format(id="checkbox")
        + '<textarea name="h-captcha-response"></textarea>'
        '<textarea name="g-recaptcha-response"></textarea></div>'
    ),
    # Turnstile rendered explicitly: no data-sitekey, its frame in a closed shadow root.
    "/turnstile": _page(
        '<div id="ts"></div><input type="hidden" name="cf-turnstile-response">'
        "<script>const root = document.getElementById('ts').attachShadow({mode: 'closed'});"
        f'root.innerHTML = \'<iframe src="{TURNSTILE_FRAME_URL}"'
        ' style="width:300px;height:65px"></iframe>\';'
        "window.turnstileCallback = (t) => { document.title = 'turnstile:' + t; };</script>"
    ),
    "/invisible": _page('<div class="g-recaptcha" data-sitekey="site-inv" data-size="invisible">'),
    "/no-captcha": _page('<p>nothing to solve</p><button id="next">next</button>'),
    # The widget shows only after a click (a login form asking for it).
    "/click-captcha": _page(
        '<button id="login" onclick="showWidget()">log in</button><div id="w"></div>'
        "<script>function showWidget() { document.getElementById('w').innerHTML = "
        + json.dumps(
            '<div class="g-recaptcha" data-sitekey="site-click">'
            + _CHECKBOX_FRAME.format(id="recaptcha-anchor")
            + '</div><textarea name="g-recaptcha-response"></textarea>'
        )
        + "; }</script>"
    ),
}


@contextmanager
def serve_captcha_pages() -> Iterator[str]:
    """CAPTCHA_PAGES on a loopback port; yields the base URL."""

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            page = CAPTCHA_PAGES.get(self.path.split("?")[0])
            if page is None:
                self.send_body(b"not found", "text/plain", status=404)
            else:
                self.send_body(page.encode(), "text/html; charset=utf-8")

    with serve_http(Handler) as url:
        yield url
