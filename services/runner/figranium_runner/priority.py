"""The CPU priority of the Chromiums a runner launches (Linux; elsewhere nothing is done).

Where a runner shares a machine with the gateway, PostgreSQL and NATS (``make run``, a
compose host, a small node), Chromium is the one that can keep every core busy: tearing
down a closed context, say, right when the run's result is being stored and answered.
Lowered, that browser work waits for the services' instead of the other way round; the
CPU the browsers get when nothing else wants it is unchanged.

Playwright starts each browser detached, in a session of its own. Where the kernel's
autogroups apply (``sched_autogroup_enabled``, for processes outside any CPU cgroup of
their own), the scheduler shares the CPU between sessions first, and a nice value counts
only within its session: the session's own nice value (``/proc/<pid>/autogroup``) is what
ranks Chromium against the services. Both are set: the session's, and every thread's,
which is what counts without autogroups (inside a container, a systemd unit). The
renderers Chromium starts later come from processes lowered already and inherit it (with
the privilege to, as root, Chromium raises some of its threads again; the session's value
still holds them back against the other sessions).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection
from pathlib import Path

PROC = Path("/proc")


def _processes(proc: Path) -> dict[int, tuple[int, int]]:
    """Every process's parent and session id, from ``/proc/<pid>/stat``."""
    found: dict[int, tuple[int, int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        with contextlib.suppress(IndexError, ValueError):
            found[int(entry.name)] = (int(fields[1]), int(fields[3]))
    return found


def browser_sessions(root: int, proc: Path = PROC) -> dict[int, list[int]]:
    """The sessions started below ``root`` (Playwright's detached browsers), each leader
    with the processes in its session."""
    processes = _processes(proc)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in processes.items():
        children.setdefault(ppid, []).append(pid)
    below: list[int] = []
    waiting = list(children.get(root, []))
    while waiting:
        pid = waiting.pop()
        below.append(pid)
        waiting.extend(children.get(pid, []))
    leaders = {pid for pid in below if processes[pid][1] == pid}
    return {leader: [pid for pid in below if processes[pid][1] == leader] for leader in leaders}


def _autogroups_on(proc: Path) -> bool:
    try:
        return (proc / "sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


def session_leaders(root: int | None = None, proc: Path = PROC) -> set[int]:
    """The leaders of the sessions below ``root`` (this process) now."""
    return set(browser_sessions(root or os.getpid(), proc))


def lower_browser_priority(
    nice: int,
    root: int | None = None,
    proc: Path = PROC,
    *,
    skip: Collection[int] = (),
) -> int:
    """Give every session below ``root`` (this process) but those led by ``skip`` (the
    ones there before the browser was launched) the nice value ``nice``, where theirs is
    lower; how many processes were lowered. Only ever lowers: raising a priority back
    would need privileges, and a process a moment from exiting is skipped.

    A nice value belongs to a thread, and a child process inherits the one of the thread
    that started it (Chromium starts its helpers from threads of its own), so every thread
    of every process in the session is lowered.
    """
    if nice <= 0 or not proc.is_dir():
        return 0
    lowered = 0
    autogroups = _autogroups_on(proc)
    for leader, members in browser_sessions(root or os.getpid(), proc).items():
        if leader in skip:
            continue
        if autogroups:
            with contextlib.suppress(OSError):
                (proc / str(leader) / "autogroup").write_text(str(nice))
        for pid in members:
            # Every thread is tried: the count is of processes with any thread lowered.
            if [tid for tid in _threads(proc, pid) if _lower(tid, nice)]:
                lowered += 1
    return lowered


def _threads(proc: Path, pid: int) -> list[int]:
    try:
        return [int(task.name) for task in (proc / str(pid) / "task").iterdir()]
    except (OSError, ValueError):
        return []


def _lower(tid: int, nice: int) -> bool:
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) >= nice:
            return False
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:
        return False  # exited meanwhile
    return True
