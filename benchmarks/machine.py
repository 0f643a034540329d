"""What the figures were measured on."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

NOTES = (
    "Everything shares the same CPUs: the benchmark driver, its raw-Playwright Chromium, the "
    "page server, the load generator, PostgreSQL, NATS and every service. The load averages "
    "at start and end show whether anything else ran at the same time; ratios, measured "
    "interleaved or back to back in one run, are the more meaningful numbers."
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                pretty = line.split("=", 1)[1].strip().strip('"')
                return f"{pretty} (Linux {platform.release()})"
    except OSError:
        pass
    return platform.platform()


def _chromium_version(executable: str | None) -> str | None:
    if executable is None:
        return None
    try:
        done = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_info(chromium: str | None, notes: str = NOTES) -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "ram_gb": _ram_gb(),
        "os": _os_name(),
        "python": platform.python_version(),
        "chromium_path": chromium,
        "chromium_version": _chromium_version(chromium),
        "load_average_at_start": load_average(),
        "notes": notes,
    }


def git_commit(repo: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, timeout=20
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain")
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
    }
