"""`make run`'s cluster layout: sizes, ports, the NATS nodes' configuration, stack.json and
the supervisor's restarts."""

import io
import json
import sys
import threading
import time
from pathlib import Path

import pytest

from figranium_devstack.__main__ import _choose_ports
from figranium_devstack.cluster import Sizes, instances, nats_nodes
from figranium_devstack.natsserver import ROUTE
from figranium_devstack.stack_file import read_stack, write_stack
from figranium_devstack.supervisor import MAX_BACKOFF, Program, Supervisor, backoff

CLUSTER = Sizes(nats_nodes=3, gateways=2, runners=2, schedulers=2)


def test_sizes_come_from_the_environment_and_are_checked() -> None:
    assert Sizes.from_environ({}) == Sizes()
    assert not Sizes().cluster and Sizes().names("gateway") == ["gateway"]
    sizes = Sizes.from_environ({"NATS_NODES": "3", "GATEWAYS": "2"})
    assert sizes == Sizes(nats_nodes=3, gateways=2) and sizes.cluster
    assert sizes.names("runner") == ["runner-1"]
    for bad in ({"NATS_NODES": "2"}, {"GATEWAYS": "0"}, {"RUNNERS": "many"}):
        with pytest.raises(SystemExit):
            Sizes.from_environ(bad)


def test_cluster_ports_are_distinct_and_kept_between_runs(tmp_path: Path) -> None:
    assert Sizes().port_names() == []
    names = CLUSTER.port_names()
    assert {"nats-2", "nats-3", "nats-route-1", "gateway-2", "runner-2-metrics"} <= set(names)
    first = _choose_ports(tmp_path, 11345, extra=names)
    assert len(set(first.values()) | {11345}) == len(first) + 1
    assert _choose_ports(tmp_path, 11345, extra=names) == first


def test_nats_nodes_route_to_each_other_as_the_route_user(tmp_path: Path) -> None:
    ports = _choose_ports(tmp_path, 11345, extra=CLUSTER.port_names())
    nodes = nats_nodes(tmp_path, CLUSTER, ports)
    assert [node.port for node in nodes] == [ports["nats"], ports["nats-2"], ports["nats-3"]]
    assert len({node.store_dir for node in nodes}) == 3
    assert len({node.users_file for node in nodes}) == 1
    password = nodes[0].password_for(ROUTE)
    assert all(node.passwords == nodes[0].passwords for node in nodes)
    config = nodes[1].config()
    assert 'server_name: "nats-2"' in config
    assert f"listen: 127.0.0.1:{ports['nats-route-2']}" in config
    assert f"authorization {{user: {ROUTE}, password: {json.dumps(password)}}}" in config
    for peer in (1, 3):
        route = f"nats-route://{ROUTE}:{password}@127.0.0.1:{ports[f'nats-route-{peer}']}"
        assert json.dumps(route) in config
    assert f'127.0.0.1:{ports["nats-route-2"]}"' not in config  # no route to itself
    (single,) = nats_nodes(tmp_path / "one", Sizes(), {"nats": 4222})
    assert "cluster" not in single.config() and ROUTE not in single.passwords


def test_each_instance_has_its_own_ports_and_gateways_trust_the_balancer(
    tmp_path: Path,
) -> None:
    ports = _choose_ports(tmp_path, 11345, extra=CLUSTER.port_names())
    made = instances(CLUSTER, ports, {"SCHEDULER_METRICS_PORT": "0"}, 11345)
    by_name = {instance.name: instance for instance in made}
    assert sorted(by_name) == [
        "gateway-1", "gateway-2", "runner-1", "runner-2", "scheduler-1", "scheduler-2"
    ]  # fmt: skip
    gateway = by_name["gateway-2"]
    assert gateway.env["PORT"] == str(ports["gateway-2"]) == str(gateway.port)
    assert gateway.env["TRUST_FORWARDED_FOR"] == "true"
    assert by_name["runner-1"].port != by_name["runner-2"].port
    assert by_name["runner-1"].env["RUNNER_METRICS_PORT"] == str(ports["runner-1-metrics"])
    assert "SCHEDULER_METRICS_PORT" not in by_name["scheduler-1"].env  # off stays off
    assert by_name["scheduler-1"].port is None

    plain = instances(Sizes(), {}, {}, 11345)
    assert [(i.name, i.env, i.port) for i in plain] == [
        ("gateway", {}, 11345), ("runner", {}, 9466), ("scheduler", {}, 9464)
    ]  # fmt: skip


def test_stack_file_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "stack.json"
    write_stack(path, [{"role": "nats", "name": "nats-1", "pid": 1, "port": 4222}])
    write_stack(path, [{"role": "gateway", "name": "gateway", "pid": 2, "port": 11345}])
    assert read_stack(path) == [{"role": "gateway", "name": "gateway", "pid": 2, "port": 11345}]
    assert [p.name for p in tmp_path.iterdir()] == ["stack.json"]


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert backoff(50) == MAX_BACKOFF


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


FOREVER = _python("import time\nwhile True: time.sleep(1)")
# Up long enough to be seen in stack.json, then fails.
BRIEF = "import time; time.sleep(0.3); raise SystemExit(1)"


def test_without_restarts_the_first_exit_stops_the_stack(tmp_path: Path) -> None:
    out = io.StringIO()
    programs = [
        Program("gateway", "gateway", FOREVER, {}, 1),
        Program("runner", "runner", _python("print('bye'); raise SystemExit(3)"), {}, 2),
    ]
    assert Supervisor(programs, tmp_path / "stack.json", restart=False, out=out).run() == 3
    text = out.getvalue()
    assert "runner  | bye" in text and "runner stopped (rc=3)" in text
    assert "gateway stopped (rc=" in text and "restarts" not in text
    assert not (tmp_path / "stack.json").exists()


def test_a_process_that_exits_is_restarted_and_stack_json_follows(tmp_path: Path) -> None:
    stack_file = tmp_path / "stack.json"
    programs = [
        Program("gateway", "gateway-1", FOREVER, {}, 11346),
        Program("runner", "runner-1", _python(BRIEF), {}, 9466),
    ]
    supervisor = Supervisor(programs, stack_file, restart=True, out=io.StringIO())
    seen: dict[str, set[int]] = {"gateway-1": set(), "runner-1": set()}

    def watch() -> None:
        deadline = time.monotonic() + 30
        while len(seen["runner-1"]) < 2 and time.monotonic() < deadline:
            try:
                for entry in read_stack(stack_file):
                    seen[entry["name"]].add(entry["pid"])
            except FileNotFoundError:
                pass
            time.sleep(0.01)
        supervisor.stop()

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert supervisor.run() == 0
    watcher.join()
    assert len(seen["runner-1"]) >= 2, "the runner was not restarted under a new pid"
    assert len(seen["gateway-1"]) == 1, "the gateway kept running"
