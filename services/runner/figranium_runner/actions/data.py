"""Actions on variables and data: set, merge, CSV, and HTTP requests from the run."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING

from figranium_common.action_models import CsvAction, HttpRequestAction, MergeAction, SetAction
from figranium_common.jsontypes import JsonValue
from figranium_common.outbound_http import safe_request
from figranium_runner.actions.fields import ActionFailed, ActionResult, store, text
from figranium_runner.bounds import json_size, too_large
from figranium_runner.conditions import parse_value, var_name
from figranium_runner.variables import lookup, substitute

if TYPE_CHECKING:
    from figranium_runner.state import RunState


async def set_variable(state: RunState, action: SetAction) -> ActionResult:
    if not action.varName:
        raise ActionFailed("set needs varName")
    value = action.value
    parsed = parse_value(text(state, value)) if isinstance(value, str) else value
    store(state, action.varName, parsed)
    return f"Set variable {action.varName}", parsed


def _merge_sources(state: RunState, raw: JsonValue) -> list[JsonValue]:
    if isinstance(raw, list):
        return raw
    if isinstance(raw, dict):
        return [raw]
    tokens = [t.strip() for t in str(raw or "").split(",") if t.strip()]
    sources: list[JsonValue] = []
    for token in tokens:
        found = lookup(state.variables, var_name(token))
        sources.append(
            found if found is not None else parse_value(substitute(token, state.variables))
        )
    return sources


async def merge(state: RunState, action: MergeAction) -> ActionResult:
    sources = _merge_sources(state, action.value)
    # Measured before merging: `merge "{$a},{$a}"` in a loop doubles a list each round, and
    # the merged list would be built whole before storing it could refuse it.
    limit = state.bounds.max_variable_bytes
    budget = limit
    for source in sources:
        budget -= json_size(source, budget)
        if budget < 0:
            raise too_large("the merged value", limit)
    lists = [s for s in sources if isinstance(s, list)]
    objects = [s for s in sources if isinstance(s, dict)]
    merged: list[JsonValue] | dict[str, JsonValue]
    if sources and len(lists) == len(sources):
        merged = [item for s in lists for item in s]
    elif sources and len(objects) == len(sources):
        merged = {k: v for s in objects for k, v in s.items()}
    else:
        merged = []
        for s in sources:
            merged.extend(s if isinstance(s, list) else [s])
    store(state, action.varName, merged)
    count = len(merged)
    return f"Merged {count} {'field' if isinstance(merged, dict) else 'item'}(s)", merged


def parse_csv(raw: str) -> list[dict[str, str]]:
    rows = list(csv.reader(io.StringIO(raw.strip())))
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    return [dict(zip(header, row + [""] * (len(header) - len(row)), strict=False)) for row in body]


async def csv_action(state: RunState, action: CsvAction) -> ActionResult:
    source: JsonValue
    if action.value in (None, ""):
        block = state.variables.get("block")
        source = block.get("output") if isinstance(block, dict) else None
    elif isinstance(action.value, str):
        found = lookup(state.variables, var_name(action.value))
        source = found if found is not None else text(state, action.value)
    else:
        source = action.value
    rows: JsonValue = parse_csv(source) if isinstance(source, str) else (source or [])
    store(state, action.varName, rows)
    return f"Parsed {len(rows) if isinstance(rows, list) else 0} CSV rows", rows


async def http_request(state: RunState, action: HttpRequestAction) -> ActionResult:
    url = text(state, action.value)
    method = (substitute(action.method or "", state.variables) or "GET").upper()
    headers: dict[str, str] = {}
    if isinstance(action.headers, dict):
        headers = {str(k): text(state, v) for k, v in action.headers.items()}
    elif action.headers:
        try:
            parsed = json.loads(text(state, action.headers))
        except ValueError as exc:
            raise ActionFailed(f"headers are not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise ActionFailed("headers must be a JSON object")
        headers = {str(k): str(v) for k, v in parsed.items()}
    body: str | None = None
    if action.body not in (None, "") and method in ("POST", "PUT", "PATCH", "DELETE"):
        body = text(state, action.body)
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
    response = await safe_request(
        method,
        url,
        allow_private=state.allow_private,
        allow_metadata=state.allow_metadata,
        headers=headers,
        body=body,
        timeout=state.action_timeout_s,
    )
    answer = response.text()
    try:
        parsed_body: JsonValue = json.loads(answer)
    except ValueError:
        parsed_body = answer
    if response.status >= 400:
        snippet = answer[:200]
        raise ActionFailed(f"HTTP {method} failed with status {response.status}: {snippet}")
    store(state, action.varName, parsed_body)
    return f"HTTP {method} {url} → {response.status}", parsed_body
