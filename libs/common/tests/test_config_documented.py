"""Every setting is in docs/configuration.md's tables, once, and the tables name no others."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from figranium_common.config import Config

CONFIGURATION = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def test_every_setting_is_documented_and_nothing_else() -> None:
    text = CONFIGURATION.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", text, flags=re.MULTILINE)
    documented = set(rows)
    config = {str(field.alias) for field in Config.model_fields.values()}
    assert config - documented == set(), "settings missing from docs/configuration.md"
    assert documented - config == set(), (
        "docs/configuration.md documents variables no service reads"
    )
    twice = {name for name, count in Counter(rows).items() if count > 1}
    assert twice == set(), "variables documented more than once"
