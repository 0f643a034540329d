"""A run's dealings with the cabinets: the downloads it keeps for them, the items it may
upload (resolved at dispatch: :class:`CabinetPlan`) and those it uploaded.

One :class:`RunCabinets` serves a run and every task it starts. The bytes of the items come
from an :class:`ItemSource` (the cabinets bucket, figranium_runner.cabinet_store); the
downloads wait on disk until the run is over and are then stored there.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from figranium_common.cabinet_models import CabinetFile, CabinetPlan, StoredDownload


class ItemSource(Protocol):
    """Where the bytes of cabinet items are read from."""

    async def fetch(self, item: CabinetFile, destination: Path) -> None:
        """Write ``item``'s bytes into the file ``destination``, streamed."""


@dataclass
class KeptDownload:
    """A download waiting on disk (``path``) to be stored as the object of its item."""

    stored: StoredDownload
    path: Path


def new_item_id() -> str:
    """A cabinet item id as Figranium makes them: ``item_`` and 20 hex characters."""
    return f"item_{secrets.token_hex(10)}"


@dataclass
class RunCabinets:
    """What the run does with the cabinets. Without a plan (a request from an earlier
    release), downloads go to the default cabinet and nothing can be uploaded."""

    plan: CabinetPlan | None = None
    source: ItemSource | None = None
    downloads: list[KeptDownload] = field(default_factory=list)
    # Items put into a file input in this run, in order; marked when the action asked
    # (``markAsUploaded``) or by ``finalize_uploads``.
    uploaded: dict[str, CabinetFile] = field(default_factory=dict)
    marked: list[str] = field(default_factory=list)

    @property
    def download_cabinet_id(self) -> str:
        """Where the downloads go; "" for the default cabinet, as the ingester reads it."""
        return "" if self.plan is None else self.plan.download_cabinet_id

    def candidates(self, cabinet_id: str | None) -> list[CabinetFile]:
        """The unuploaded file items of ``cabinet_id`` (the default cabinet when the plan
        has none under that id), newest first, less those uploaded in this run."""
        if self.plan is None:
            return []
        items = self.plan.uploads.get(self.cabinet_of(cabinet_id), [])
        return [item for item in items if item.id not in self.uploaded]

    def cabinet_of(self, cabinet_id: str | None) -> str:
        """The id of the cabinet an upload action's ``cabinetId`` names (the default
        cabinet for one the plan does not have)."""
        if self.plan is None:
            return ""
        return cabinet_id if cabinet_id in self.plan.uploads else self.plan.default_cabinet_id

    def uploaded_now(self, items: list[CabinetFile], *, mark: bool) -> None:
        for item in items:
            self.uploaded[item.id] = item
        if mark:
            self.mark([item.id for item in items])

    def mark(self, item_ids: list[str]) -> int:
        """Mark items as uploaded (once each); how many were not marked before."""
        new = [item_id for item_id in item_ids if item_id not in self.marked]
        self.marked.extend(new)
        return len(new)

    def discard_files(self) -> None:
        """Remove the downloads kept on disk (stored or not)."""
        for kept in self.downloads:
            kept.path.unlink(missing_ok=True)
