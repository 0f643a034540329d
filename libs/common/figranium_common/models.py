"""Pydantic models: the domain (task, run result) and the messages between services.

Field names are Figranium's wire names (camelCase where Figranium uses it) because clients
depend on them. Unknown task and action fields are kept as given. A task's actions have
models of their own, in :mod:`figranium_common.action_models`.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, ClassVar, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, model_validator

from figranium_common.action_models import Actions
from figranium_common.cabinet_models import CabinetPlan, StoredDownload
from figranium_common.capture_models import StoredCapture
from figranium_common.jsontypes import GivenJson, GivenObject, GivenStorageState, JsonObject

Outcome = Literal["success", "error", "stopped", "crashed", "anti_bot"]
Phase = Literal["queued", "running", "finished"]


def now_ms() -> int:
    return int(time.time() * 1000)


def epoch_ms(value: datetime | None) -> int | None:
    """A database timestamp as Figranium's wire format: epoch milliseconds."""
    return None if value is None else int(value.timestamp() * 1000)


class Variable(BaseModel):
    model_config = ConfigDict(extra="allow")

    # "secret": a string whose value runs see but logs, results and task reads never show.
    # "selector": a CSS selector, substituted as text (Figranium's editor offers the type).
    type: Literal["string", "number", "boolean", "secret", "selector"] = "string"
    value: GivenJson = None


class StealthOptions(BaseModel):
    """Figranium's ``stealth`` block: how a run's mouse and keyboard act like a person's.

    Any option on also makes the run's browser look like a desktop Chrome (figranium_runner
    stealth.py) and dismisses cookie banners. Fields Figranium may add later are kept."""

    model_config = ConfigDict(extra="allow")

    allowTypos: bool = False  # a wrong key now and then, taken back with Backspace
    idleMovements: bool = False  # the cursor wanders during ``wait``
    overscroll: bool = False  # ``scroll`` goes past its target and comes back
    deadClicks: bool = False  # a click on nothing before some clicks
    fatigue: bool = False  # pauses grow as the run goes on
    naturalTyping: bool = False  # bursts of keys, pauses after spaces and punctuation
    cursorGlide: bool = False  # the cursor travels on an eased curve from where it was
    randomizeClicks: bool = False  # clicks land at a random point inside the element

    @property
    def enabled(self) -> bool:
        """Whether any option is on (Figranium's editor writes the block with all off)."""
        return any(
            (
                self.allowTypos,
                self.idleMovements,
                self.overscroll,
                self.deadClicks,
                self.fatigue,
                self.naturalTyping,
                self.cursorGlide,
                self.randomizeClicks,
            )
        )


class Task(BaseModel):
    """A saved task. Known fields are type-checked; anything else is kept verbatim."""

    model_config = ConfigDict(extra="allow")

    id: (
        Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")] | None
    ) = None
    name: str = ""
    description: str | None = None
    url: str = ""
    mode: Literal["agent", "scrape", "headful"] = "agent"
    wait: Annotated[float, Field(ge=0, le=600)] = 0
    actions: Actions = Field(default_factory=list)
    variables: dict[str, Variable] = Field(default_factory=dict)
    extractionScript: str | None = None
    extractionFormat: Literal["json", "csv"] = "json"
    includeHtml: bool = False
    includeShadowDom: bool = True
    humanTyping: bool = False
    statelessExecution: bool = False
    disableRecording: bool = False
    rotateUserAgents: bool = False
    rotateViewport: bool = False
    rotateProxies: bool = False
    stealth: StealthOptions = Field(default_factory=StealthOptions)
    # After the start page and each navigate, goto, click, type or fill: solve a captcha
    # widget found within CAPTCHA_AUTO_DETECT_TIMEOUT_MS (none found: nothing said).
    autoSolveCaptcha: bool = False
    # Figranium's {enabled, targetLanguage}: kept, not applied (docs/differences.md).
    translation: GivenObject | None = None
    # The cabinet the run's downloads land in (figranium_common.cabinet_dispatch); the
    # task-level ``cabinetId`` is kept as given.
    downloadCabinetId: str | None = None
    cabinetId: str | None = None
    # The cap on one loop's iterations for this task; none: RUNNER_MAX_LOOP_ITERATIONS.
    maxLoopIterations: Annotated[int, Field(ge=1, le=1_000_000)] | None = None

    def dump(self) -> GivenObject:
        """The stored and returned form: every field given, nothing invented. (Also the
        serializer of ``GivenTask``, whose return type pydantic reads: hence ``Given``.)"""
        return self.model_dump(mode="json", exclude_unset=True, exclude_none=False)


# A task in a message, sent as given (``Task.dump``): the same JSON object as the stored
# task, as runners of earlier releases read it.
GivenTask = Annotated[Task, PlainSerializer(Task.dump)]


class DownloadEntry(BaseModel):
    """A file a run downloaded (Figranium's ``downloads``): an item of a cabinet."""

    model_config = ConfigDict(extra="allow")

    name: str  # the file name the site suggested
    url: str  # where it came from
    path: str  # /api/cabinets/<cabinet>/items/<item>/download (earlier: /captures/<name>)
    size: int  # bytes
    cabinetId: str | None = None
    itemId: str | None = None
    kind: Literal["file", "folder"] | None = None


class RunResult(BaseModel):
    """What a run produced; the synchronous run call answers exactly this object."""

    model_config = ConfigDict(extra="allow")

    outcome: Outcome
    final_url: str | None = None
    data: GivenJson = None
    logs: list[str] = Field(default_factory=list)
    html: str | None = None
    screenshot_url: str | None = None
    downloads: list[DownloadEntry] = Field(default_factory=list)
    error: str | None = None


# --- messages -------------------------------------------------------------------------


class ProxyConfig(BaseModel):
    """A proxy a run may go through; credentials are handed to Chromium, never logged."""

    server: str
    username: str | None = None
    password: str | None = None


class OutputTarget(BaseModel):
    """Where a successful run's data goes (the task's ``output``), credential resolved.

    ``problem`` says why the target cannot be used (a deleted credential, say); the runner
    then treats the push as failed, which ``on_error`` turns into an error or a log line.
    """

    provider: Literal["baserow"] = "baserow"
    credential_id: str
    base_url: str = ""
    token: str = ""
    database_id: str | None = None
    table_id: str = ""
    on_error: Literal["fail", "ignore"] = "fail"
    problem: str | None = None


class CaptchaSolver(BaseModel):
    """The captcha solving service (createTask/getTaskResult API) the settings name."""

    base_url: str
    client_key: str = ""


class RunRequest(BaseModel):
    """Published on ``RUNS`` (subject ``figranium.runs.v1.<pool>``) by gateway or scheduler.

    Everything a run needs travels in the message: runners never read the database.
    """

    execution_id: str
    task: GivenTask
    variables: GivenObject = Field(default_factory=dict)
    source: str = "api"
    timeout_seconds: float = 300.0
    requested_at: int = Field(default_factory=now_ms)
    # Playwright storage state (cookies, local storage) to start from; None: a clean context.
    storage_state: GivenStorageState | None = None
    # The proxy chosen at dispatch (figranium_common.proxy_choice); empty: none. Requests
    # of the previous release carried every saved proxy, for tasks with rotateProxies.
    proxies: list[ProxyConfig] = Field(default_factory=list)
    # Tasks that ``start`` actions refer to (transitively), by id.
    subtasks: dict[str, GivenTask] = Field(default_factory=dict)
    # The task's ``output`` with its credential, for tasks that push their data somewhere.
    output: OutputTarget | None = None
    # The stored captcha solver (/api/settings/captcha), for tasks that solve captchas;
    # left out of the JSON when None, so the message reads as earlier releases sent it.
    captcha_solver: CaptchaSolver | None = Field(default=None, exclude_if=lambda v: v is None)
    # The cabinets it downloads to and may upload from; left out of the JSON when None.
    cabinets: CabinetPlan | None = Field(default=None, exclude_if=lambda v: v is None)
    # storage_state, proxies, output and captcha_solver, sealed under the transit key
    # (they are then empty above); figranium_common.transit.
    sealed: str | None = None


class RunRequestHead(BaseModel):
    """What a runner reads of a run request that does not validate: the execution it is
    for, so that it can finish it with an error rather than leave it queued."""

    execution_id: str


class PageCaptureRequest(BaseModel):
    """Request/reply to any runner (``TOOLS_PAGE_SUBJECT``): run ``task``'s actions before
    ``action_index`` and answer the page's HTML, reduced to what a selector needs."""

    task: GivenTask
    action_index: int = Field(ge=0)
    variables: GivenObject = Field(default_factory=dict)
    storage_state: GivenStorageState | None = None
    proxies: list[ProxyConfig] = Field(default_factory=list)
    subtasks: dict[str, GivenTask] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=60.0, gt=0)


class PageCaptureReply(BaseModel):
    html: str = ""
    url: str | None = None
    # Why no page could be captured (a refused URL, an action that failed…); html is then "".
    error: str | None = None


class TestActionRequest(BaseModel):
    """Request/reply to any runner (``TOOLS_TEST_ACTION_SUBJECT``): run ``task``'s actions
    before ``action_index`` in a clean context, then that action, and say what it did."""

    __test__: ClassVar[bool] = False  # not a pytest test class, whatever its name

    task: GivenTask
    action_index: int = Field(ge=0)
    variables: GivenObject = Field(default_factory=dict)  # plain values, by name
    proxies: list[ProxyConfig] = Field(default_factory=list)
    subtasks: dict[str, GivenTask] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=60.0, gt=0)


class TestActionReply(BaseModel):
    """Figranium's test-action result: ``not_reached`` when an earlier step failed (the
    reason in ``errorMessage``); ``error`` is for a request no runner could try."""

    __test__: ClassVar[bool] = False

    status: Literal["success", "error", "not_reached"] = "not_reached"
    durationMs: int = 0
    resolvedInputs: GivenObject = Field(default_factory=dict)
    output: GivenJson = None
    errorMessage: str | None = None
    variables: GivenObject = Field(default_factory=dict)
    logs: list[str] = Field(default_factory=list)
    error: str | None = None


class ScriptCheckRequest(BaseModel):
    """Request/reply to any runner (``TOOLS_SCRIPT_SUBJECT``): does this extraction script
    compile in Chromium, as the body of the async function runs wrap it in? Not run."""

    script: str


class ScriptCheckReply(BaseModel):
    error: str | None = None  # the SyntaxError's message; None: it compiles


class LogLine(TypedDict):
    """One log line as stored: the ``log`` event of one line that earlier runners sent."""

    execution_id: str
    attempt: int
    seq: int
    at: int
    type: Literal["log"]
    line: str


class _Event(BaseModel):
    execution_id: str
    attempt: int = Field(ge=1)
    seq: int = Field(ge=0)
    at: int = Field(default_factory=now_ms)


class StartedEvent(_Event):
    """A runner started an attempt, with the log lines said in its first moments (``lines``:
    line i has sequence ``seq + 1 + i``), so a run's start costs one event, not two."""

    type: Literal["started"] = "started"
    runner_id: str
    lines: list[str] = Field(default_factory=list)

    def log_lines(self) -> list[LogLine]:
        """The lines as :meth:`LogEvent.each` stores them."""
        return _lines_from(self, self.seq + 1, self.lines)

    def bare(self) -> JsonObject:
        """The event as stored: its lines are stored as lines of their own."""
        return self.model_dump(mode="json", exclude={"lines"})


class LogEvent(_Event):
    """Log lines of a run that were said close together; line i has sequence ``seq + i``.

    One event per line is accepted too (``line``), as runners of earlier releases send it.
    """

    type: Literal["log"] = "log"
    lines: list[str] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _one_line(cls, data: object) -> object:
        if isinstance(data, dict) and "lines" not in data and "line" in data:
            data = {**data, "lines": [data["line"]]}
        return data

    def each(self) -> list[LogLine]:
        """One stored payload per line, as runners of earlier releases published them."""
        return [
            LogLine(
                execution_id=self.execution_id,
                attempt=self.attempt,
                seq=self.seq + i,
                at=self.at,
                type="log",
                line=line,
            )
            for i, line in enumerate(self.lines)
        ]


class ResultEvent(_Event):
    """A run's result, with the log lines said last that had not gone out yet (``lines``:
    line i has sequence ``seq - len(lines) + i``), so they are stored with the result in
    one transaction rather than in one of their own just before it."""

    type: Literal["result"] = "result"
    result: RunResult
    duration_ms: int = Field(ge=0)
    # The browser state at the end of the run, to be kept for the task's next run; None
    # for stateless runs (the saved state is then left untouched).
    storage_state: GivenStorageState | None = None
    # The same, sealed under the transit key (storage_state is then None).
    sealed_storage_state: str | None = None
    lines: list[str] = Field(default_factory=list)
    # A run that ended before its start was announced: the result stands for its started
    # event too (sequence 0; its lines, if any, are this event's ``lines``).
    started: StartedEvent | None = None
    # Set on an event too large for one NATS message: the whole event is this object of
    # the "results" bucket, and this message is a stand-in with its outcome.
    result_object: str | None = None
    # Downloads stored in the cabinets bucket, for the ingester to make items of.
    stored_downloads: list[StoredDownload] = Field(default_factory=list)
    # Cabinet items the run uploaded and marked (``markAsUploaded``, ``finalize_uploads``).
    uploaded_items: list[str] = Field(default_factory=list)
    # The captures stored at the end (video, final screenshot), for the gateway's index.
    stored_captures: list[StoredCapture] = Field(default_factory=list)

    @model_validator(mode="after")
    def _lines_fit_before(self) -> ResultEvent:
        if len(self.lines) > self.seq - (self.started is not None):
            raise ValueError("a result's lines must have sequences from 0 on, after its start")
        if self.started is not None and self.started.seq != 0:
            raise ValueError("a start riding in a result has sequence 0")
        return self

    def log_lines(self) -> list[LogLine]:
        """The lines as :meth:`LogEvent.each` stores them."""
        return _lines_from(self, self.seq - len(self.lines), self.lines)


def _lines_from(event: _Event, first: int, lines: list[str]) -> list[LogLine]:
    if not lines:
        return []
    return LogEvent(
        execution_id=event.execution_id,
        attempt=event.attempt,
        seq=first,
        at=event.at,
        lines=lines,
    ).each()


class CaptureEvent(_Event):
    """Captures a run stored while it ran (a screenshot as it was taken): the console shows
    them at once and the gateway indexes them. Its ``seq`` is the run's next log sequence,
    which it does not use up (log lines keep theirs; its de-duplication id ends in
    ``:capture<n>``, n counting the attempt's capture events). A runner may lose one: the
    result's ``stored_captures`` lists these too."""

    type: Literal["capture"] = "capture"
    captures: list[StoredCapture] = Field(min_length=1)


RunEvent = Annotated[
    StartedEvent | LogEvent | ResultEvent | CaptureEvent, Field(discriminator="type")
]


class RunEventEnvelope(BaseModel):
    """Parses any run event published on ``RUN_EVENTS``."""

    event: RunEvent


class ExecutionNotice(BaseModel):
    """Core-NATS notice sent after an execution changed in PostgreSQL (no persistence)."""

    execution_id: str
    phase: Phase


class SettingsNotice(BaseModel):
    """Core-NATS notice that a setting changed; receivers read the value back from PostgreSQL.

    The value itself is never sent: the API key must not travel over NATS.
    """

    key: str
