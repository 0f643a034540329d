import re
import subprocess
from pathlib import Path

import pytest

from figranium_common.config import Config
from figranium_devstack.balancer import HaproxyBalancer
from figranium_gateway.routes.stream import HEARTBEAT_SECONDS


def sections(config: str) -> dict[str, list[str]]:
    """The configuration's sections (``global``, ``defaults``, ``backend gateways``...), each
    as its stripped lines."""
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in config.splitlines():
        if line and not line[0].isspace():
            current = found.setdefault(line.strip(), [])
        elif line.strip():
            current.append(line.strip())
    return found


def seconds(lines: list[str], name: str) -> float:
    (value,) = [line.split()[2] for line in lines if line.startswith(f"timeout {name} ")]
    match = re.fullmatch(r"(\d+)(ms|s|m)", value)
    assert match, value
    return int(match[1]) * {"ms": 0.001, "s": 1, "m": 60}[match[2]]


def test_timeouts_outlast_a_synchronous_run_and_the_stream_heartbeat(tmp_path: Path) -> None:
    for run_timeout in (5, 60, 300, 1800):
        env = {"RUN_TIMEOUT_SECONDS": str(run_timeout)}
        defaults = sections(HaproxyBalancer(tmp_path, 1, [2], env=env).config())["defaults"]
        # The gateway answers a synchronous run at most min(15, timeout) after its timeout.
        sync_answer = run_timeout + min(15, run_timeout)
        for name in ("server", "client", "tunnel"):
            assert seconds(defaults, name) > sync_answer, (name, run_timeout)
            assert seconds(defaults, name) > 2 * HEARTBEAT_SECONDS
    default = Config.model_fields["run_timeout_seconds"].default
    unset = sections(HaproxyBalancer(tmp_path, 1, [2], env={}).config())["defaults"]
    assert seconds(unset, "server") > default + 15


def test_gateways_are_health_checked_and_retried(tmp_path: Path) -> None:
    config = sections(HaproxyBalancer(tmp_path, 11345, [5001, 5002, 5003], env={}).config())
    backend = config["backend gateways"]
    assert "option httpchk GET /api/health" in backend
    assert "http-check expect status 200" in backend
    (default_server,) = [line for line in backend if line.startswith("default-server ")]
    words = default_server.split()
    assert "check" in words
    setting = dict(zip(words[2::2], words[3::2], strict=False))
    # A dead gateway fails two checks a second apart: out of rotation within about 2 s.
    assert setting == {"inter": "1s", "fall": "2", "rise": "1"}
    assert [line for line in backend if line.startswith("server ")] == [
        "server gateway-1 127.0.0.1:5001",
        "server gateway-2 127.0.0.1:5002",
        "server gateway-3 127.0.0.1:5003",
    ]
    assert "balance leastconn" in backend
    defaults = config["defaults"]
    assert "retries 2" in defaults and "option redispatch 1" in defaults
    assert "mode http" in defaults
    # A health check waits longer than the gateway's own database probe.
    probe = Config.model_fields["health_db_timeout_seconds"].default
    assert seconds(defaults, "check") > probe
    lines = [line for section in config.values() for line in section]
    assert not [line for line in lines if "compression" in line or "cache" in line]


def test_listens_where_a_gateway_would(tmp_path: Path) -> None:
    def bind(env: dict[str, str]) -> str:
        frontend = sections(HaproxyBalancer(tmp_path, 11345, [5001], env=env).config())
        (line,) = [line for line in frontend["frontend figranium"] if line.startswith("bind ")]
        return line

    assert bind({}) == f"bind {Config.model_fields['host'].default}:11345"
    assert bind({"HOST": "127.0.0.1"}) == "bind 127.0.0.1:11345"
    assert bind({"HOST": "::1"}) == "bind ipv6@::1:11345"


def test_the_client_address_is_the_last_forwarded_entry(tmp_path: Path) -> None:
    frontend = sections(HaproxyBalancer(tmp_path, 1, [2], env={}).config())["frontend figranium"]
    rules = [line for line in frontend if "X-Forwarded-For" in line]
    assert rules == [
        'http-request set-header X-Forwarded-For "%[req.fhdr(X-Forwarded-For)], %[src]"'
        " if { req.fhdr(X-Forwarded-For) -m found }",
        "http-request set-header X-Forwarded-For %[src]"
        " unless { req.fhdr(X-Forwarded-For) -m found }",
    ]
    # option forwardfor would add a second header line, and a gateway reads the first.
    assert "option forwardfor" not in frontend


def test_haproxy_accepts_the_configuration(tmp_path: Path) -> None:
    for host in ("0.0.0.0", "127.0.0.1", "::1"):
        proxy = HaproxyBalancer(tmp_path / host, 11345, [5001, 5002], env={"HOST": host})
        proxy.prepare()
        assert proxy.config_file.read_text() == proxy.config()
        checked = subprocess.run(
            [proxy.binary(), "-c", "-f", str(proxy.config_file)], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        argv = proxy.command()
        assert argv[1:] == ["-db", "-f", str(proxy.config_file)]


def test_a_deep_data_folder_keeps_the_socket_path_short(tmp_path: Path) -> None:
    """HAProxy refuses a stats socket path over 97 characters: a deep data folder (a
    test's temporary folder, say) gets a private short one, and the file still checks."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    proxy = HaproxyBalancer(deep, 11345, [5001, 5002])
    proxy.prepare()
    assert len(str(proxy.stats_socket)) <= 97
    assert proxy.stats_socket.parent.stat().st_mode & 0o777 == 0o700
    checked = subprocess.run(
        [proxy.binary(), "-c", "-f", str(proxy.config_file)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    near = HaproxyBalancer(tmp_path / "near", 11345, [5001])
    assert near.stats_socket == tmp_path / "near" / "haproxy.sock"


def test_a_missing_haproxy_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda *_, **__: None)
    with pytest.raises(RuntimeError, match="run `make install`"):
        HaproxyBalancer.binary()


def test_at_least_one_gateway(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one gateway"):
        HaproxyBalancer(tmp_path, 1, [])
