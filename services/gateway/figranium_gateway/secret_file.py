"""Secrets generated at first start, handed to the operator in a file only they can read.

The structured log goes to terminals, journald and log shippers, so a secret written there
is copied to places nobody audits. A 0600 file in the data folder is read once, by whoever
runs the service, and can then be deleted.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_secret_file(path: Path, secret: str) -> Path:
    """Write ``secret`` to ``path`` readable by the owner alone; returns the absolute path."""
    path = path.absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        # O_CREAT's mode does not apply to a file that already exists (a left-over one).
        os.fchmod(handle.fileno(), 0o600)
        handle.write(secret + "\n")
    return path
