"""Keeping secrets out of what is logged and shown: URL credentials and secret variables.

``SECRET_MASK`` stands in for every hidden value: in run logs and results, and in place of a
secret variable's value wherever a task is shown. A task saved back with the mask where a
secret's value was keeps the stored value (:func:`keep_masked_secrets`).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from structlog.typing import EventDict, WrappedLogger

from figranium_common.jsontypes import JsonObject, JsonValue

SECRET_MASK = "********"

# ``scheme://userinfo@`` anywhere in a text. The userinfo ends at the last "@" before the
# host's end, as WHATWG parses it, so a password holding an "@" is hidden whole.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s]*)@")


def redact_url(url: str) -> str:
    """``url`` with its ``user:password@`` replaced by the mask; other URLs as given."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_urls_in(url)
    if "@" not in parts.netloc:
        return redact_urls_in(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{SECRET_MASK}@{host}"))


def redact_urls_in(text: str) -> str:
    """Every ``scheme://user:password@`` in a free text, with the userinfo masked."""
    if "@" not in text or "://" not in text:
        return text
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{SECRET_MASK}@", text)


def redact_log_event(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """structlog processor: URL credentials in any string value of a log line are masked."""
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact_urls_in(value)
    return event


class Redactor:
    """Hides a run's secret values (secret variables, text typed into password fields)
    wherever they would show: a value is replaced by the mask, longest first, so a secret
    that contains another is hidden whole."""

    def __init__(self, values: set[str] | None = None) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for value in values or ():
            self.add(value)

    def add(self, value: str) -> None:
        if value and value != SECRET_MASK and value not in self._values:
            self._values.add(value)
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def text(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(SECRET_MASK, text)
        return redact_urls_in(text)

    def value(self, value: JsonValue) -> JsonValue:
        """Every string inside a JSON-like value hidden (object keys too)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        return value


# --- secret variables of a task -------------------------------------------------------


def _declared(task: JsonValue) -> JsonObject:
    """The variables ``task`` declares; none when it is not an object or has none."""
    declared = task.get("variables") if isinstance(task, dict) else None
    return declared if isinstance(declared, dict) else {}


def secret_names(task: JsonValue) -> set[str]:
    """Names of the variables ``task`` declares ``{"type": "secret"}``."""
    return {
        name
        for name, spec in _declared(task).items()
        if isinstance(spec, dict) and spec.get("type") == "secret"
    }


def mask_task(task: JsonValue) -> JsonValue:
    """``task`` as shown: each secret variable's value (when it has one) is the mask."""
    names = secret_names(task)
    if not names or not isinstance(task, dict):
        return task
    variables = dict(_declared(task))
    for name in names:
        spec = variables[name]
        if isinstance(spec, dict) and spec.get("value") not in (None, ""):
            variables[name] = {**spec, "value": SECRET_MASK}
    return {**task, "variables": variables}


def mask_run_variables(task: JsonValue, values: JsonValue) -> JsonValue:
    """A run's variable values as shown: those ``task`` declares secret are masked."""
    names = secret_names(task)
    if not names or not isinstance(values, dict):
        return values
    return {k: SECRET_MASK if k in names and v not in (None, "") else v for k, v in values.items()}


def keep_masked_secrets(body: JsonObject, stored: JsonObject | None) -> JsonObject:
    """``body`` about to be saved, where a secret variable still holds the mask: the value
    ``stored`` has for it is kept, so saving back what GET answered changes no secret."""
    names = secret_names(body)
    variables = body.get("variables")
    if not names or not isinstance(variables, dict):
        return body
    before = _declared(stored or {})
    kept = dict(variables)
    for name in names:
        spec = kept[name]
        if not isinstance(spec, dict) or spec.get("value") != SECRET_MASK:
            continue
        previous = before.get(name)
        if isinstance(previous, dict) and "value" in previous:
            kept[name] = {**spec, "value": previous["value"]}
    return {**body, "variables": kept}
