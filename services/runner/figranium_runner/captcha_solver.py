"""A captcha solving service's createTask/getTaskResult API (2Captcha, Anti-Captcha,
CapSolver and YesCaptcha speak it), as Figranium calls it.

``POST <url>/createTask {clientKey, task}`` answers ``{errorId, taskId}``; ``POST
<url>/getTaskResult {clientKey, taskId}`` answers ``{status: "processing"}`` until
``{status: "ready", solution: {gRecaptchaResponse | token}}``. Every call goes through the
runner's outbound URL policy and follows no redirect; the client key never shows in a
message.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from figranium_common.errors import FigraniumError
from figranium_common.jsontypes import JsonObject, JsonValue
from figranium_common.models import CaptchaSolver
from figranium_common.outbound_http import safe_request
from figranium_runner.captcha_widgets import Widget

TASK_TYPES = {
    "recaptcha_v2": "RecaptchaV2TaskProxyless",
    "recaptcha_v3": "RecaptchaV3TaskProxyless",
    "hcaptcha": "HCaptchaTaskProxyless",
    "turnstile": "TurnstileTaskProxyless",
}
POLL_SECONDS = 1.0


class SolverFailed(FigraniumError):
    code = "CAPTCHA_SOLVER_FAILED"


@dataclass(frozen=True)
class SolverCall:
    """One solve: the service, where the widget is, and the run's outbound policy."""

    solver: CaptchaSolver
    page_url: str
    user_agent: str
    allow_private: bool
    allow_metadata: bool = False

    def task(self, widget: Widget) -> JsonObject:
        """The service's task for ``widget``, in the common createTask dialect."""
        task: JsonObject = {
            "type": TASK_TYPES[widget.captcha_type],
            "websiteURL": self.page_url,
            "websiteKey": widget.site_key,
        }
        if widget.action:
            task["action" if widget.captcha_type == "turnstile" else "pageAction"] = widget.action
        if widget.data_s:
            task["recaptchaDataSValue"] = widget.data_s
        if widget.invisible and widget.captcha_type != "recaptcha_v3":
            task["isInvisible"] = True
        if self.user_agent:
            task["userAgent"] = self.user_agent
        return task

    def _hidden(self, text: str) -> str:
        key = self.solver.client_key
        return text.replace(key, "[REDACTED]") if len(key) >= 3 else text

    async def _post(self, endpoint: str, body: JsonObject, deadline: float) -> JsonObject:
        url = self.solver.base_url.rstrip("/") + endpoint
        left = deadline - time.monotonic()
        if left <= 0:
            raise SolverFailed("the solver timed out waiting for a solution")
        try:
            response = await safe_request(
                "POST",
                url,
                allow_private=self.allow_private,
                allow_metadata=self.allow_metadata,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                body=json.dumps({"clientKey": self.solver.client_key, **body}),
                timeout=left,
                max_redirects=0,
                max_bytes=1024 * 1024,
            )
        except FigraniumError as exc:
            raise SolverFailed(f"{endpoint}: {self._hidden(exc.details)}") from None
        try:
            payload: JsonValue = json.loads(response.text())
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise SolverFailed(f"{endpoint}: malformed JSON (HTTP {response.status})")
        if response.status >= 400 or payload.get("errorId"):
            reason = payload.get("errorDescription") or payload.get("errorCode")
            raise SolverFailed(f"{endpoint}: {self._hidden(str(reason or response.status))}")
        return payload

    async def solve(self, widget: Widget, deadline: float) -> str:
        """The token the service found for ``widget`` before ``deadline`` (monotonic)."""
        created = await self._post("/createTask", {"task": self.task(widget)}, deadline)
        task_id = created.get("taskId")
        if task_id in (None, ""):
            raise SolverFailed("/createTask: the solver returned no taskId")
        while True:
            result = await self._post("/getTaskResult", {"taskId": task_id}, deadline)
            status = result.get("status")
            if status == "ready":
                solution = result.get("solution")
                found = solution if isinstance(solution, dict) else {}
                for field in ("gRecaptchaResponse", "token", "answer"):
                    token = found.get(field)
                    if isinstance(token, str) and token:
                        return token
                raise SolverFailed("/getTaskResult: the solver returned no usable token")
            if status != "processing":
                raise SolverFailed(f"/getTaskResult: unexpected status {status!r}")
            await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
