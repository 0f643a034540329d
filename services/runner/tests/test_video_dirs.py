"""Video folders left behind by killed runners are removed when a runner starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from figranium_runner.context import VIDEO_DIR_PREFIX, remove_orphaned_video_dirs


def _gone_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_folders_of_gone_runners_are_removed(tmp_path: Path) -> None:
    gone = tmp_path / f"{VIDEO_DIR_PREFIX}{_gone_pid()}-abc123"
    mine = tmp_path / f"{VIDEO_DIR_PREFIX}{os.getpid()}-def456"
    unnamed = tmp_path / f"{VIDEO_DIR_PREFIX}old-style"
    other = tmp_path / "something-else-1"
    for folder in (gone, mine, unnamed, other):
        folder.mkdir()
        (folder / "run.webm").write_bytes(b"\x1a\x45")

    assert remove_orphaned_video_dirs(tmp_path) == 1
    assert not gone.exists()
    assert mine.exists() and unnamed.exists() and other.exists()
    assert remove_orphaned_video_dirs(tmp_path) == 0
