"""The captcha solver setting: what ``/api/settings/captcha`` stores, and which runs get it.

The gateway stores ``{baseUrl, clientKey}`` under one settings key, the client key sealed
with the master key. Runners never read the database: the solver travels in the run
request (sealed under the transit key) of the runs that may need it, those whose task or
started tasks solve captchas.
"""

from __future__ import annotations

from collections.abc import Iterable

from figranium_common.jsontypes import JsonValue
from figranium_common.models import CaptchaSolver, Task
from figranium_common.secretbox import SecretBox

CAPTCHA_SETTING = "captcha_solver"
CAPTCHA_KEY_PURPOSE = "captcha-solver-key"


def solves_captchas(tasks: Iterable[Task]) -> bool:
    """Whether any of the tasks may call the solver: ``autoSolveCaptcha`` or an action
    ``solve_captcha``."""
    return any(
        task.autoSolveCaptcha or any(action.type == "solve_captcha" for action in task.actions)
        for task in tasks
    )


def stored_solver(stored: JsonValue, box: SecretBox) -> CaptchaSolver | None:
    """The stored setting with its key opened; None when no solver URL is stored."""
    if not isinstance(stored, dict):
        return None
    base_url = stored.get("baseUrl")
    if not isinstance(base_url, str) or not base_url:
        return None
    sealed = stored.get("clientKey")
    key = box.open(sealed, CAPTCHA_KEY_PURPOSE) if isinstance(sealed, str) and sealed else ""
    return CaptchaSolver(base_url=base_url, client_key=key)
