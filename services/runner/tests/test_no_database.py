"""Runners are stateless: nothing they import may bring in a database driver."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path


def test_runner_modules_import_no_database_driver() -> None:
    code = (
        "import sys\n"
        "import figranium_runner.__main__, figranium_runner.worker, figranium_runner.engine\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'psycopg_pool'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_runner_declares_no_database_dependency() -> None:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    dependencies = project["project"]["dependencies"]
    assert "figranium-common" in dependencies  # without the db extra
    assert not any(dep.startswith(("psycopg", "figranium-common[")) for dep in dependencies)
