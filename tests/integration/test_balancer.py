"""Two gateways behind the HAProxy balancer `make run` puts in front of several
(figranium_devstack.balancer): spreading, streaming, forwarded client addresses, and a
gateway killed under traffic.

One stack for the module; the test that kills a gateway comes last.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from figranium_devstack.balancer import HaproxyBalancer
from figranium_devstack.ports import free_port
from figranium_devstack.postgres import LocalPostgres
from figranium_devstack.service import Service
from tests.integration.stack import API_KEY, own_stack, wait_until
from tests.integration.test_stream import SseReader

pytestmark = pytest.mark.stack  # starts services of its own

LOCK_AFTER = 3


@dataclass
class Balanced:
    balancer: HaproxyBalancer
    gateways: list[Service]
    client: httpx.Client

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.balancer.port}"

    def sent(self) -> dict[str, int]:
        """Requests HAProxy has sent to each gateway so far (health checks not counted)."""
        return {name: int(row["stot"]) for name, row in self.balancer.server_stats().items()}

    def states(self) -> dict[str, str]:
        return {name: row["status"] for name, row in self.balancer.server_stats().items()}


@pytest.fixture(scope="module")
def balanced(
    tmp_path_factory: pytest.TempPathFactory, postgres: LocalPostgres
) -> Iterator[Balanced]:
    workdir = tmp_path_factory.mktemp("balanced")
    env = {
        "TRUST_FORWARDED_FOR": "true",
        "AUTH_SLOW_AFTER_FAILURES": "1000",
        "AUTH_LOCKOUT_AFTER_FAILURES": str(LOCK_AFTER),
    }
    with own_stack(workdir, postgres, **env) as stack:
        started = [stack.start_gateway() for _ in range(2)]
        ports = [int(str(client.base_url).rsplit(":", 1)[1]) for _, client in started]
        balancer = HaproxyBalancer(
            workdir / "balancer", free_port(), ports, env={"HOST": "127.0.0.1"}
        )
        with (
            balancer,
            httpx.Client(
                base_url=f"http://127.0.0.1:{balancer.port}",
                headers={"x-api-key": API_KEY},
                timeout=30,
            ) as client,
        ):
            balanced = Balanced(balancer, [service for service, _ in started], client)
            wait_until(lambda: set(balanced.states().values()) == {"UP"}, 20, "both gateways UP")
            yield balanced


def _from(address: str, base_url: str) -> httpx.Client:
    """A client whose connections come from ``address`` (any 127.x.y.z is this machine)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=base_url, transport=transport, timeout=30)


def test_requests_spread_over_both_gateways(balanced: Balanced) -> None:
    before = balanced.sent()
    for _ in range(10):
        assert balanced.client.get("/api/tasks").status_code == 200
    after = balanced.sent()
    spread = {name: after[name] - before[name] for name in after}
    assert sum(spread.values()) == 10
    assert all(count >= 3 for count in spread.values()), spread


def test_the_event_stream_passes_through_unbuffered(balanced: Balanced) -> None:
    reader = SseReader(balanced.url, headers={"x-api-key": API_KEY})
    try:
        assert reader.status == 200, reader.headers
        task_id = f"balanced-{uuid.uuid4().hex[:8]}"
        task = {"id": task_id, "name": "balanced", "url": "http://127.0.0.1:9/", "actions": []}
        assert balanced.client.post("/api/tasks", json=task).status_code == 200
        run = balanced.client.post(f"/api/tasks/{task_id}/api", json={"async": True})
        assert run.status_code == 202, run.text
        execution_id = run.json()["executionId"]
        # No runner: the one event is "queued", a few hundred bytes a buffer would hold.
        events = reader.until(
            lambda e: e.kind == "queued" and e.data["executionId"] == execution_id, timeout=10
        )
        assert events[-1].data["taskId"] == task_id
        assert not reader.ended.is_set()
    finally:
        reader.close()


def test_wrong_keys_lock_out_the_client_not_the_balancer(balanced: Balanced) -> None:
    forged = {"X-Forwarded-For": "198.51.100.7"}
    with _from("127.0.0.2", balanced.url) as attacker:
        answers: list[int] = []
        # Each gateway keeps its own count: wrong keys until both refuse with 429.
        while answers[-4:] != [429] * 4:
            assert len(answers) < 10 * LOCK_AFTER, answers
            wrong = {**forged, "x-api-key": "wrong-key-0123456789"}
            answers.append(attacker.get("/api/tasks", headers=wrong).status_code)
        assert set(answers) == {401, 429}, answers
        for _ in range(4):  # the right key does not help the locked-out address
            right = {**forged, "x-api-key": API_KEY}
            assert attacker.get("/api/tasks", headers=right).status_code == 429
    # Another client sending the same forged address, and the balancer's own address
    # (127.0.0.1, where every other request of this module comes from), are not locked out.
    with _from("127.0.0.3", balanced.url) as other:
        for _ in range(4):
            right = {**forged, "x-api-key": API_KEY}
            assert other.get("/api/tasks", headers=right).status_code == 200
    for _ in range(4):
        assert balanced.client.get("/api/tasks").status_code == 200


def test_a_killed_gateway_costs_no_request_and_leaves_rotation(balanced: Balanced) -> None:
    victim = balanced.gateways[1]
    victim.kill()
    answers: list[int] = []

    def marked_down() -> bool:
        for _ in range(5):
            answers.append(balanced.client.get("/api/tasks").status_code)
        return balanced.states()["gateway-2"] == "DOWN"

    wait_until(marked_down, 15, "HAProxy to mark the killed gateway DOWN")
    assert answers and set(answers) == {200}, answers
    assert balanced.states()["gateway-1"] == "UP"
    assert "gateways/gateway-2 is DOWN" in balanced.balancer.log_tail()
    before = balanced.sent()
    for _ in range(6):
        assert balanced.client.get("/api/tasks").status_code == 200
    assert balanced.sent()["gateway-2"] == before["gateway-2"]
