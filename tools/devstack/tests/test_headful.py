"""`HEADFUL=true make run`: the headful runner's place in the stack, and its system tools."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from figranium_common.config import Config
from figranium_devstack.__main__ import (
    NOVNC_PORT,
    RUNNER_METRICS_PORT,
    _choose_ports,
    headful_note,
    headful_requested,
    stack_services,
)

REPO = Path(__file__).resolve().parents[3]
BASE_ENV = {
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5999/postgres",
    "NATS_URL": "nats://127.0.0.1:5998",
    "PORT": "11345",
    "LOG_FORMAT": "console",
}


def settings_of(env: dict[str, str]) -> Config:
    """What the process would read, ignoring this test's own environment."""
    return Config.model_validate(env)


def test_defaults_are_the_settings_defaults() -> None:
    fields = Config.model_fields
    assert fields["runner_metrics_port"].default == RUNNER_METRICS_PORT
    assert fields["novnc_port"].default == NOVNC_PORT


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("1", True), ("TRUE", True), ("", False), ("false", False), ("0", False)],
)
def test_headful_requested(value: str, expected: bool) -> None:
    assert headful_requested({"HEADFUL": value}) is expected
    assert headful_requested({}) is False


def test_without_headful_the_stack_is_unchanged() -> None:
    services = stack_services(BASE_ENV, headful=False)
    assert [(s.name, s.module) for s in services] == [
        ("gateway", "figranium_gateway"),
        ("runner", "figranium_runner"),
        ("scheduler", "figranium_scheduler"),
    ]
    for service in services:
        assert service.env == BASE_ENV


def test_headful_adds_one_headful_runner_beside_the_runner() -> None:
    services = {s.name: s for s in stack_services(BASE_ENV, headful=True)}
    assert list(services) == ["gateway", "runner", "scheduler", "runner-headful"]
    headful = services["runner-headful"]
    assert headful.module == "figranium_runner"
    config = settings_of(headful.env)
    assert config.runner_headful is True
    assert config.runner_concurrency == 1
    assert config.novnc_port == NOVNC_PORT
    assert config.nats_url == BASE_ENV["NATS_URL"]
    runner = settings_of(services["runner"].env)
    assert runner.runner_headful is False
    assert runner.runner_metrics_port == RUNNER_METRICS_PORT
    assert config.runner_metrics_port == RUNNER_METRICS_PORT + 1
    ops_ports = {
        settings_of(services["gateway"].env).gateway_metrics_port,
        settings_of(services["scheduler"].env).scheduler_metrics_port,
        runner.runner_metrics_port,
        config.runner_metrics_port,
    }
    assert len(ops_ports) == 4, "every process of the stack has an ops port of its own"
    for name in ("gateway", "scheduler"):
        assert services[name].env == BASE_ENV


def test_headful_runner_follows_the_environment() -> None:
    env = {**BASE_ENV, "NOVNC_PORT": "6080", "RUNNER_METRICS_PORT": "9500"}
    services = {s.name: s for s in stack_services(env, headful=True, novnc_port=40000)}
    headful = settings_of(services["runner-headful"].env)
    assert headful.novnc_port == 6080  # set by the user: kept, whatever was chosen
    assert headful.runner_metrics_port == 9501
    assert settings_of(services["runner"].env).runner_metrics_port == 9500

    chosen = {s.name: s for s in stack_services(BASE_ENV, headful=True, novnc_port=40000)}
    assert settings_of(chosen["runner-headful"].env).novnc_port == 40000

    off = {
        s.name: s for s in stack_services({**BASE_ENV, "RUNNER_METRICS_PORT": "0"}, headful=True)
    }
    assert settings_of(off["runner-headful"].env).runner_metrics_port == 0
    assert settings_of(off["runner"].env).runner_metrics_port == 0


def test_headful_runner_left_on_in_the_environment_stays_on_one_runner() -> None:
    env = {**BASE_ENV, "RUNNER_HEADFUL": "true"}
    services = {s.name: s for s in stack_services(env, headful=True)}
    assert settings_of(services["runner"].env).runner_headful is False
    assert settings_of(services["runner-headful"].env).runner_headful is True
    # Without HEADFUL the environment is the user's to decide.
    (runner,) = [s for s in stack_services(env, headful=False) if s.name == "runner"]
    assert runner.env["RUNNER_HEADFUL"] == "true"


def test_novnc_port_is_chosen_kept_and_moved_side_by_side(tmp_path: Path) -> None:
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    first = _choose_ports(first_dir, 11345, headful=True)
    assert set(first) == {"novnc", "postgres", "nats"}
    assert len({*first.values(), 11345}) == 4
    with socket.socket() as taken:
        # The first stack's viewer is up: the second stack must not pick the same port.
        taken.bind(("127.0.0.1", first["novnc"]))
        taken.listen()
        second = _choose_ports(second_dir, 11346, headful=True)
        assert second["novnc"] != first["novnc"]
        assert len({*second.values(), 11346}) == 4
    assert _choose_ports(first_dir, 11345, headful=True) == first
    # A run without the headful runner neither chooses nor forgets its port.
    plain = _choose_ports(first_dir, 11345)
    assert set(plain) == {"postgres", "nats"}
    assert _choose_ports(first_dir, 11345, headful=True)["novnc"] == first["novnc"]


def test_novnc_port_prefers_the_default(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", NOVNC_PORT))
        except OSError:
            pytest.skip(f"port {NOVNC_PORT} is in use on this machine")
    assert _choose_ports(tmp_path, 11345, headful=True)["novnc"] == NOVNC_PORT


def test_headful_note_says_how_to_get_a_viewer() -> None:
    note = headful_note(11346, "54312")
    assert "54312" in note
    assert 'curl -s -X POST -H "x-api-key: $KEY" http://localhost:11346/api/headful/ticket' in note
    assert '"url"' in note
    assert "free port" in headful_note(11345, "0")


# --- the Makefile and scripts/ensure-headful.sh ----------------------------------------


def make_dry_run(target: str, **env: str) -> str:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    environ = {k: v for k, v in os.environ.items() if k not in ("HEADFUL", "MAKEFLAGS")}
    return subprocess.run(
        [make, "--no-print-directory", "-n", target],
        cwd=REPO,
        env={**environ, **env},
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout


def test_make_installs_the_headful_tools_only_where_needed() -> None:
    assert "ensure-headful.sh" in make_dry_run("test")
    for target in ("install", "lint"):
        assert "ensure-headful.sh" not in make_dry_run(target), target
    # `make run` checks HEADFUL in its recipe, with the same values as the devstack.
    run = make_dry_run("run", HEADFUL="true")
    assert "ensure-headful.sh" in run
    case = next(line for line in run.splitlines() if "ensure-headful.sh" in line)
    for value, expected in (("true", True), ("1", True), ("True", True), ("", False), ("0", False)):
        shell = subprocess.run(
            ["bash", "-c", case.replace("bash scripts/ensure-headful.sh", "echo yes")],
            env={"HEADFUL": value, "PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
            check=True,
        )
        assert (shell.stdout.strip() == "yes") is expected, value
        assert headful_requested({"HEADFUL": value}) is expected, value


def _fake_bin(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def run_ensure_headful(
    tmp_path: Path, *, tools: bool, client: bool
) -> subprocess.CompletedProcess[str]:
    """The script as a user without root would run it, with or without the tools around."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_bin(bin_dir, "id", "echo 1000")  # not root: nothing is installed
    if tools:
        _fake_bin(bin_dir, "Xvfb", "exit 0")
        _fake_bin(bin_dir, "x11vnc", "exit 0")
    web_dir = tmp_path / "novnc"
    if client:
        web_dir.mkdir()
        (web_dir / "vnc.html").write_text("<html></html>")
    # Only the fakes on PATH (the script needs nothing else): the machine's own Xvfb, if
    # any, must not be found.
    bash = shutil.which("bash") or "/bin/bash"
    return subprocess.run(
        [bash, str(REPO / "scripts" / "ensure-headful.sh")],
        env={"PATH": str(bin_dir), "NOVNC_WEB_DIR": str(web_dir)},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_ensure_headful_is_quiet_and_quick_when_installed(tmp_path: Path) -> None:
    result = run_ensure_headful(tmp_path, tools=True, client=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("headful: using")


@pytest.mark.parametrize(("tools", "client"), [(False, True), (True, False)])
def test_ensure_headful_says_what_to_install(tmp_path: Path, tools: bool, client: bool) -> None:
    result = run_ensure_headful(tmp_path, tools=tools, client=client)
    assert result.returncode != 0
    assert "xvfb x11vnc novnc websockify" in result.stderr
