"""A run's events on the events stream: its start, its log lines, the captures it stored
while it ran and its result, in order, each with a de-duplication id
(``<execution id>:<attempt>:<seq>``; a capture event's ends in ``:capture<n>``: its
sequence is the next line's)."""

from __future__ import annotations

import asyncio
import collections
import contextlib

import structlog
from nats.js import JetStreamContext

from figranium_common.cabinet_models import StoredDownload
from figranium_common.capture_models import StoredCapture
from figranium_common.errors import describe
from figranium_common.jsontypes import StorageState
from figranium_common.models import (
    CaptureEvent,
    LogEvent,
    ResultEvent,
    RunResult,
    StartedEvent,
)
from figranium_common.nats import (
    RESULTS_BUCKET,
    event_subject,
    is_no_room,
    put_new_object,
    result_object_name,
    results_store,
)

log = structlog.get_logger(__name__)

_MAX_LINES_PER_EVENT = 200
# The lines still waiting when the run ends ride in its result event, up to this much: the
# result has to fit in one NATS message with its data.
_MAX_LINES_IN_RESULT = 50
_MAX_CHARS_IN_RESULT = 16 * 1024
_MAX_CHARS_PER_EVENT = 256 * 1024
# Room left in a NATS message for its headers (the de-duplication id).
_HEADERS_ROOM = 4096
# The error of a stand-in result keeps this much of the run's own error.
_MAX_ERROR_CHARS = 2048


class EventPublisher:
    """Publishes one execution attempt's events, each with a de-duplication id.

    Lines said within ``linger_seconds`` of each other go out as one event
    (``RUN_LOG_LINGER_SECONDS``): a short run then sends one or two events instead of one
    per action, each of which is a NATS round trip and a database commit. The start waits
    as long, with the first lines, and a run that ends sooner announces it in its result.
    A live watcher sees a line at most this much later.

    Neither the start nor the log lines hold up the run: a background task publishes them
    in order, those that came together in one event, and the result waits until every
    event before it is out, so the ingester still sees the events of an attempt in
    sequence.

    A capture stored while the run goes on (:meth:`captured`) is announced without the
    linger, by the same task, after the lines said before it: a live watcher sees a
    screenshot as it is taken.
    """

    def __init__(
        self,
        js: JetStreamContext,
        execution_id: str,
        attempt: int,
        *,
        linger_seconds: float,
        max_payload: int = 1024 * 1024,
        max_result_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        """``max_payload``: the NATS server's message limit; a result event larger than it
        goes through the results bucket, up to ``max_result_bytes`` (MAX_RESULT_BYTES)."""
        self._js = js
        self._max_event_bytes = max_payload - _HEADERS_ROOM
        self._max_result_bytes = max_result_bytes
        self._execution_id = execution_id
        self._attempt = attempt
        self._linger = linger_seconds
        self._seq = 0
        self._start: StartedEvent | None = None  # said, not published yet
        self._lines: collections.deque[tuple[int, str]] = collections.deque()
        self._notices: collections.deque[CaptureEvent] = collections.deque()
        self._noticed = 0  # capture events said, for their de-duplication ids
        self._hurry = asyncio.Event()  # the linger is cut short (a flush, a capture)
        self._flushing = False
        self._finishing = False  # the result takes what is still waiting
        self._sender: asyncio.Task[None] | None = None

    @property
    def execution_id(self) -> str:
        return self._execution_id

    async def _publish(
        self,
        event: StartedEvent | LogEvent | ResultEvent | CaptureEvent,
        body: bytes | None = None,
        *,
        suffix: str = "",
    ) -> None:
        """``suffix``: the end of the de-duplication id, for events whose ``seq`` is not
        theirs alone."""
        msg_id = f"{self._execution_id}:{self._attempt}:{event.seq}{suffix}"
        await self._js.publish(
            event_subject(self._execution_id),
            event.model_dump_json().encode() if body is None else body,
            headers={"Nats-Msg-Id": msg_id},
            timeout=10,
        )

    def _next(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    async def started(self, runner_id: str) -> None:
        """The attempt started here; it is announced with the lines of the first linger."""
        self._start = StartedEvent(
            execution_id=self._execution_id,
            attempt=self._attempt,
            seq=self._next(),
            runner_id=runner_id,
        )
        self._send_soon()

    async def log(self, line: str) -> None:
        self._lines.append((self._next(), line))
        self._send_soon()

    def note(self, line: str) -> None:
        """A line from outside the action engine, such as a refused connection; dropped
        once the result is on its way."""
        if not self._finishing:
            self._lines.append((self._next(), line))
            self._send_soon()

    def captured(self, captures: list[StoredCapture]) -> None:
        """Captures stored while the run goes on, announced at once in a CaptureEvent whose
        ``seq`` is the next line's (not used up). Dropped once the result is on its way:
        the result lists every capture stored."""
        if self._finishing or not captures:
            return
        self._notices.append(
            CaptureEvent(
                execution_id=self._execution_id,
                attempt=self._attempt,
                seq=self._seq,
                captures=captures,
            )
        )
        self._hurry.set()
        self._send_soon()

    def _send_soon(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_lines(), name="run-log-sender")

    async def _send_lines(self) -> None:
        while self._lines or self._start is not None or self._notices:
            if not self._notices:  # a capture goes out now, with the lines before it
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), self._linger)
            if self._finishing:
                return
            if self._start is not None:
                if not await self._announce():
                    return  # tried again with the next line, or the result carries it
            elif self._line_is_next():
                await self._send_event(self._take_lines())
            else:
                await self._send_notice(self._notices.popleft())
            if not self._flushing and not self._notices:
                self._hurry.clear()

    def _line_is_next(self) -> bool:
        """Whether the oldest waiting line goes out before the oldest capture event."""
        return bool(self._lines) and (not self._notices or self._lines[0][0] < self._notices[0].seq)

    async def _send_notice(self, event: CaptureEvent) -> None:
        self._noticed += 1
        try:
            await self._publish(event, suffix=f":capture{self._noticed}")
        except Exception as exc:  # the result lists the capture too
            log.warning("run.capture_publish_failed", error=describe(exc))

    async def _announce(self) -> bool:
        """Publish the start with the lines waiting behind it; whether it went out (if
        not, its lines wait again)."""
        assert self._start is not None
        lines = self._take_lines() if self._line_is_next() else []
        try:
            await self._publish(self._start.model_copy(update={"lines": [x for _, x in lines]}))
        except Exception as exc:
            log.warning("run.start_publish_failed", error=describe(exc))
            self._lines.extendleft(reversed(lines))
            return False
        self._start = None
        return True

    async def _send_event(self, lines: list[tuple[int, str]]) -> None:
        event = LogEvent(
            execution_id=self._execution_id,
            attempt=self._attempt,
            seq=lines[0][0],
            lines=[line for _, line in lines],
        )
        try:
            await self._publish(event)
        except Exception as exc:  # a lost log line must not fail the run
            log.warning("run.log_publish_failed", error=describe(exc))

    def _take_lines(self) -> list[tuple[int, str]]:
        """The oldest waiting lines that fit in one event (their seqs are consecutive),
        up to the next capture event."""
        taken = [self._lines.popleft()]
        chars = len(taken[0][1])
        while self._line_is_next() and len(taken) < _MAX_LINES_PER_EVENT:
            chars += len(self._lines[0][1])
            if chars > _MAX_CHARS_PER_EVENT:
                break
            taken.append(self._lines.popleft())
        return taken

    def _too_many_to_ride(self) -> bool:
        return len(self._lines) > _MAX_LINES_IN_RESULT or (
            sum(len(line) for _, line in self._lines) > _MAX_CHARS_IN_RESULT
        )

    async def flush(self) -> None:
        """Publish the start and every log line so far now (or give up on them), without
        the linger; once the result is on its way, only what is already being published."""
        self._flushing = True
        self._hurry.set()
        while self._sender is not None and not self._sender.done():
            # Shielded: a run cancelled while waiting leaves its lines going out.
            await asyncio.shield(self._sender)

    async def result(
        self,
        result: RunResult,
        duration_ms: int,
        storage_state: StorageState | None = None,
        *,
        sealed_storage_state: str | None = None,
        stored_downloads: list[StoredDownload] | None = None,
        uploaded_items: list[str] | None = None,
        stored_captures: list[StoredCapture] | None = None,
    ) -> None:
        # What is already on its way goes out first; the last lines, and the start if it
        # is still waiting, ride in the result, which lists the captures not announced yet.
        self._finishing = True
        await self.flush()
        self._notices.clear()
        while self._too_many_to_ride():
            if self._start is None or not await self._announce():
                await self._send_event(self._take_lines())
        event = ResultEvent(
            execution_id=self._execution_id,
            attempt=self._attempt,
            seq=self._next(),
            result=result,
            duration_ms=duration_ms,
            storage_state=storage_state,
            sealed_storage_state=sealed_storage_state,
            lines=[line for _, line in self._lines],
            started=self._start,
            stored_downloads=stored_downloads or [],
            uploaded_items=uploaded_items or [],
            stored_captures=stored_captures or [],
        )
        body = event.model_dump_json().encode()
        if len(body) > self._max_event_bytes:
            event = await self._stored_apart(event, body)
            body = event.model_dump_json().encode()
        await self._publish(event, body)
        self._start = None
        self._lines.clear()

    async def _stored_apart(self, event: ResultEvent, body: bytes) -> ResultEvent:
        """A stand-in for a result too large for one message: the whole event goes to the
        results bucket. When it cannot (larger than MAX_RESULT_BYTES, or the bucket is
        full), the run ends with an error instead: storing it would fail at every attempt,
        and each attempt would repeat the run's side effects.

        A transient failure (NATS unreachable) raises: the run is not acknowledged, and is
        delivered again as any run whose result was not published."""
        if len(body) > self._max_result_bytes:
            return await self._failed(
                event,
                f"RESULT_TOO_LARGE: the run's result is {len(body)} bytes, more than"
                f" MAX_RESULT_BYTES ({self._max_result_bytes})",
            )
        name = result_object_name(self._execution_id, self._attempt)
        try:
            await results_store(self._js, create=False)
            await put_new_object(self._js, RESULTS_BUCKET, name, body)
        except Exception as exc:
            if not is_no_room(exc):
                raise
            return await self._failed(
                event,
                f"RESULT_TOO_LARGE: the results bucket has no room for the run's result"
                f" ({len(body)} bytes; RESULTS_MAX_BYTES)",
            )
        log.info("run.result_stored_apart", bytes=len(body), object=name)
        stand_in = self._stand_in(event, event.result.error)
        return stand_in.model_copy(update={"result_object": name})

    async def _failed(self, event: ResultEvent, error: str) -> ResultEvent:
        log.error("run.result_too_large", error=error)
        # The lines that would have ridden in the result go out on their own.
        while self._lines:
            if self._start is None or not await self._announce():
                await self._send_event(self._take_lines())
        stand_in = self._stand_in(event, error)
        stand_in.result.outcome = "error"
        return stand_in

    def _stand_in(self, event: ResultEvent, error: str | None) -> ResultEvent:
        """``event`` without what makes it large: no data, HTML, logs or browser state. The
        cabinet items and the captures stay: without them their objects would be stored
        for no item, and missing from the captures index."""
        result = event.result
        return ResultEvent(
            execution_id=event.execution_id,
            attempt=event.attempt,
            seq=event.seq,
            at=event.at,
            result=RunResult(
                outcome=result.outcome,
                final_url=result.final_url,
                screenshot_url=result.screenshot_url,
                error=None if error is None else error[:_MAX_ERROR_CHARS],
            ),
            duration_ms=event.duration_ms,
            lines=[line for _, line in self._lines],
            started=self._start,
            stored_downloads=event.stored_downloads,
            uploaded_items=event.uploaded_items,
            stored_captures=event.stored_captures,
        )
