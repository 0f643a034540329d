"""Which Chromium binary a runner launches: the headless shell for headless runs when there
is one, the full browser for headed runs and as the fallback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from figranium_runner import browser
from figranium_runner.browser import find_chromium, find_headless_chromium


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine whose only binaries are the ones a test puts in ``tmp_path``."""
    monkeypatch.setattr(browser, "_SYSTEM_CANDIDATES", (str(tmp_path / "chromium"),))
    monkeypatch.setattr(browser, "_HEADLESS_SHELLS", (str(tmp_path / "chromium-headless-shell"),))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    return tmp_path


def put(directory: Path, name: str) -> str:
    path = directory / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def test_the_headless_shell_is_preferred_for_headless_runs(machine: Path) -> None:
    full = put(machine, "chromium")
    shell = put(machine, "chromium-headless-shell")
    assert find_headless_chromium(None, None) == shell
    # CHROMIUM_PATH names the headed browser: it does not displace the shell.
    assert find_headless_chromium(None, full) == shell
    assert find_chromium(None) == full


def test_without_a_shell_headless_runs_use_the_full_browser(machine: Path) -> None:
    full = put(machine, "chromium")
    other = put(machine, "my-chrome")
    assert find_headless_chromium(None, None) == full
    assert find_headless_chromium(None, other) == other


def test_configured_headless_binary_wins(machine: Path) -> None:
    put(machine, "chromium-headless-shell")
    full = put(machine, "chromium")
    assert find_headless_chromium(full, None) == full


def test_nothing_installed_leaves_it_to_playwright(machine: Path) -> None:
    assert find_headless_chromium(None, None) is None


def test_a_configured_binary_that_is_missing_is_an_error(machine: Path) -> None:
    with pytest.raises(FileNotFoundError, match="CHROMIUM_HEADLESS_PATH"):
        find_headless_chromium(str(machine / "nope"), None)
    with pytest.raises(FileNotFoundError, match="CHROMIUM_PATH"):
        find_headless_chromium(None, str(machine / "nope"))
