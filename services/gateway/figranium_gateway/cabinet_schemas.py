"""The cabinet API's bodies and answers (Figranium's fields), for validation and the
OpenAPI document."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, StrictStr

# Figranium cuts cabinet names to this many characters (after trimming).
CABINET_NAME_LENGTH = 80
# Items one request may name; more is a malformed request rather than a selection.
MAX_ITEM_IDS = 10_000


class CabinetOut(BaseModel):
    id: str
    name: str
    createdAt: int | None = Field(description="epoch ms")
    isDefault: bool
    itemCount: int
    unuploadedCount: int


class CabinetList(BaseModel):
    defaultCabinetId: str
    cabinets: list[CabinetOut]


class ItemOut(BaseModel):
    id: str
    name: str
    kind: Literal["file", "folder"]
    status: Literal["unuploaded", "uploaded"]
    size: int = Field(description="bytes; a folder's is its files' total")
    createdAt: int | None = Field(description="epoch ms")
    sourceTaskId: str | None = Field(description="the task whose run downloaded it")
    sourceRunId: str | None = Field(description="the execution that downloaded it")
    sha256: str | None = Field(description="hex digest of a file's bytes")


class ItemList(BaseModel):
    items: list[ItemOut] = Field(description="newest first")


class Success(BaseModel):
    success: bool


class CabinetName(BaseModel):
    name: StrictStr = Field(
        default="",
        description=f"trimmed and cut to {CABINET_NAME_LENGTH} characters; unique ignoring case",
    )

    def cleaned(self) -> str:
        """The name as Figranium keeps it: trimmed, at most CABINET_NAME_LENGTH long."""
        return self.name.strip()[:CABINET_NAME_LENGTH].strip()


class CabinetDeletion(BaseModel):
    targetCabinetId: StrictStr | None = Field(
        default=None, description="the cabinet that takes the deleted one's place in tasks"
    )
    mode: StrictStr | None = Field(
        default=None, description='"migrate" moves the items to the target; else they go'
    )


class ItemSelection(BaseModel):
    itemIds: list[StrictStr] = Field(default_factory=list, max_length=MAX_ITEM_IDS)


class StatusChange(ItemSelection):
    status: Literal["unuploaded", "uploaded"]
