"""The console's fingerprinted static files: names follow content, imports included."""

from __future__ import annotations

from pathlib import Path

import pytest

from figranium_gateway.console.assets import Assets, console_assets


def _write(folder: Path, files: dict[str, str]) -> Assets:
    for name, text in files.items():
        (folder / name).write_text(text)
    return Assets(folder)


def test_names_carry_the_content_digest(tmp_path: Path) -> None:
    first = _write(tmp_path, {"a.css": "body{}", "notes.txt": "not served"})
    url = first.url("a.css")
    name = url.rsplit("/", 1)[1]
    assert url.startswith("/console/static/a.") and name.endswith(".css")
    served = first.served(name)
    assert served is not None and served.body == b"body{}"
    assert served.content_type == "text/css"
    assert first.served("a.css") is None  # only the fingerprinted name is answered
    with pytest.raises(KeyError):
        first.url("notes.txt")
    changed = _write(tmp_path, {"a.css": "body{color:red}"})
    assert changed.url("a.css") != url


def test_an_import_is_rewritten_and_its_change_renames_the_importer(tmp_path: Path) -> None:
    before = _write(
        tmp_path,
        {"main.js": 'import { f } from "./lib.js";\nf();\n', "lib.js": "export const f = 1;"},
    )
    lib = before.url("lib.js").rsplit("/", 1)[1]
    main = before.served(before.url("main.js").rsplit("/", 1)[1])
    assert main is not None and f'from "./{lib}"' in main.body.decode()

    after = _write(tmp_path, {"lib.js": "export const f = 2;"})
    assert after.url("lib.js") != before.url("lib.js")
    assert after.url("main.js") != before.url("main.js")  # its text names the new lib


def test_modules_importing_each_other_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cycle"):
        _write(tmp_path, {"a.js": 'import "./b.js";', "b.js": 'import "./a.js";'})


def test_the_console_ships_its_modules() -> None:
    assets = console_assets()
    for name in ("console.js", "csrf.js", "console.css"):
        assert assets.url(name).startswith("/console/static/")
