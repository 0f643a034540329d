"""Checks on what a client sends before anything is stored or queued: tasks and webhook URLs.

Shared by the routes that save tasks, run them (saved or ad hoc), schedule them and
generate selectors for them, so each refuses the same input with the same answer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from figranium_common.blocks import BlockStructureError, build_blocks
from figranium_common.errors import InvalidUrlError
from figranium_common.jsontypes import JsonMapping
from figranium_common.models import Task
from figranium_common.outbound_urls import check_url
from figranium_gateway.errors import ApiError


class TaskOutput(BaseModel):
    """A task's ``output``: where a successful run's data goes. Only checked: the task keeps
    the object as given, unknown fields included. Figranium's editor saves the output while
    it is being set up (``credentialId`` and ``tableId`` still empty), so empty is allowed
    here; such a target fails at run time, as ``onError`` says."""

    model_config = ConfigDict(extra="allow")
    provider: Literal["baserow"]
    credentialId: str
    tableId: str
    databaseId: str | None = None
    onError: Literal["fail", "ignore"] | None = None

    @field_validator("tableId", "databaseId", mode="before")
    @classmethod
    def _baserow_id(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return str(value)
        digits = isinstance(value, str) and value.isascii() and value.isdigit()
        if value is None or value == "" or digits:
            return value  # None: no databaseId is fine, and tableId's type refuses it
        raise ValueError("must be a Baserow id: digits, as a string or a number")


class _OutputOnly(BaseModel):
    output: TaskOutput | None = None


def validate_task(body: JsonMapping) -> Task:
    """Types first, then the block structure: nothing invalid is ever written."""
    task = Task.model_validate(body)
    _OutputOnly.model_validate({"output": body.get("output")})
    try:
        build_blocks(task.actions)
    except BlockStructureError as exc:
        raise ApiError(400, "INVALID_BODY", exc.details, actionIndex=exc.index) from None
    return task


async def check_outbound(
    url: str,
    where: str,
    *,
    allow_private: bool,
    allow_metadata: bool = False,
    code: str = "INVALID_URL",
) -> None:
    """Refuse (400 ``code``, naming the field ``where``) a URL the outbound rules forbid.

    Every URL the platform will connect to passes these rules (SSRF) when it is sent, so a
    client learns at once what a runner or a delivery would refuse later.
    """
    try:
        await check_url(url, allow_private=allow_private, allow_metadata=allow_metadata)
    except InvalidUrlError as exc:
        raise ApiError(400, code, f"{where}: {exc.details}") from None


def _invalid_webhook_url(details: str) -> ApiError:
    return ApiError(400, "INVALID_WEBHOOK_URL", f"webhookUrl: {details}")


def webhook_url_type(raw: JsonMapping) -> None:
    """Refuse a ``webhookUrl`` that is not a string before the body's model sees it."""
    value = raw.get("webhookUrl")
    if value is not None and not isinstance(value, str):
        raise _invalid_webhook_url(f"must be a URL string, not {type(value).__name__}")


async def checked_webhook_url(value: str | None, *, allow_private: bool) -> str | None:
    """The URL to deliver to, checked as every outbound URL is; blank means none.

    Checked again at every attempt (the host may resolve elsewhere by then).
    """
    if value is None or not value.strip():
        return None
    url = value.strip()
    await check_outbound(url, "webhookUrl", allow_private=allow_private, code="INVALID_WEBHOOK_URL")
    return url
