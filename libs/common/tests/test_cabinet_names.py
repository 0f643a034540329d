"""Cabinet item names as Figranium makes them: sanitised, then unique in their cabinet."""

from __future__ import annotations

import pytest

from figranium_common.cabinet_names import safe_name, split_extension, unique_name


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("report.csv", "report.csv"),
        ("dir/sub/report.csv", "report.csv"),
        ("/etc/passwd", "passwd"),
        ("trailing/", "trailing"),
        ('a\\b:c*d?e"f<g>h|i.txt', "a_b_c_d_e_f_g_h_i.txt"),
        ("tab\tand\x00nul\x1f.txt", "tab_and_nul_.txt"),
        ("  spaced.txt  ", "spaced.txt"),
        ("", "download"),
        (None, "download"),
        ("/", "download"),
        ("..", "download"),
        ("   ", "download"),
        ("x" * 300 + ".csv", "x" * 180),
    ],
)
def test_safe_name(given: str | None, expected: str) -> None:
    assert safe_name(given) == expected


def test_safe_name_fallback_is_the_callers() -> None:
    assert safe_name("", "extracted") == "extracted"


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("x.csv", ("x", ".csv")),
        ("x.tar.gz", ("x.tar", ".gz")),
        ("noext", ("noext", "")),
        (".env", (".env", "")),
        ("..hidden", ("..hidden", "")),
        ("x.", ("x", ".")),
    ],
)
def test_split_extension(name: str, parts: tuple[str, str]) -> None:
    assert split_extension(name) == parts


def test_unique_name_counts_from_two_ignoring_case() -> None:
    assert unique_name("x.csv", set()) == "x.csv"
    assert unique_name("x.csv", {"x.csv"}) == "x (2).csv"
    assert unique_name("X.CSV", {"x.csv", "x (2).csv"}) == "X (3).CSV"
    assert unique_name("notes", {"notes"}) == "notes (2)"
    assert unique_name(".env", {".env"}) == ".env (2)"
