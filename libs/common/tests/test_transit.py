"""Secrets in NATS messages travel sealed under the transit key, which is not the master key."""

from __future__ import annotations

import pytest

from figranium_common import transit
from figranium_common.config import Config
from figranium_common.models import (
    OutputTarget,
    ProxyConfig,
    RunRequest,
)
from figranium_common.secretbox import SecretBox, SecretError, new_key_text
from tests.integration.run_events import result_event

PASSWORD = "proxy-pass-7f3a"
TOKEN = "baserow-token-91c2"
COOKIE = "session-cookie-55de"


def _request() -> RunRequest:
    return RunRequest(
        execution_id="exec_1",
        task={"id": "t1", "actions": []},
        storage_state={"cookies": [{"name": "sid", "value": COOKIE}], "origins": []},
        proxies=[ProxyConfig(server="http://proxy:8080", username="u", password=PASSWORD)],
        output=OutputTarget(
            credential_id="cred_1", base_url="https://baserow.example", token=TOKEN, table_id="1"
        ),
    )


def _config(**values: str) -> Config:
    return Config.model_validate(values)


def test_a_sealed_run_request_holds_no_secret_and_opens_with_the_transit_key() -> None:
    master = SecretBox.from_config(_config(FIGRANIUM_MASTER_KEY=new_key_text()))
    wire = transit.seal_run_request(transit.derived_transit_box(master), _request())
    text = wire.model_dump_json()
    for secret in (PASSWORD, TOKEN, COOKIE):
        assert secret not in text
    # The runner, given only the transit key as FIGRANIUM_TRANSIT_KEY, opens it.
    runner = _config(FIGRANIUM_TRANSIT_KEY=transit.transit_key_text(master))
    opened = transit.open_run_request(
        transit.transit_box(runner), RunRequest.model_validate_json(text)
    )
    assert opened == _request().model_copy(update={"requested_at": wire.requested_at})
    # The master key itself does not open it, nor does another execution's id.
    with pytest.raises(SecretError):
        transit.open_run_request(master, wire)
    with pytest.raises(SecretError):
        transit.open_run_request(
            transit.transit_box(runner), wire.model_copy(update={"execution_id": "exec_2"})
        )


def test_a_request_queued_in_clear_by_an_older_release_is_accepted() -> None:
    box = SecretBox.from_config(_config(FIGRANIUM_MASTER_KEY=new_key_text()))
    old = _request()
    assert transit.open_run_request(box, old) == old


def test_result_state_sealed_and_in_clear() -> None:
    box = transit.derived_transit_box(
        SecretBox.from_config(_config(FIGRANIUM_MASTER_KEY=new_key_text()))
    )
    state = {"cookies": [{"name": "sid", "value": COOKIE}]}
    event = result_event(
        "exec_1", 0, sealed_storage_state=transit.seal_result_state(box, "exec_1", state)
    )
    assert COOKIE not in event.model_dump_json()
    assert transit.result_state(box, event) == state
    clear = event.model_copy(update={"sealed_storage_state": None, "storage_state": state})
    assert transit.result_state(box, clear) == state
