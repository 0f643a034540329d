"""What gateway and runner both need to speak to Baserow's REST API."""

from __future__ import annotations

import json

from figranium_common.outbound_http import SafeResponse

MAX_DETAILS = 300


def auth_headers(token: str) -> dict[str, str]:
    """Database tokens go in ``Authorization: Token …``; only ever there, never in a log."""
    return {"Authorization": f"Token {token}", "Accept": "application/json"}


def problem(response: SafeResponse) -> str:
    """Baserow's own explanation of a refusal (``{"error", "detail"}``), kept short."""
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if isinstance(answer, dict) and ("error" in answer or "detail" in answer):
        detail = answer.get("detail")
        if not isinstance(detail, str):
            detail = json.dumps(detail) if detail is not None else ""
        text = ": ".join(str(part) for part in (answer.get("error"), detail) if part)
    else:
        text = response.text().strip()
    return f"Baserow answered HTTP {response.status}: {text[:MAX_DETAILS] or 'no details'}"
