"""Reading the console's plain forms, and the refusals a form's page shows."""

from __future__ import annotations

from multidict import MultiMapping
from pydantic import ValidationError

from figranium_gateway.errors import ApiError, describe_validation_error

FormData = MultiMapping[object]


def text(form: FormData, name: str) -> str:
    """A text field, trimmed; empty when absent (or a file)."""
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def problem(exc: ApiError | ValidationError) -> tuple[int, str]:
    """The status and the message (the API's code and details) a refused form shows."""
    if isinstance(exc, ApiError):
        return exc.status, f"{exc.code}: {exc.details}"
    return 400, f"INVALID_BODY: {describe_validation_error(exc)}"
