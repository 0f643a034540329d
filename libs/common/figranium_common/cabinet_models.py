"""Cabinets in the messages between services: what a run may upload, where its downloads
go, and what it did with both.

Cabinets are named file stores (Figranium's): items' metadata lives in PostgreSQL, their
bytes in the JetStream object store ``cabinets`` (``CABINETS_BUCKET``). Runners never read
the database, so the gateway (or the scheduler) resolves at dispatch what a run needs
(:class:`CabinetPlan`), and the runner reports back in its result event what it stored
(:class:`StoredDownload`) and which items it uploaded; the ingester writes both.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

# Object names in the cabinets bucket: a download is stored under the item id its runner
# gave it, and keeps that name for its life (moves between cabinets change rows only).
ITEM_OBJECT_PREFIX = "items/"


def item_object(item_id: str) -> str:
    """The object name of a file item's bytes."""
    return f"{ITEM_OBJECT_PREFIX}{item_id}"


class CabinetFile(BaseModel):
    """A file item a run may upload, as resolved at dispatch."""

    id: str
    name: str
    object: str  # its bytes in the cabinets bucket
    size: int = Field(ge=0)
    sha256: str | None = None
    created_at: int  # epoch ms; candidates are sent newest first


class CabinetPlan(BaseModel):
    """What a run needs of the cabinets, resolved at dispatch."""

    # Where the run's downloads go: the task's ``downloadCabinetId`` when it names a
    # cabinet, else the default one.
    download_cabinet_id: str
    default_cabinet_id: str
    # Unuploaded file items, newest first, of each cabinet the task's ``upload`` actions
    # name (an unknown or variable cabinet id falls back to the default cabinet, keyed
    # under the default's id), bounded in count.
    uploads: dict[str, list[CabinetFile]] = Field(default_factory=dict)


class StoredDownload(BaseModel):
    """A download a runner put in the cabinets bucket; the ingester makes it an item
    (name made unique in its cabinet, quotas checked) or deletes the object."""

    item_id: str
    cabinet_id: str
    name: str  # the name the site suggested, sanitised
    url: str
    object: str
    size: int = Field(ge=0)
    sha256: str
