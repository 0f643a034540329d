"""The console's credentials (Settings → Credentials): the saved credentials with their
tokens masked, forms to add and edit one, and a confirmed delete; all plain forms.

Every change goes through ``credential_changes``, the code of the ``/api/credentials``
routes. Tokens are never shown: the edit form holds the mask, and a mask (or an empty
field) sent back keeps the stored token, as in the API.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web
from pydantic import BaseModel, ValidationError

from figranium_gateway import credential_changes
from figranium_gateway.console.forms import FormData, problem, text
from figranium_gateway.console.rendering import render, see_other
from figranium_gateway.credential_changes import (
    PROVIDERS,
    REDACTED,
    CredentialBody,
    CredentialUpdate,
)
from figranium_gateway.errors import ApiError
from figranium_gateway.routing import Router
from figranium_gateway.state import POOL
from figranium_gateway.store import credentials as credential_store

api = Router("console")

LIST = "/console/settings/credentials"
_HTML = {200: "text/html"}
_FORM_ANSWERS: dict[int, type[BaseModel] | None] = {303: None, 400: None, 403: None, 404: None}
FormValues = dict[str, str]


def _credential_url(credential_id: str) -> str:
    return f"{LIST}/{quote(credential_id, safe='')}"


def _credential_id(request: web.Request) -> str:
    return request.match_info["credential_id"]


def _values_from(form: FormData) -> FormValues:
    """The form's fields; the token as typed (it is never shown back)."""
    values = {name: text(form, name) for name in ("name", "provider", "baseUrl")}
    token = form.get("token", "")
    values["token"] = token if isinstance(token, str) else ""
    return values


def _config(values: FormValues) -> dict[str, str]:
    return {"baseUrl": values["baseUrl"], "token": values["token"]}


async def _list_page(
    request: web.Request,
    values: FormValues | None = None,
    *,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    context = {
        "credentials": await credential_store.list_credentials(request.app[POOL]),
        "providers": PROVIDERS,
        "redacted": REDACTED,
        "values": values or {"provider": PROVIDERS[0]},
        "error": error,
    }
    return render(request, "settings_credentials.html", context, status=status)


@api.get(
    LIST,
    "The console's credentials (tokens masked) and the form to add one",
    responses={200: None},
    content_types=_HTML,
)
async def credential_list(request: web.Request) -> web.Response:
    return await _list_page(request)


@api.post(
    LIST,
    "Add a credential from the console's form (checked as POST /api/credentials)",
    responses=_FORM_ANSWERS,
    content_types={400: "text/html"},
)
async def add_credential(request: web.Request) -> web.Response:
    values = _values_from(await request.post())
    try:
        body = CredentialBody.model_validate(
            {"name": values["name"], "provider": values["provider"], "config": _config(values)}
        )
        await credential_changes.create(request.app, body)
    except (ApiError, ValidationError) as exc:
        status, message = problem(exc)
        return await _list_page(request, {**values, "token": ""}, error=message, status=status)
    return see_other(LIST)


async def _edit_page(
    request: web.Request,
    values: FormValues | None = None,
    *,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    credential = await credential_changes.found(request.app, _credential_id(request))
    context = {
        "credential": credential,
        "values": values or {"name": credential.name, "baseUrl": credential.base_url},
        "mask": REDACTED if credential.has_token else "",
        "error": error,
        "action": _credential_url(credential.id) + "/edit",
    }
    return render(request, "settings_credential.html", context, status=status)


@api.get(
    LIST + "/{credential_id}/edit",
    "The console's form to edit a credential (its token shown masked)",
    responses={200: None, 404: None},
    content_types=_HTML,
)
async def edit_credential(request: web.Request) -> web.Response:
    return await _edit_page(request)


@api.post(
    LIST + "/{credential_id}/edit",
    "Save a credential from the console's form (as PUT /api/credentials/:id; the mask"
    " keeps the token)",
    responses=_FORM_ANSWERS,
    content_types={400: "text/html"},
)
async def save_credential(request: web.Request) -> web.Response:
    values = _values_from(await request.post())
    try:
        body = CredentialUpdate.model_validate({"name": values["name"], "config": _config(values)})
        await credential_changes.update(request.app, _credential_id(request), body)
    except (ApiError, ValidationError) as exc:
        status, message = problem(exc)
        if status == 404:
            raise
        return await _edit_page(request, values, error=message, status=status)
    return see_other(LIST)


@api.get(
    LIST + "/{credential_id}/delete",
    "The console's confirmation before deleting a credential",
    responses={200: None, 404: None},
    content_types=_HTML,
)
async def confirm_delete(request: web.Request) -> web.Response:
    credential = await credential_changes.found(request.app, _credential_id(request))
    context = {
        "title": f"Delete the credential “{credential.name}”?",
        "explanation": "Its token is deleted too; tasks pushing their output through it then"
        " fail that step.",
        "action": _credential_url(credential.id) + "/delete",
        "cancel": LIST,
    }
    return render(request, "settings_delete.html", context)


@api.post(
    LIST + "/{credential_id}/delete",
    "Delete a credential (the console's confirmed form)",
    responses=_FORM_ANSWERS,
)
async def delete_credential(request: web.Request) -> web.Response:
    await credential_changes.delete(request.app, _credential_id(request))
    return see_other(LIST)
