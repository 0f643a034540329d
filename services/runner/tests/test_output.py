"""The output step against a local Baserow speaking its wire format."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from figranium_common.models import Outcome, OutputTarget, RunResult
from figranium_runner import output
from tests.integration.baserow_fake import BaserowFake

TOKEN = "baserow-token-123"


@pytest.fixture
def baserow() -> Iterator[BaserowFake]:
    with BaserowFake(TOKEN) as fake:
        yield fake


def _target(fake: BaserowFake, **changes: Any) -> OutputTarget:
    fields: dict[str, Any] = {
        "credential_id": "cred_0123456789abcdef",
        "base_url": fake.url,
        "token": TOKEN,
        "database_id": "101",
        "table_id": "12",
        "on_error": "fail",
        **changes,
    }
    return OutputTarget(**fields)


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(self, line: str) -> None:
        self.lines.append(line)


async def _deliver(fake: BaserowFake, data: Any, **changes: Any) -> tuple[RunResult, list[str]]:
    emitted = Lines()
    result = RunResult(outcome="success", data=data, logs=["Extracted"])
    delivered = await output.deliver(
        result, _target(fake, **changes), allow_private=True, emit=emitted
    )
    return delivered, emitted.lines


async def test_a_list_of_objects_is_one_batch(baserow: BaserowFake) -> None:
    data = [{"name": "apple", "price": 1.5}, {"name": "pear", "tags": ["a", "b"], "note": None}]
    result, lines = await _deliver(baserow, data)
    assert result.outcome == "success"
    assert result.data == data  # the result keeps what was extracted
    assert lines == ["Pushed 2 rows to Baserow table 12"]
    assert result.logs == ["Extracted", "Pushed 2 rows to Baserow table 12"]
    # Nested values travel as JSON text, nothing as empty text.
    assert baserow.rows_request_body("/api/database/rows/table/12/batch/") == {
        "items": [
            {"name": "apple", "price": 1.5},
            {"name": "pear", "tags": '["a", "b"]', "note": ""},
        ]
    }
    assert [row["name"] for row in baserow.rows_in(12)] == ["apple", "pear"]


async def test_a_single_object_is_one_row(baserow: BaserowFake) -> None:
    result, lines = await _deliver(baserow, {"title": "Form", "meta": {"lang": "en"}})
    assert result.outcome == "success"
    assert lines == ["Pushed 1 row to Baserow table 12"]
    assert baserow.rows_request_body("/api/database/rows/table/12/") == {
        "title": "Form",
        "meta": '{"lang": "en"}',
    }


async def test_json_text_is_parsed_first(baserow: BaserowFake) -> None:
    result, lines = await _deliver(baserow, json.dumps([{"a": 1}, {"a": 2}, {"a": 3}]))
    assert result.outcome == "success"
    assert lines == ["Pushed 3 rows to Baserow table 12"]
    assert [row["a"] for row in baserow.rows_in(12)] == [1, 2, 3]


async def test_more_rows_than_a_batch_holds_go_in_chunks_of_200(baserow: BaserowFake) -> None:
    data = [{"n": index} for index in range(450)]
    result, lines = await _deliver(baserow, data)
    assert result.outcome == "success", result.error
    assert lines == ["Pushed 450 rows to Baserow table 12"]
    sizes = [len(seen.body["items"]) for seen in baserow.requests_to("/batch/")]
    assert sizes == [200, 200, 50]
    assert [row["n"] for row in baserow.rows_in(12)] == list(range(450))


async def test_an_empty_list_pushes_nothing(baserow: BaserowFake) -> None:
    result, lines = await _deliver(baserow, [])
    assert result.outcome == "success"
    assert lines == ["Pushed 0 rows to Baserow table 12"]
    assert baserow.requests_to("/rows/") == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (None, "no data"),
        (42, "int"),
        ("just text", "not JSON rows"),
        ('"json text"', "str"),
        ([{"a": 1}, "b"], "row 1 is str"),
    ],
)
async def test_data_that_is_not_rows_fails_the_run(
    baserow: BaserowFake, data: Any, reason: str
) -> None:
    result, lines = await _deliver(baserow, data)
    assert result.outcome == "error"
    assert result.error is not None and result.error.startswith("Output to Baserow failed:")
    assert reason in result.error
    assert lines == [result.error]
    assert result.data == data
    assert baserow.requests_to("/rows/") == []


async def test_baserow_down_fails_the_run_or_is_logged(baserow: BaserowFake) -> None:
    baserow.fail_rows_with = 500
    failed, lines = await _deliver(baserow, [{"a": 1}])
    assert failed.outcome == "error"
    assert failed.error is not None and "HTTP 500" in failed.error
    assert failed.data == [{"a": 1}]
    assert lines == [failed.error]

    ignored, lines = await _deliver(baserow, [{"a": 1}], on_error="ignore")
    assert ignored.outcome == "success"
    assert ignored.error is None
    assert len(lines) == 1
    assert "Output to Baserow failed" in lines[0] and "HTTP 500" in lines[0]
    assert "ignored" in lines[0]
    assert ignored.logs[-1] == lines[0]


async def test_a_wrong_token_is_baserows_401_and_never_logged(baserow: BaserowFake) -> None:
    wrong = "not-the-token-987"
    result, lines = await _deliver(baserow, [{"a": 1}], token=wrong)
    assert result.outcome == "error"
    assert result.error is not None
    assert "HTTP 401" in result.error and "ERROR_INVALID_TOKEN" in result.error
    assert wrong not in result.error and all(wrong not in line for line in lines)


async def test_a_missing_table_is_baserows_404(baserow: BaserowFake) -> None:
    result, _ = await _deliver(baserow, {"a": 1}, table_id="404")
    assert result.error is not None and "ERROR_TABLE_DOES_NOT_EXIST" in result.error


async def test_a_partial_push_says_how_far_it_got(baserow: BaserowFake) -> None:
    baserow.fail_rows_with, baserow.fail_after_rows = 500, 200  # down after the first chunk
    result, _ = await _deliver(baserow, [{"n": index} for index in range(250)])
    assert result.error is not None
    assert "HTTP 500" in result.error and "after 200 rows were created" in result.error
    assert len(baserow.rows_in(12)) == 200


async def test_a_target_with_a_problem_is_a_failure(baserow: BaserowFake) -> None:
    failed, _ = await _deliver(baserow, [{"a": 1}], problem="no Baserow credential 'cred_x'")
    assert failed.outcome == "error"
    assert failed.error == "Output to Baserow failed: no Baserow credential 'cred_x'"
    ignored, lines = await _deliver(
        baserow, [{"a": 1}], problem="no Baserow credential 'cred_x'", on_error="ignore"
    )
    assert ignored.outcome == "success"
    assert "no Baserow credential 'cred_x'" in lines[0]
    assert baserow.requests_to("/rows/") == []


async def test_a_refused_url_is_a_failure(baserow: BaserowFake) -> None:
    result, _ = await _deliver(baserow, [{"a": 1}], base_url="http://169.254.169.254")
    assert result.outcome == "error"
    assert result.error is not None and "blocked address" in result.error
    result, _ = await _deliver(baserow, [{"a": 1}], base_url=baserow.url)
    assert result.outcome == "success"
    # Without private networks allowed, the loopback fake is out of reach.
    emitted = Lines()
    refused = await output.deliver(
        RunResult(outcome="success", data=[{"a": 1}]),
        _target(baserow),
        allow_private=False,
        emit=emitted,
    )
    assert refused.outcome == "error"
    assert "blocked address" in (refused.error or "")


async def test_only_successful_runs_push(baserow: BaserowFake) -> None:
    emitted = Lines()
    outcomes: tuple[Outcome, ...] = ("error", "stopped", "crashed")
    for outcome in outcomes:
        result = RunResult(outcome=outcome, data=[{"a": 1}], error="it broke")
        assert (
            await output.deliver(result, _target(baserow), allow_private=True, emit=emitted)
            is result
        )
    plain = RunResult(outcome="success", data=[{"a": 1}])
    assert await output.deliver(plain, None, allow_private=True, emit=emitted) is plain
    assert emitted.lines == []
    assert baserow.received == []
