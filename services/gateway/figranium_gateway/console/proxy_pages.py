"""The console's proxies (Settings → Proxies): the saved proxies with the default and the
rotation, forms to add one, import many, edit, delete, choose the default and set the
rotation; all plain forms.

Every change goes through ``proxy_changes``, the code of the ``/api/settings/proxies``
routes, so the console stores nothing the API would refuse. Passwords are never shown:
the edit form holds the mask, and a mask sent back keeps the stored password.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web
from pydantic import BaseModel, ValidationError

from figranium_common.jsontypes import JsonObject
from figranium_common.proxy_choice import HOST_ID, ROTATION_MODES
from figranium_gateway import proxy_changes
from figranium_gateway.console.forms import FormData, problem, text
from figranium_gateway.console.rendering import render, see_other
from figranium_gateway.credential_changes import REDACTED, REDACTION_MARK
from figranium_gateway.errors import ApiError
from figranium_gateway.proxy_input import ProxyFields, require_server
from figranium_gateway.routing import Router

api = Router("console")

LIST = "/console/settings/proxies"
_HTML = {200: "text/html"}
_FORM_ANSWERS: dict[int, type[BaseModel] | None] = {303: None, 400: None, 403: None, 404: None}
_FORM_PAGES = {400: "text/html", 404: "text/html"}
# The form fields of one proxy, each the API body's field of the same name.
TEXT_FIELDS = ("server", "username", "label", "estimatedPoolSize")


def _proxy_url(proxy_id: str) -> str:
    return f"{LIST}/{quote(proxy_id, safe='')}"


def _proxy_id(request: web.Request) -> str:
    return proxy_changes.saved_id(request.match_info["proxy_id"])


def _fields_of(form: FormData) -> JsonObject:
    """The API body a proxy form means: empty fields are absent; a password field holding
    the mask is absent (the stored password stays), an empty one is null (none)."""
    raw: JsonObject = {name: value for name in TEXT_FIELDS if (value := text(form, name))}
    raw["isRotatingPool"] = "isRotatingPool" in form
    password = form.get("password", "")
    if isinstance(password, str) and REDACTION_MARK not in password:
        raw["password"] = password or None
    return raw


async def _list_page(
    request: web.Request,
    *,
    form: str | None = None,
    error: str | None = None,
    values: JsonObject | None = None,
    status: int = 200,
) -> web.Response:
    context = {
        "listing": await proxy_changes.listing(request.app),
        "modes": ROTATION_MODES,
        "host_id": HOST_ID,
        "form": form,
        "error": error,
        "values": values or {},
        "max_import": proxy_changes.MAX_IMPORT,
    }
    return render(request, "settings_proxies.html", context, status=status)


async def _refused(
    request: web.Request, form: str, exc: ApiError | ValidationError, values: JsonObject
) -> web.Response:
    status, message = problem(exc)
    return await _list_page(request, form=form, error=message, values=values, status=status)


@api.get(
    LIST,
    "The console's proxies: the list, the default, the rotation and the forms",
    responses={200: None},
    content_types=_HTML,
)
async def proxy_list(request: web.Request) -> web.Response:
    return await _list_page(request)


@api.post(
    LIST,
    "Add a proxy from the console's form (checked as POST /api/settings/proxies)",
    responses=_FORM_ANSWERS,
    content_types=_FORM_PAGES,
)
async def add_proxy(request: web.Request) -> web.Response:
    form = await request.post()
    raw = _fields_of(form)
    try:
        require_server(raw, "server")
        await proxy_changes.add(request.app, ProxyFields.model_validate(raw), False)
    except (ApiError, ValidationError) as exc:
        return await _refused(request, "add", exc, {**raw, "password": None})
    return see_other(LIST)


@api.post(
    LIST + "/import",
    "Import proxies, one a line (checked as POST /api/settings/proxies/import)",
    responses=_FORM_ANSWERS,
    content_types=_FORM_PAGES,
)
async def import_proxies(request: web.Request) -> web.Response:
    given = text(await request.post(), "lines")
    numbered = [(n, line.strip()) for n, line in enumerate(given.splitlines(), 1) if line.strip()]
    try:
        await proxy_changes.import_items(
            request.app, [line for _, line in numbered], lambda index: f"line {numbered[index][0]}"
        )
    except ApiError as exc:
        return await _refused(request, "import", exc, {"lines": given})
    return see_other(LIST)


@api.post(
    LIST + "/default",
    "Choose the default proxy from the console (field id; host: none)",
    responses=_FORM_ANSWERS,
    content_types=_FORM_PAGES,
)
async def choose_default(request: web.Request) -> web.Response:
    try:
        await proxy_changes.choose_default(request.app, text(await request.post(), "id"))
    except ApiError as exc:
        return await _refused(request, "default", exc, {})
    return see_other(LIST)


@api.post(
    LIST + "/rotation",
    "Set how tasks with rotateProxies rotate (rotationMode, includeDefaultInRotation)",
    responses=_FORM_ANSWERS,
    content_types=_FORM_PAGES,
)
async def set_rotation(request: web.Request) -> web.Response:
    form = await request.post()
    chosen = text(form, "rotationMode")
    mode = next((known for known in ROTATION_MODES if known == chosen), None)
    if mode is None:
        refusal = ApiError(400, "INVALID_BODY", f"rotationMode: one of {', '.join(ROTATION_MODES)}")
        return await _refused(request, "rotation", refusal, {})
    await proxy_changes.set_rotation(request.app, "includeDefaultInRotation" in form, mode)
    return see_other(LIST)


def _saved(listing: JsonObject, proxy_id: str) -> JsonObject:
    proxies = listing["proxies"]
    assert isinstance(proxies, list)
    for proxy in proxies:
        if isinstance(proxy, dict) and proxy["id"] == proxy_id:
            return proxy
    raise ApiError(404, "PROXY_NOT_FOUND", f"no proxy {proxy_id!r}")


async def _edit_page(
    request: web.Request,
    values: JsonObject | None = None,
    *,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    proxy_id = _proxy_id(request)
    proxy = _saved(await proxy_changes.listing(request.app), proxy_id)
    context = {
        "proxy": proxy,
        "values": values or proxy,
        "mask": REDACTED if proxy["hasPassword"] else "",
        "error": error,
        "action": _proxy_url(proxy_id) + "/edit",
    }
    return render(request, "settings_proxy.html", context, status=status)


@api.get(
    LIST + "/{proxy_id}/edit",
    "The console's form to edit a saved proxy (its password shown masked)",
    responses={200: None, 400: None, 404: None},
    content_types=_HTML,
)
async def edit_proxy(request: web.Request) -> web.Response:
    return await _edit_page(request)


@api.post(
    LIST + "/{proxy_id}/edit",
    "Save a proxy from the console's form (as PUT /api/settings/proxies/:id; the mask keeps"
    " the password)",
    responses=_FORM_ANSWERS,
    content_types={400: "text/html"},
)
async def save_proxy(request: web.Request) -> web.Response:
    proxy_id = _proxy_id(request)
    raw = _fields_of(await request.post())
    try:
        await proxy_changes.update(request.app, proxy_id, raw)
    except (ApiError, ValidationError) as exc:
        status, message = problem(exc)
        if status == 404:
            raise
        return await _edit_page(request, raw, error=message, status=status)
    return see_other(LIST)


@api.get(
    LIST + "/{proxy_id}/delete",
    "The console's confirmation before deleting a saved proxy",
    responses={200: None, 400: None, 404: None},
    content_types=_HTML,
)
async def confirm_delete(request: web.Request) -> web.Response:
    proxy_id = _proxy_id(request)
    proxy = _saved(await proxy_changes.listing(request.app), proxy_id)
    context = {
        "title": f"Delete the proxy “{proxy['label'] or proxy['server']}”?",
        "explanation": "Runs no longer go through it; when it is the default, the host"
        " itself (no proxy) becomes the default.",
        "action": _proxy_url(proxy_id) + "/delete",
        "cancel": LIST,
    }
    return render(request, "settings_delete.html", context)


@api.post(
    LIST + "/{proxy_id}/delete",
    "Delete a saved proxy (the console's confirmed form)",
    responses=_FORM_ANSWERS,
)
async def delete_proxy(request: web.Request) -> web.Response:
    await proxy_changes.delete(request.app, _proxy_id(request))
    return see_other(LIST)
