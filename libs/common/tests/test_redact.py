"""Masking URL credentials and secret variables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from figranium_common.redact import (
    SECRET_MASK,
    Redactor,
    keep_masked_secrets,
    mask_run_variables,
    mask_task,
    redact_url,
    redact_urls_in,
)

M = SECRET_MASK


def test_redact_url_masks_userinfo_only() -> None:
    assert redact_url("https://user:pa%40ss@host:8080/p?q=1#f") == f"https://{M}@host:8080/p?q=1#f"
    assert redact_url("http://token@example.com/") == f"http://{M}@example.com/"
    assert redact_url("https://example.com/a@b") == "https://example.com/a@b"
    assert redact_url("not a url") == "not a url"


def test_urls_in_free_text_are_masked() -> None:
    text = "to nats://svc:pw@10.0.0.1:4222, then http://a:b@c@host/x?next=mail@me.com; done"
    assert redact_urls_in(text) == (
        f"to nats://{M}@10.0.0.1:4222, then http://{M}@host/x?next=mail@me.com; done"
    )
    untouched = "mail alice@example.com about https://example.com/?who=bob@example.com"
    assert redact_urls_in(untouched) == untouched


def test_redactor_hides_longest_secret_first_in_nested_values() -> None:
    hide = Redactor({"abc", "abcdef", ""})
    assert hide.text("x abcdef y abc") == f"x {M} y {M}"
    assert hide.value({"k-abc": ["abcdef", 3, None], "u": "http://u:p@h/"}) == {
        f"k-{M}": [M, 3, None],
        "u": f"http://{M}@h/",
    }
    hide.add(M)  # the mask itself is no secret: hiding it would change nothing
    assert hide.text(M) == M


def test_structured_logs_never_show_url_passwords(
    json_log: Callable[[], list[dict[str, Any]]],
) -> None:
    structlog.get_logger("t").warning(
        "nats.connect_retry", url="nats://runner:s3cret@127.0.0.1:4222", error="x"
    )
    line = json_log()[-1]
    assert line["url"] == f"nats://{M}@127.0.0.1:4222"


TASK = {
    "id": "t",
    "variables": {
        "token": {"type": "secret", "value": "real-token"},
        "empty": {"type": "secret", "value": ""},
        "name": {"type": "string", "value": "shown"},
    },
}


def test_tasks_are_shown_with_secret_values_masked() -> None:
    shown = mask_task(TASK)
    assert shown["variables"] == {
        "token": {"type": "secret", "value": M},
        "empty": {"type": "secret", "value": ""},
        "name": {"type": "string", "value": "shown"},
    }
    assert TASK["variables"]["token"]["value"] == "real-token"  # type: ignore[index]
    assert mask_task({"id": "plain"}) == {"id": "plain"}
    assert mask_run_variables(TASK, {"token": "run", "name": "n", "other": 1}) == {
        "token": M,
        "name": "n",
        "other": 1,
    }


def test_saving_the_mask_back_keeps_the_stored_secret() -> None:
    saved = keep_masked_secrets(mask_task(TASK), TASK)
    assert saved["variables"]["token"]["value"] == "real-token"
    changed = {"variables": {"token": {"type": "secret", "value": "new-token"}}}
    assert keep_masked_secrets(changed, TASK) == changed
    # Nothing stored to keep: the value is what was sent.
    fresh = {"variables": {"token": {"type": "secret", "value": M}}}
    assert keep_masked_secrets(fresh, None) == fresh
