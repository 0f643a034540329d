"""What one (sub)task's run holds while its actions run: the page, variables, log, captures.

The interpreter, the action handlers and extraction all read and change a :class:`RunState`;
it lives apart from all three so that none of them imports another to reach it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import Download, Page
from playwright.async_api import Error as PlaywrightError

from figranium_common.cabinet_models import StoredDownload, item_object
from figranium_common.cabinet_names import safe_name
from figranium_common.errors import first_line
from figranium_common.jsontypes import JsonObject, JsonValue
from figranium_common.models import CaptchaSolver, DownloadEntry, Task, now_ms
from figranium_common.outbound_urls import check_url
from figranium_common.redact import Redactor
from figranium_runner.bounds import Bounds, LogBudget, VariableBudget
from figranium_runner.cabinet_run import KeptDownload, RunCabinets, new_item_id
from figranium_runner.humanize import Humanizer
from figranium_runner.isolated import IsolatedWorld

LogSink = Callable[[str], Awaitable[None]]
# Takes a capture to store at once, while the run goes on (live_captures.py).
CaptureSink = Callable[["Capture"], None]

# Downloads wait on disk under this name until they are stored in the cabinets bucket.
DOWNLOAD_FILE_PREFIX = "figranium-download-"


@dataclass
class Capture:
    """A file to store in the captures bucket: ``data`` in memory, or a file at ``path``
    (streamed from disk, and removed once stored)."""

    name: str
    data: bytes
    content_type: str = "image/png"
    path: Path | None = None


def discard_files(captures: list[Capture]) -> None:
    """Remove the files of captures kept on disk, stored or not."""
    for capture in captures:
        if capture.path is not None:
            capture.path.unlink(missing_ok=True)


@dataclass
class RunState:
    execution_id: str
    page: Page
    variables: JsonObject
    allow_private: bool
    default_timeout_ms: int
    emit: LogSink
    max_loop_iterations: int = 1000
    allow_metadata: bool = False  # ALLOW_METADATA_ADDRESS; meaningful with allow_private
    max_download_bytes: int = 100 * 1024 * 1024  # MAX_DOWNLOAD_BYTES
    subtasks: dict[str, Task] = field(default_factory=dict)
    human_typing: bool = False
    human: Humanizer | None = None  # the task's stealth options are on (actions/human.py)
    # Secret variables and text typed into password fields, hidden in every line said and
    # in the result; a subtask shares its parent's, so neither shows the other's secrets.
    redactor: Redactor = field(default_factory=Redactor)
    neutralise_csv: bool = True  # CSV_NEUTRALISE_FORMULAS
    captcha_solver: CaptchaSolver | None = None  # CAPTCHA_SOLVER_URL, else the stored one
    auto_solve_captcha: bool = False  # the task's autoSolveCaptcha
    captcha_detect_ms: int = 5000  # CAPTCHA_AUTO_DETECT_TIMEOUT_MS
    depth: int = 0
    logs: list[str] = field(default_factory=list)
    captures: list[Capture] = field(default_factory=list)
    # Where screenshots taken by actions go at once; None: with the run's last captures.
    store_now: CaptureSink | None = None
    downloads: list[DownloadEntry] = field(default_factory=list)
    # Shared with the tasks this one starts: their downloads and uploads are the run's.
    cabinets: RunCabinets = field(default_factory=RunCabinets)
    pending_downloads: set[asyncio.Task[None]] = field(default_factory=set)
    download_started: asyncio.Event = field(default_factory=asyncio.Event)
    error_handler: tuple[int, int] | None = None
    in_error_handler: bool = False
    failed_actions: int = 0

    bounds: Bounds = field(default_factory=Bounds)
    log_budget: LogBudget | None = None  # shared with started tasks; made from bounds
    variable_budget: VariableBudget = field(init=False)
    world: IsolatedWorld = field(init=False)  # the page's isolated world, for our scripts

    def __post_init__(self) -> None:
        if self.log_budget is None:
            self.log_budget = LogBudget(self.bounds)
        self.variable_budget = VariableBudget(self.bounds, {})
        self.world = IsolatedWorld(self.page)

    def for_subtask(self, task_id: str, task: Task, page: Page, variables: JsonObject) -> RunState:
        """The state of a task started by this one (``start``), in its own ``page``: the
        same limits, log budget and secrets, its lines prefixed with its id."""
        return RunState(
            execution_id=self.execution_id,
            page=page,
            variables=variables,
            allow_private=self.allow_private,
            allow_metadata=self.allow_metadata,
            default_timeout_ms=self.default_timeout_ms,
            emit=lambda line: self.emit(f"[{task_id}] {line}"),
            max_loop_iterations=task.maxLoopIterations or self.max_loop_iterations,
            bounds=self.bounds,
            log_budget=self.log_budget,
            max_download_bytes=self.max_download_bytes,
            subtasks=self.subtasks,
            human_typing=task.humanTyping,
            redactor=self.redactor,
            neutralise_csv=self.neutralise_csv,
            captcha_solver=self.captcha_solver,
            auto_solve_captcha=task.autoSolveCaptcha,
            captcha_detect_ms=self.captcha_detect_ms,
            cabinets=self.cabinets,
            store_now=self.store_now,
            depth=self.depth + 1,
        )

    @property
    def action_timeout_s(self) -> float:
        return self.default_timeout_ms / 1000

    async def say(self, line: str, *, always: bool = False) -> None:
        assert self.log_budget is not None
        admitted = self.log_budget.admit(self.redactor.text(line), always=always)
        if admitted is None:
            return
        self.logs.append(admitted)
        await self.emit(admitted)

    def store(self, name: str, value: JsonValue) -> None:
        """Set a variable; LimitExceeded past RUNNER_MAX_VARIABLE(S)_BYTES."""
        self.variable_budget.admit(name, value)
        self.variables[name] = value

    async def goto(self, url: str) -> None:
        await check_url(url, allow_private=self.allow_private, allow_metadata=self.allow_metadata)
        await self.page.goto(url, wait_until="load")

    async def screenshot(self, label: str | None, *, full_page: bool, now: bool = False) -> str:
        """Take a screenshot of the page; its URL. ``now``: stored while the run goes on
        (``store_now``), not with the run's last captures."""
        suffix = f"_{_safe_label(label)}" if label else ""
        name = f"{self.execution_id}_agent_{now_ms()}{suffix}.png"
        capture = Capture(name, await self.page.screenshot(full_page=full_page))
        if now and self.store_now is not None:
            self.store_now(capture)
        else:
            self.captures.append(capture)
        return f"/captures/{name}"

    def set_output(self, value: JsonValue) -> None:
        if value is not None:
            self.variable_budget.admit("block.output", value)
            self.variables["block"] = {"output": value}

    def discard_kept_files(self) -> None:
        """Remove the files kept on disk for storing (captures, downloads), stored or not."""
        discard_files(self.captures)
        self.cabinets.discard_files()

    def track_downloads(self, page: Page) -> None:
        def on_download(download: Download) -> None:
            self.download_started.set()
            task = asyncio.create_task(self._save_download(download))
            self.pending_downloads.add(task)
            task.add_done_callback(self.pending_downloads.discard)

        page.on("download", on_download)

    async def _save_download(self, download: Download) -> None:
        original = download.suggested_filename or "download"
        kept: Path | None = None
        try:
            size = (await download.path()).stat().st_size
            if size > self.max_download_bytes:
                await download.delete()
                await self.say(
                    f"[DOWNLOAD ERROR] {original}: {size} bytes exceeds MAX_DOWNLOAD_BYTES"
                    f" ({self.max_download_bytes}); dropped"
                )
                return
            # A copy of our own, on disk: Playwright removes its file when the context
            # closes, which may be while the downloads are still being stored.
            fd, raw = tempfile.mkstemp(prefix=DOWNLOAD_FILE_PREFIX)
            os.close(fd)
            kept = Path(raw)
            await download.save_as(kept)
            sha256 = await asyncio.to_thread(_sha256_of, kept)
        except (PlaywrightError, OSError) as exc:
            if kept is not None:
                kept.unlink(missing_ok=True)
            await self.say(f"[DOWNLOAD ERROR] {original}: {first_line(exc)}")
            return
        self._keep_download(original, download.url, kept, size, sha256)
        await self.say(f"[DOWNLOAD] Saved: {original}")

    def _keep_download(self, name: str, url: str, path: Path, size: int, sha256: str) -> None:
        """The download becomes an item of the run's download cabinet once the run is over
        (the ingester may still refuse it: quotas), listed in the run's ``downloads``."""
        item_id = new_item_id()
        cabinet_id = self.cabinets.download_cabinet_id
        stored = StoredDownload(
            item_id=item_id,
            cabinet_id=cabinet_id,
            name=safe_name(name),
            url=url,
            object=item_object(item_id),
            size=size,
            sha256=sha256,
        )
        self.cabinets.downloads.append(KeptDownload(stored, path))
        self.downloads.append(
            DownloadEntry(
                name=name,
                url=url,
                path=f"/api/cabinets/{cabinet_id}/items/{item_id}/download",
                size=size,
                cabinetId=cabinet_id,
                itemId=item_id,
                kind="file",
            )
        )


def _sha256_of(path: Path) -> str:
    with path.open("rb") as source:
        return hashlib.file_digest(source, "sha256").hexdigest()


def _safe_label(label: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in label).strip("-.")
    return cleaned[:24] or "file"
