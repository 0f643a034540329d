"""Proxies as clients send them, made into entries of the ``proxies`` setting.

One proxy comes as Figranium's editor sends it (``server``, ``username``, ``password``,
``label``, ``isRotatingPool``, ``estimatedPoolSize``); an import also takes Figranium's
other spellings (``url``/``proxy``, ``user``/``pass``) and text entries: a URL, with
credentials in it or not, or the ``host:port:username:password`` lines of proxy lists. A
``server`` without a scheme is an ``http://`` one, as in Figranium. Every server passes the
outbound rules (SSRF) when it is saved; passwords are stored sealed.
"""

from __future__ import annotations

import secrets
from urllib.parse import unquote, urlsplit

from pydantic import AliasChoices, BaseModel, Field

from figranium_common.config import Config
from figranium_common.jsontypes import JsonMapping, JsonObject
from figranium_common.models import now_ms
from figranium_common.proxy_choice import PROXY_PASSWORD
from figranium_common.secretbox import SecretBox
from figranium_gateway.errors import ApiError
from figranium_gateway.validation import check_outbound

PROXY_SCHEMES = ("http", "https", "socks5")
# Fields a new version of a proxy replaces; the password only when sent (it is never
# answered, so a client cannot send it back), the default flag never.
_REPLACED = ("server", "username", "label", "isRotatingPool", "estimatedPoolSize")


class ProxyFields(BaseModel):
    """One proxy, as Figranium's editor sends it."""

    server: str | None = Field(
        default=None,
        description="host:port (http:// is assumed) or http://, https://, socks5://host:port",
    )
    username: str | None = None
    password: str | None = Field(default=None, description="stored sealed, never answered")
    label: str | None = None
    isRotatingPool: bool = Field(default=False, description="the server hands out many IPs")
    estimatedPoolSize: int | None = Field(default=None, ge=1)


class ImportedProxy(ProxyFields):
    """One proxy of an import, under any of Figranium's spellings."""

    server: str | None = Field(
        default=None, validation_alias=AliasChoices("server", "url", "proxy")
    )
    username: str | None = Field(default=None, validation_alias=AliasChoices("username", "user"))
    password: str | None = Field(default=None, validation_alias=AliasChoices("password", "pass"))


def missing_server(where: str) -> ApiError:
    return ApiError(400, "MISSING_SERVER", f"{where}: a proxy needs its server (host:port)")


def require_server(raw: JsonMapping, where: str, names: tuple[str, ...] = ("server",)) -> None:
    """Refuse, as Figranium does, a proxy whose server is absent or not text."""
    server = next((raw[name] for name in names if raw.get(name)), None)
    if not isinstance(server, str) or not server.strip():
        raise missing_server(where)


def parse_text_entry(text: str, where: str) -> JsonObject:
    """A text entry of an import: ``scheme://[user:pass@]host:port``,
    ``user:pass@host:port`` or ``host:port[:username[:password]]``."""
    text = text.strip()
    if not text:
        raise missing_server(where)
    if "://" not in text and "@" not in text:
        host, _, rest = text.partition(":")
        port, _, given = rest.partition(":")
        username, _, password = given.partition(":")
        if not host or not port:
            raise ApiError(400, "INVALID_BODY", f"{where}: not host:port[:username:password]")
        server = f"{host}:{port}"
    else:
        try:
            parts = urlsplit(text if "://" in text else f"http://{text}")
            username, password = unquote(parts.username or ""), unquote(parts.password or "")
        except ValueError as exc:
            raise ApiError(400, "INVALID_BODY", f"{where}: not a valid URL ({exc})") from None
        server = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    # Absent, not empty: importing a proxy again without its password keeps the saved one.
    credentials = {"username": username, "password": password}
    return {"server": server, **{name: value for name, value in credentials.items() if value}}


async def checked_server(raw: str, where: str, config: Config) -> str:
    """``raw`` as stored: with a scheme, without a trailing slash; refused (400) unless it
    is a proxy's scheme, host and port that the outbound rules allow."""
    server = raw.strip()
    if "://" not in server:
        server = f"http://{server}"
    try:
        parts = urlsplit(server)
        host, _port = parts.hostname, parts.port  # .port refuses a malformed port
    except ValueError as exc:
        raise ApiError(400, "INVALID_BODY", f"{where}: not a valid URL ({exc})") from None
    scheme, _, rest = server.partition(":")
    if scheme.lower() not in PROXY_SCHEMES:
        raise ApiError(400, "INVALID_BODY", f"{where}: must be http://, https:// or socks5://")
    if not host:
        raise ApiError(400, "INVALID_BODY", f"{where}: has no host")
    if parts.username is not None or parts.password is not None:
        # Inside the URL they would be answered by GET; they have their own fields.
        raise ApiError(400, "INVALID_BODY", f"{where}: put credentials in username and password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ApiError(400, "INVALID_BODY", f"{where}: only scheme, host and port")
    # The same outbound rules as every other URL the platform connects to (SSRF), on the
    # text as given: Chromium reads it too, and a backslash or "%" could make it another host.
    await check_outbound(
        f"http:{rest}",
        where,
        allow_private=config.allow_private_networks,
        allow_metadata=config.allow_metadata_address,
    )
    return f"{scheme.lower()}:{rest}".rstrip("/")


async def entry_of(fields: ProxyFields, prefix: str, config: Config, box: SecretBox) -> JsonObject:
    """What the ``proxies`` setting stores for ``fields`` (no id, no default flag yet);
    ``password`` only when the fields set it (None: remove the stored one). ``prefix``
    names where the fields are in the body, for errors (``proxies[2].``)."""
    if fields.server is None:
        raise missing_server(f"{prefix}server")
    entry: JsonObject = {
        "server": await checked_server(fields.server, f"{prefix}server", config),
        "isRotatingPool": fields.isRotatingPool,
    }
    for name in ("username", "label", "estimatedPoolSize"):
        value = getattr(fields, name)
        if value:
            entry[name] = value
    if "password" in fields.model_fields_set:
        entry["password"] = box.seal(fields.password, PROXY_PASSWORD) if fields.password else None
    return entry


def new_proxy(entry: JsonObject, default: bool = False) -> JsonObject:
    """A saved proxy made of ``entry``: a fresh id, the default flag, no empty password."""
    added: JsonObject = {"id": f"proxy_{now_ms()}_{secrets.token_hex(4)}"}
    added.update((name, value) for name, value in entry.items() if value is not None)
    added["default"] = default
    return added


def updated_proxy(saved: JsonObject, entry: JsonObject) -> JsonObject:
    """``saved`` with the fields of ``entry`` in place of its own (its id and default kept)."""
    kept = {name: value for name, value in saved.items() if name not in _REPLACED}
    merged = {**kept, **entry}
    if merged.get("password") is None:
        merged.pop("password", None)
    return merged
