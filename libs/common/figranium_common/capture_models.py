"""What a run tells the gateway about the files it stored in the captures bucket.

The gateway keeps an index of the bucket in PostgreSQL from these records, so listing a
run's captures, or a page of all of them, is a query rather than a walk over the bucket.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

CaptureKind = Literal["screenshot", "recording", "download"]


def capture_kind(name: str) -> CaptureKind:
    """A capture's kind from its name, as the runner names them."""
    if "_download_" in name:
        return "download"
    return "recording" if name.endswith(".webm") else "screenshot"


class StoredCapture(BaseModel):
    """One object a run stored in the captures bucket."""

    name: str = Field(min_length=1, max_length=1024)
    kind: CaptureKind
    size: int = Field(ge=0)
    at: int = Field(ge=0, description="epoch milliseconds when it was stored")
