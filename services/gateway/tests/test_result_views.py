"""The console's result forms: which results are tables, their columns, the guarded CSV
and the JSON tree."""

from __future__ import annotations

import csv
import io

from figranium_gateway.console import result_views


def test_which_results_are_tables() -> None:
    rows = [{"a": 1}, {"b": 2}]
    assert result_views.table_rows(rows) == rows
    # A run result: its data first, even beside other lists of objects.
    run = {"outcome": "success", "data": rows, "downloads": [{"name": "f"}], "logs": ["x"]}
    assert result_views.table_rows(run) == rows
    # Otherwise an object's only list of objects.
    assert result_views.table_rows({"data": "Form", "items": rows, "logs": ["x"]}) == rows
    assert result_views.table_rows({"data": {"items": rows}}) == rows
    for untabular in (
        "text",
        None,
        [],
        [{"a": 1}, 2],
        {"data": "Form", "downloads": []},
        {"one": rows, "two": rows},
    ):
        assert result_views.table_rows(untabular) is None, untabular


def test_the_table_has_the_union_of_keys_and_nested_values_as_json() -> None:
    rows: list[dict[str, object]] = [{"b": "x", "a": {"n": [1]}}, {"c": True, "b": None}]
    header, cells = result_views.table(rows)
    assert header == ["b", "a", "c"]
    assert cells == [["x", '{"n": [1]}', ""], ["", "", "true"]]


def test_the_csv_guards_every_text_cell_against_formulas() -> None:
    rows: list[dict[str, object]] = [
        {"=name": "=1+2", "v": "+x", "w": -3, "x": "@SUM(A1)", "y": "\tz", "z": "\rq"},
        {"v": "-a", "w": 2.5, "nested": ["=b"], "x": "plain, with comma"},
    ]
    text = result_views.to_csv(rows)
    assert text.endswith("\r\n")
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed[0] == ["'=name", "v", "w", "x", "y", "z", "nested"]
    assert parsed[1] == ["'=1+2", "'+x", "-3", "'@SUM(A1)", "'\tz", "'\rq", ""]
    assert parsed[2] == ["", "'-a", "2.5", "plain, with comma", "", "", '["=b"]']


def test_the_tree_nests_objects_and_lists_and_stops_at_a_depth() -> None:
    node = result_views.tree({"a": [1, "two"], "b": None})
    assert node["kind"] == "object" and [c["label"] for c in node["children"]] == ["a", "b"]
    listed = node["children"][0]
    assert listed["kind"] == "array"
    assert [(c["label"], c["text"]) for c in listed["children"]] == [("0", "1"), ("1", '"two"')]
    assert node["children"][1]["text"] == "null"
    deep: object = "end"
    for _ in range(result_views.MAX_DEPTH + 5):
        deep = [deep]
    depth, current = 0, result_views.tree(deep)
    while current["children"]:
        depth, current = depth + 1, current["children"][0]
    assert depth == result_views.MAX_DEPTH and current["kind"] == "scalar"
    assert current["text"].startswith("[[")
