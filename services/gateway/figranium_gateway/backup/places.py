"""Which stored settings an archive carries, and how their secrets move in and out.

A setting's secrets are stored sealed under the master key, each with its purpose; leaving
for an archive they are opened (to :class:`Secret` strings) and written sealed with the
passphrase or masked, and coming back they are sealed under this server's master key.
Settings that are bookkeeping (the API key's digest, the proxy rotation's turn, the
retention job's last round) are never exported, imported nor reset: the API key especially,
so that no import or reset locks its user out.
"""

from __future__ import annotations

from typing import Final

from figranium_common.captcha_settings import CAPTCHA_KEY_PURPOSE, CAPTCHA_SETTING
from figranium_common.jsontypes import JsonObject, JsonValue
from figranium_common.proxy_choice import PROXY_PASSWORD, ROTATION_SETTING
from figranium_common.runs import PROXIES_SETTING
from figranium_common.secretbox import SecretBox, is_sealed
from figranium_gateway.ai.keys import MODELS_SETTING, PROVIDERS, keys_setting, purpose
from figranium_gateway.backup.archive import ArchiveError
from figranium_gateway.backup.sealing import Hide, Secret, map_strings
from figranium_gateway.routes.settings import SELECTOR_FINDER_SETTING
from figranium_gateway.webhook_delivery import SECRET_PURPOSE, SECRET_SETTING

# The settings each archive kind holds.
KIND_SETTINGS: Final[dict[str, tuple[str, ...]]] = {
    "proxies": (PROXIES_SETTING, ROTATION_SETTING),
    "settings": (
        SELECTOR_FINDER_SETTING,
        MODELS_SETTING,
        *(keys_setting(provider) for provider in PROVIDERS),
        CAPTCHA_SETTING,
        SECRET_SETTING,
    ),
}
# Where each setting's secrets are: the master key's purpose, and which strings of its
# value are secrets (object field names; "*": every string).
_SECRETS: Final[dict[str, tuple[str, frozenset[str]]]] = {
    PROXIES_SETTING: (PROXY_PASSWORD, frozenset({"password"})),
    CAPTCHA_SETTING: (CAPTCHA_KEY_PURPOSE, frozenset({"clientKey"})),
    SECRET_SETTING: (SECRET_PURPOSE, frozenset({"secret", "previous"})),
    **{keys_setting(p): (purpose(p), frozenset({"*"})) for p in PROVIDERS},
}


def place(key: str) -> str:
    """The associated data of a setting's secrets in an archive."""
    return f"setting:{key}"


def opened(key: str, value: JsonValue, box: SecretBox) -> JsonValue:
    """A stored setting with its sealed strings opened (as :class:`Secret`)."""
    found = _SECRETS.get(key)

    def open_one(text: str) -> str:
        if not is_sealed(text):
            return text
        if found is None:  # nothing seals here today; refuse rather than guess
            raise ArchiveError("EXPORT_FAILED", f"setting {key!r} holds a secret of unknown use")
        return Secret(box.open(text, found[0]))

    return map_strings(value, open_one)


def hidden(key: str, value: JsonValue, hide: Hide) -> JsonValue:
    """An opened setting as an archive holds it: each secret sealed or masked by ``hide``."""
    return map_strings(
        value, lambda text: hide(text, place(key)) if isinstance(text, Secret) else text
    )


def marked(key: str, value: JsonValue) -> JsonValue:
    """An archive's setting (sealed secrets already opened) with the secrets it holds in
    clear marked :class:`Secret` too, so that none is stored unsealed."""
    found = _SECRETS.get(key)
    if found is None:
        return value
    fields = found[1]
    if "*" in fields:
        return map_strings(value, Secret)
    return _mark_fields(value, fields)


def _mark_fields(value: JsonValue, fields: frozenset[str]) -> JsonValue:
    if isinstance(value, list):
        return [_mark_fields(item, fields) for item in value]
    if isinstance(value, dict):
        out: JsonObject = {}
        for name, item in value.items():
            secret = name in fields and isinstance(item, str) and item != ""
            out[name] = (
                Secret(item) if secret and isinstance(item, str) else _mark_fields(item, fields)
            )
        return out
    return value


def sealed(key: str, value: JsonValue, box: SecretBox) -> JsonValue:
    """An opened setting as it is stored: every :class:`Secret` sealed under the master key."""
    found = _SECRETS.get(key)

    def seal_one(text: str) -> str:
        if not isinstance(text, Secret):
            return text
        if found is None:
            raise ArchiveError("INVALID_FIGRANIUM_EXPORT", f"setting {key!r} holds no secrets")
        return box.seal(str(text), found[0])

    return map_strings(value, seal_one)
