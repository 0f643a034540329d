"""Every setting is in the README's configuration table, and the table names no others."""

from __future__ import annotations

import re
from pathlib import Path

from figranium_common.config import Config

README = Path(__file__).resolve().parents[3] / "README.md"


def test_every_setting_is_documented_and_nothing_else() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", section, flags=re.MULTILINE))
    config = {str(field.alias) for field in Config.model_fields.values()}
    assert config - documented == set(), "settings missing from the README table"
    assert documented - config == set(), "README documents variables no service reads"
