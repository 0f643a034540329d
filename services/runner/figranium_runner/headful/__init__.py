"""Headful runners (``RUNNER_HEADFUL=true``): a visible Chromium, watched through noVNC.

Chromium runs headed on an Xvfb display that x11vnc shares on 127.0.0.1
(:mod:`.display`); the runner serves noVNC and a ticket-checked websocket to x11vnc
(:mod:`.viewer`, :mod:`.tickets`) and announces itself to gateways and schedulers
(:mod:`.service`). It takes headful runs only, one at a time.
"""

from __future__ import annotations

from pathlib import Path

from figranium_common.config import Config
from figranium_runner.headful.display import missing_programs


def preflight(config: Config) -> str | None:
    """Why this machine cannot run a headful runner; None when it can."""
    if missing := missing_programs():
        return f"{' and '.join(missing)} not found; install the Debian packages xvfb and x11vnc"
    if not (Path(config.novnc_web_dir) / "vnc.html").is_file():
        return (
            f"NOVNC_WEB_DIR {config.novnc_web_dir!r} has no vnc.html;"
            " install the Debian package novnc or point NOVNC_WEB_DIR at noVNC's files"
        )
    return None
