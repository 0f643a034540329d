"""What Figranium's editor writes for captchas, cabinets, selector variables and loop caps
is accepted, kept, and (for the solver) carried sealed to runners."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from figranium_common import transit
from figranium_common.action_models import (
    ACTION_MODELS,
    FinalizeUploadsAction,
    SolveCaptchaAction,
    UploadAction,
    WaitCaptchaAction,
)
from figranium_common.captcha_settings import CAPTCHA_KEY_PURPOSE, solves_captchas, stored_solver
from figranium_common.config import Config
from figranium_common.models import CaptchaSolver, RunRequest, Task
from figranium_common.secretbox import SecretBox, new_key_text

KEY = "solver-client-key-4d2c"

# As Figranium's editor saves it: new actions with their fields, empty strings included.
EDITOR_TASK: dict[str, Any] = {
    "name": "captchas",
    "url": "https://example.com",
    "autoSolveCaptcha": True,
    "translation": {"enabled": False, "targetLanguage": "english"},
    "output": {"provider": "baserow", "credentialId": "c", "tableId": "1"},
    "downloadCabinetId": "cab_downloads",
    "cabinetId": "cab_1",
    "maxLoopIterations": 50,
    "variables": {"button": {"type": "selector", "value": "#submit"}},
    "actions": [
        {"id": "a1", "type": "wait_captcha", "captchaType": "", "selector": "", "timeout": 0},
        {"id": "a2", "type": "solve_captcha", "captchaType": "hcaptcha", "timeout": 1.5},
        {"id": "a3", "type": "upload", "selector": "", "cabinetId": "", "markAsUploaded": True},
        {"id": "a4", "type": "finalize_uploads"},
        {
            "id": "a5",
            "type": "if",
            "conditionVarType": "selector",
            "conditionOp": "exists",
            "selector": "{$button}",
            "conditionValue": "",
        },
        {"id": "a6", "type": "end"},
    ],
}


def test_the_editors_task_is_accepted_and_kept_as_given() -> None:
    task = Task.model_validate(EDITOR_TASK)
    assert task.dump() == EDITOR_TASK
    kinds = [type(action) for action in task.actions[:4]]
    assert kinds == [WaitCaptchaAction, SolveCaptchaAction, UploadAction, FinalizeUploadsAction]
    assert task.variables["button"].type == "selector"
    assert {"wait_captcha", "solve_captcha", "upload", "finalize_uploads"} <= set(ACTION_MODELS)


@pytest.mark.parametrize(
    "bad",
    [
        {"maxLoopIterations": 0},
        {"autoSolveCaptcha": "sometimes"},
        {"actions": [{"type": "upload", "markAsUploaded": "maybe"}]},
        {"actions": [{"type": "if", "conditionVarType": "colour"}]},
        {"variables": {"v": {"type": "colour"}}},
    ],
)
def test_wrong_types_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Task.model_validate({"url": "https://example.com", **bad})


def test_only_tasks_that_solve_captchas_need_the_solver() -> None:
    plain = Task.model_validate({"actions": [{"type": "wait_captcha"}]})
    acting = Task.model_validate({"actions": [{"type": "solve_captcha"}]})
    auto = Task.model_validate({"autoSolveCaptcha": True})
    assert not solves_captchas([plain])
    assert solves_captchas([plain, acting]) and solves_captchas([auto])


def _box() -> SecretBox:
    return SecretBox.from_config(Config.model_validate({"FIGRANIUM_MASTER_KEY": new_key_text()}))


def test_the_stored_solver_opens_its_sealed_key() -> None:
    box = _box()
    sealed = box.seal(KEY, CAPTCHA_KEY_PURPOSE)
    solver = stored_solver({"baseUrl": "https://solver.example", "clientKey": sealed}, box)
    assert solver == CaptchaSolver(base_url="https://solver.example", client_key=KEY)
    assert stored_solver({"baseUrl": "", "clientKey": sealed}, box) is None
    assert stored_solver(None, box) is None


def test_the_solver_travels_sealed_in_the_run_request() -> None:
    box = _box()
    request = RunRequest(
        execution_id="exec_c",
        task={"actions": [{"type": "solve_captcha"}]},
        captcha_solver=CaptchaSolver(base_url="https://solver.example", client_key=KEY),
    )
    wire = transit.seal_run_request(box, request)
    text = wire.model_dump_json()
    assert KEY not in text and "solver.example" not in text and wire.captcha_solver is None
    opened = transit.open_run_request(box, RunRequest.model_validate_json(text))
    assert opened.captcha_solver == request.captcha_solver
