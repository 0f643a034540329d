"""A steady load through PORT: async runs (each with a webhook) and sync runs, on threads,
until stopped. Every answer carrying an ``executionId`` is an accepted run (202, 200, and
also a 503 or 504 whose run is saved and goes on); sync calls are timed, so a client left
hanging past the run's timeout shows."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Self

import httpx

TASK_ID = "faults-load"
# Bounds: the load never sends more than this many requests per thread.
MAX_REQUESTS = 100_000


@dataclass
class Accepted:
    execution_id: str
    at: float  # time.time() when answered
    webhook: bool


@dataclass
class SyncCall:
    at: float
    seconds: float
    status: int | None  # None: no answer (connection refused or reset)


@dataclass
class Load:
    """``async_every`` / ``sync_threads``: the pace of async runs and how many sync calls
    are in flight at once."""

    base_url: str
    api_key: str
    webhook_url: str
    async_every: float = 0.25
    sync_threads: int = 2
    sync_timeout: float = 60.0
    accepted: list[Accepted] = field(default_factory=list)
    sync_calls: list[SyncCall] = field(default_factory=list)
    refused: int = 0  # answers without an execution id (the gateway was down)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _client(self, timeout: float) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"x-api-key": self.api_key}, timeout=timeout
        )

    def __enter__(self) -> Self:
        targets = [self._async_loop] + [self._sync_loop] * self.sync_threads
        self._threads = [threading.Thread(target=t, daemon=True) for t in targets]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.sync_timeout + 10)

    def _record(self, response: httpx.Response | None, webhook: bool) -> None:
        body = _json(response)
        with self._lock:
            if isinstance(body, dict) and isinstance(body.get("executionId"), str):
                self.accepted.append(Accepted(body["executionId"], time.time(), webhook))
            else:
                self.refused += 1

    def _async_loop(self) -> None:
        body = {"async": True, "webhookUrl": self.webhook_url}
        with self._client(10) as client:
            for _ in range(MAX_REQUESTS):
                if self._stop.wait(self.async_every):
                    return
                try:
                    response: httpx.Response | None = client.post(
                        f"/api/tasks/{TASK_ID}/api", json=body
                    )
                except httpx.TransportError:
                    response = None
                self._record(response, webhook=True)

    def _sync_loop(self) -> None:
        with self._client(self.sync_timeout) as client:
            for _ in range(MAX_REQUESTS):
                if self._stop.is_set():
                    return
                started = time.monotonic()
                try:
                    response: httpx.Response | None = client.post(
                        f"/api/tasks/{TASK_ID}/api", json={}
                    )
                except httpx.TransportError:
                    response = None
                seconds = time.monotonic() - started
                with self._lock:
                    status = None if response is None else response.status_code
                    self.sync_calls.append(SyncCall(time.time(), seconds, status))
                self._record(response, webhook=False)
                if response is None:
                    self._stop.wait(0.2)  # no gateway behind PORT: do not spin

    def accepted_until(self, moment: float) -> list[Accepted]:
        with self._lock:
            return [a for a in self.accepted if a.at <= moment]

    def sync_between(self, start: float, end: float) -> list[SyncCall]:
        with self._lock:
            return [c for c in self.sync_calls if start <= c.at <= end]


def _json(response: httpx.Response | None) -> object:
    if response is None:
        return None
    try:
        return response.json()
    except ValueError:
        return None
