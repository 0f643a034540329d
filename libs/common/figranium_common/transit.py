"""Secrets in NATS messages, sealed under a transit key that runners hold.

Run requests carry proxy passwords, output tokens and browser state; result events carry
browser state back. Both wait in JetStream streams, on disk, so those fields travel sealed
(``secretbox``'s format) and a copy of the NATS store reveals none of them.

The transit key is ``FIGRANIUM_TRANSIT_KEY`` when set, else derived from the master key
with HKDF under an info string of its own. Gateways and schedulers hold the master key and
derive it; runners get only the transit key, never ``FIGRANIUM_MASTER_KEY``, which opens
every secret stored in PostgreSQL. Messages queued by an older release carry these fields
in clear: they are still accepted.
"""

from __future__ import annotations

import base64
import json

from figranium_common.config import Config
from figranium_common.jsontypes import StorageState, is_storage_state
from figranium_common.models import (
    CaptchaSolver,
    OutputTarget,
    ProxyConfig,
    ResultEvent,
    RunRequest,
)
from figranium_common.secretbox import SecretBox, SecretError, decode_key

TRANSIT_KEY_INFO = "figranium transit key"


def transit_box(config: Config, master: SecretBox | None = None) -> SecretBox:
    """The transit box: ``FIGRANIUM_TRANSIT_KEY``'s, else derived from the master key
    (``master``, or the settings' own)."""
    if config.transit_key:
        return SecretBox(decode_key(config.transit_key, "FIGRANIUM_TRANSIT_KEY"))
    return derived_transit_box(master or SecretBox.from_config(config))


def derived_transit_box(master: SecretBox) -> SecretBox:
    return SecretBox(master.subkey(TRANSIT_KEY_INFO))


def transit_key_text(master: SecretBox) -> str:
    """The derived transit key as ``FIGRANIUM_TRANSIT_KEY`` takes it (base64url)."""
    return base64.urlsafe_b64encode(master.subkey(TRANSIT_KEY_INFO)).decode().rstrip("=")


def _request_purpose(execution_id: str) -> str:
    # Bound to the execution: a sealed blob copied into another run does not open.
    return f"run-request:{execution_id}"


def _state_purpose(execution_id: str) -> str:
    return f"result-state:{execution_id}"


def seal_run_request(box: SecretBox, request: RunRequest) -> RunRequest:
    """``request`` with its secrets (browser state, proxies, output target, captcha solver)
    moved into ``sealed``."""
    solver = request.captcha_solver
    if (
        request.storage_state is None
        and not request.proxies
        and request.output is None
        and solver is None
    ):
        return request
    secrets: dict[str, object] = {
        "storage_state": request.storage_state,
        "proxies": [proxy.model_dump(mode="json") for proxy in request.proxies],
        "output": None if request.output is None else request.output.model_dump(mode="json"),
        "captcha_solver": None if solver is None else solver.model_dump(mode="json"),
    }
    sealed = box.seal(json.dumps(secrets), _request_purpose(request.execution_id))
    return request.model_copy(
        update={
            "storage_state": None,
            "proxies": [],
            "output": None,
            "captcha_solver": None,
            "sealed": sealed,
        }
    )


def open_run_request(box: SecretBox, request: RunRequest) -> RunRequest:
    """``request`` with its sealed secrets back in place; one queued in clear as it is.
    Raises ``SecretError`` when the transit key is not the one it was sealed with."""
    if request.sealed is None:
        return request
    try:
        opened = box.open(request.sealed, _request_purpose(request.execution_id))
    except SecretError:
        raise SecretError(
            "the run's secrets cannot be opened: FIGRANIUM_TRANSIT_KEY is not the key derived"
            " from the gateways' master key (python -m figranium_common.transit prints it)"
        ) from None
    secrets = json.loads(opened)
    output = secrets.get("output")
    solver = secrets.get("captcha_solver")
    return request.model_copy(
        update={
            "storage_state": secrets.get("storage_state"),
            "proxies": [ProxyConfig.model_validate(p) for p in secrets.get("proxies") or []],
            "output": None if output is None else OutputTarget.model_validate(output),
            "captcha_solver": None if solver is None else CaptchaSolver.model_validate(solver),
            "sealed": None,
        }
    )


def seal_result_state(box: SecretBox, execution_id: str, state: StorageState | None) -> str | None:
    return None if state is None else box.seal(json.dumps(state), _state_purpose(execution_id))


def result_state(box: SecretBox, event: ResultEvent) -> StorageState | None:
    """The browser state a result event carries, sealed or (older runners) in clear."""
    if event.sealed_storage_state is None:
        return event.storage_state
    state = json.loads(box.open(event.sealed_storage_state, _state_purpose(event.execution_id)))
    return state if is_storage_state(state) else None


def main() -> None:
    """Print the transit key derived from this environment's master key, for runners'
    FIGRANIUM_TRANSIT_KEY (compose's .env, the Kubernetes Secret)."""
    print(transit_key_text(SecretBox.from_config(Config())))


if __name__ == "__main__":
    main()
