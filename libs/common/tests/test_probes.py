"""The ops server: metrics exposition, liveness, readiness with its reasons, a taken port."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from figranium_common import probes
from figranium_common.probes import ProbeServer
from figranium_devstack.ports import free_port


def _registry() -> tuple[CollectorRegistry, Counter]:
    registry = CollectorRegistry()
    counter = Counter("figranium_test_things", "Things", ["kind"], registry=registry)
    return registry, counter


async def _get(port: int, path: str) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, response.headers["Content-Type"], await response.text()


async def test_metrics_livez_and_readyz() -> None:
    registry, counter = _registry()
    counter.labels(kind="a").inc(3)
    reason: list[str | None] = [None]

    async def ready() -> str | None:
        return reason[0]

    port = free_port()
    async with ProbeServer(registry, ready, port=port, host="127.0.0.1", service="test") as server:
        assert server.serving
        status, content_type, text = await _get(port, "/metrics")
        assert status == 200
        assert content_type.startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        samples = families["figranium_test_things"].samples
        assert [(s.name, s.labels, s.value) for s in samples if s.name.endswith("_total")] == [
            ("figranium_test_things_total", {"kind": "a"}, 3.0)
        ]

        assert (await _get(port, "/livez"))[0] == 200
        assert (await _get(port, "/readyz"))[0] == 200

        reason[0] = "draining"
        status, _, text = await _get(port, "/readyz")
        assert status == 503
        assert '"reason": "draining"' in text
        assert (await _get(port, "/livez"))[0] == 200  # alive, only not ready
    assert not server.serving


async def test_a_failing_or_hanging_check_is_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probes, "READINESS_TIMEOUT_SECONDS", 0.2)
    registry, _ = _registry()

    async def broken() -> str | None:
        raise RuntimeError("database exploded")

    async def hanging() -> str | None:
        await asyncio.Event().wait()
        return None

    for check, reason in ((broken, "database exploded"), (hanging, "timed out")):
        port = free_port()
        async with ProbeServer(registry, check, port=port, host="127.0.0.1", service="test"):
            status, _, text = await _get(port, "/readyz")
        assert status == 503
        assert reason in text


async def test_port_zero_serves_nothing_and_a_taken_port_is_not_fatal() -> None:
    registry, _ = _registry()

    async def ready() -> str | None:
        return None

    async with ProbeServer(registry, ready, port=0, service="off") as off:
        assert not off.serving

    port = free_port()
    async with ProbeServer(registry, ready, port=port, host="127.0.0.1", service="first"):
        async with ProbeServer(registry, ready, port=port, host="127.0.0.1", service="second") as s:
            assert not s.serving  # logged, and the service goes on
        assert (await _get(port, "/livez"))[0] == 200
