"""An execution's result as the console shows and serves it: a JSON tree, a table, a CSV.

The tree is a nesting of nodes that the page renders as ``<details>``/``<ul>`` (keyboard
usable with no script). The table form exists when the result holds rows: a list of
objects, the run's ``data`` when that is such a list, or an object's only list of objects;
its columns are the union of the rows' keys in the order they first appear. The CSV is
that table, guarded against formula injection.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import TypedDict

# Deeper than this, a value is shown as its JSON text: a tree is for reading, and Jinja's
# recursion has a limit.
MAX_DEPTH = 32
# A spreadsheet treats a cell starting with one of these as a formula (or a field break).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class Node(TypedDict):
    """One entry of the tree: ``label`` (a key or an index), and either ``children``
    (an object or a list, ``kind`` "object"/"array") or ``text`` (a scalar's JSON)."""

    label: str
    kind: str
    text: str
    children: list[Node]


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def tree(value: object, label: str = "result", depth: int = 0) -> Node:
    """The tree of a JSON value."""
    if isinstance(value, Mapping) and depth < MAX_DEPTH:
        items = [(str(key), item) for key, item in value.items()]
        kind = "object"
    elif isinstance(value, list) and depth < MAX_DEPTH:
        items = [(str(index), item) for index, item in enumerate(value)]
        kind = "array"
    else:
        return {"label": label, "kind": "scalar", "text": _json(value), "children": []}
    children = [tree(item, key, depth + 1) for key, item in items]
    return {"label": label, "kind": kind, "text": "", "children": children}


def _is_rows(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def table_rows(result: object) -> list[dict[str, object]] | None:
    """The rows of the result's table form, or None when it has none."""
    if _is_rows(result):
        assert isinstance(result, list)
        return result
    if not isinstance(result, dict):
        return None
    if "data" in result:
        rows = table_rows(result["data"])
        if rows is not None:
            return rows
    lists = [value for value in result.values() if _is_rows(value)]
    return lists[0] if len(lists) == 1 else None


def columns(rows: Sequence[Mapping[str, object]]) -> list[str]:
    """The union of the rows' keys, in the order they first appear."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def cell(value: object) -> str:
    """A table cell: a string as itself, nothing for null or a missing key, else JSON."""
    if value is None:
        return ""
    return value if isinstance(value, str) else _json(value)


def _guarded(value: object) -> str:
    text = cell(value)
    # Numbers stay numbers; only text (and JSON text of nested values) can be a formula.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return text
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def table(rows: Sequence[Mapping[str, object]]) -> tuple[list[str], list[list[str]]]:
    """The header and the cells of the rows, as the page shows them."""
    header = columns(rows)
    return header, [[cell(row.get(name)) for name in header] for row in rows]


def to_csv(rows: Sequence[Mapping[str, object]]) -> str:
    """The rows as CSV (RFC 4180 line ends), every text cell guarded against formulas."""
    header = columns(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([_guarded(name) for name in header])
    for row in rows:
        writer.writerow([_guarded(row.get(name)) for name in header])
    return out.getvalue()
