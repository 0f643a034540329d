"""The Chromiums a runner launches run at a lower CPU priority than the runner itself."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from figranium_runner.browser import BrowserHost
from figranium_runner.priority import browser_sessions, lower_browser_priority, session_leaders

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def _stat(proc: Path, pid: int, comm: str, ppid: int, session: int) -> None:
    (proc / str(pid)).mkdir()
    (proc / str(pid) / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {session} 0 -1 0\n")


def test_browser_sessions_are_the_sessions_started_below_the_root(tmp_path: Path) -> None:
    proc = tmp_path
    _stat(proc, 1, "init", 0, 1)
    _stat(proc, 10, "python", 1, 1)  # the runner
    _stat(proc, 11, "node", 10, 1)  # Playwright's driver, in the runner's session
    _stat(proc, 12, "chrome (headless) x", 11, 12)  # a browser, detached
    _stat(proc, 13, "chrome_zygote", 12, 12)
    _stat(proc, 14, "chrome_renderer", 13, 12)
    _stat(proc, 20, "other", 1, 20)  # someone else's session
    (proc / "self").mkdir()  # not a process
    sessions = browser_sessions(10, proc)
    assert {leader: sorted(members) for leader, members in sessions.items()} == {12: [12, 13, 14]}
    assert browser_sessions(20, proc) == {}


@pytest.fixture
def detached_tree() -> Iterator[tuple[int, int, set[int]]]:
    """A child in this session whose own child leads a new session with one more process:
    the shape of Playwright's driver and a browser it launched. Yields the child, the new
    session's leader, and the sessions that were there before (other tests' browsers).

    Each process says its child's pid once that child exists, so the whole tree is there
    when the child's line is read: nothing waits for it by polling."""
    before = session_leaders()
    leader_script = (
        "import subprocess, time\n"
        "member = subprocess.Popen(['sleep', '60'])\n"
        "print(member.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    script = (
        "import subprocess, sys, time\n"
        f"leader = subprocess.Popen([sys.executable, '-c', {leader_script!r}],"
        " start_new_session=True, stdout=subprocess.PIPE, text=True)\n"
        "member = int(leader.stdout.readline())\n"
        "print(leader.pid, member, flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    leader, member = (int(pid) for pid in child.stdout.readline().split())
    try:
        yield child.pid, leader, before
    finally:
        for pid in (member, leader):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        child.kill()
        child.wait()
        child.stdout.close()


def test_the_new_detached_session_is_lowered_and_nothing_else(
    detached_tree: tuple[int, int, set[int]],
) -> None:
    child, leader, before = detached_tree
    members = browser_sessions(os.getpid())[leader]
    # Only these two: the sessions there before (other tests' browsers) are left alone.
    assert lower_browser_priority(7, skip=before) == len(members) == 2
    assert all(_thread_nices(pid) == {7} for pid in members)
    assert _thread_nices(child) == {0}  # the driver's place: left alone
    assert os.getpriority(os.PRIO_PROCESS, os.getpid()) == 0
    if autogroup_nice(leader) is not None:
        assert autogroup_nice(leader) == 7
    assert lower_browser_priority(5, skip=before) == 0  # only ever lowers
    assert lower_browser_priority(0) == 0


def autogroup_nice(pid: int) -> int | None:
    """The nice value of ``pid``'s autogroup, or None where the kernel applies none."""
    if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() != "1":
        return None
    text = Path(f"/proc/{pid}/autogroup").read_text()  # "/autogroup-42 nice 10"
    return int(text.split()[-1])


def _cmdline(pid: int) -> str:
    """The process's command line; empty once it has exited (Chromium starts and ends
    short-lived helpers while the test lists its session)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def _thread_nices(pid: int) -> set[int]:
    """The nice values of the process's threads that are still there when read: a thread,
    or the whole process, may end between the listing and the reading."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return set()
    nices: set[int] = set()
    for task in tasks:
        with contextlib.suppress(OSError):
            nices.add(os.getpriority(os.PRIO_PROCESS, int(task.name)))
    return nices


@pytest.mark.asyncio
async def test_a_launched_chromium_and_the_renderers_it_starts_later_are_lowered() -> None:
    before = session_leaders()  # other tests' browsers, if any
    browser = BrowserHost(None, nice=9)
    await browser.start()
    try:
        sessions = {
            leader: members
            for leader, members in browser_sessions(os.getpid()).items()
            if leader not in before
        }
        assert len(sessions) == 1, "not one new Chromium session below this process"
        leader = next(iter(sessions))
        # The browser and the zygotes that start the renderers.
        zygotes = [pid for pid in sessions[leader] if "--type=zygote" in _cmdline(pid)]
        assert len(zygotes) >= 1
        for pid in [leader, *zygotes]:
            assert _thread_nices(pid) == {9}
        context = await browser.new_context()
        page = await context.new_page()  # a renderer started after the launch
        await page.set_content("<p>hi</p>")
        after = browser_sessions(os.getpid())
        assert set(after) - before == {leader}  # the renderer is in the lowered session
        renderers = [pid for pid in after[leader] if "--type=renderer" in _cmdline(pid)]
        assert renderers
        # The session's own value ranks Chromium against other sessions when autogroups
        # are on, whatever Chromium does with its threads' values (as root it raises some).
        assert autogroup_nice(leader) in (None, 9)
        if autogroup_nice(leader) is None:
            assert all(nice >= 9 for pid in renderers for nice in _thread_nices(pid))
        await context.close()
    finally:
        await browser.close()
    assert os.getpriority(os.PRIO_PROCESS, os.getpid()) == 0
