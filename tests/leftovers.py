"""Processes the suite started that outlive it: found, reported, then killed (Linux).

How they are found: the pytest process makes itself a child subreaper
(``PR_SET_CHILD_SUBREAPER``), so a descendant whose parent dies is re-parented to
pytest instead of to init, and every process the suite started, orphaned or not,
stays in pytest's process tree in ``/proc``. Chosen over tagging children with an
environment variable and scanning ``/proc/*/environ``: a tag is lost by any child
started with an environment of its own (``env=``), while ancestry is kept by the
kernel whatever a process does to its environment, session or process group; and a
tree rooted at this pytest never includes another suite running on the same machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from multiprocessing import resource_tracker
from pathlib import Path

__all__ = ["Leftover", "become_subreaper", "descendants", "kill", "outliving", "reap_adopted"]

_PR_SET_CHILD_SUBREAPER = 36
_PROC = Path("/proc")


@dataclass(frozen=True, order=True, slots=True)
class Leftover:
    """A live process in this process's tree."""

    pid: int
    ppid: int
    cmdline: str

    def __str__(self) -> str:
        return f"pid {self.pid} (parent {self.ppid}): {self.cmdline}"


def become_subreaper() -> bool:
    """Adopt the orphans among this process's descendants; False where that is not possible."""
    if sys.platform != "linux":
        return False
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state) of ``pid``, None once it is gone."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: the fields follow the last ")".
    state, ppid = raw[raw.rindex(")") + 2 :].split()[:2]
    return int(ppid), state


def _cmdline(pid: int) -> str:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace") or "?"


def _own_tracker() -> int | None:
    # This process's multiprocessing resource tracker (started by in-process ParserPool tests)
    # lives exactly as long as we do: it exits on EOF of its pipe when pytest exits.
    pid: int | None = getattr(resource_tracker._resource_tracker, "_pid", None)
    return pid


def descendants() -> list[Leftover]:
    """The live processes below this one (zombies are dead and not listed)."""
    children: dict[int, list[int]] = {}
    zombies: set[int] = set()
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
            if stat[1] == "Z":
                zombies.add(int(entry.name))
    tracker = _own_tracker()
    found: list[Leftover] = []
    parents = [os.getpid()]
    while parents:
        parent = parents.pop()
        for pid in children.get(parent, []):
            parents.append(pid)
            if pid not in zombies and pid != tracker:
                found.append(Leftover(pid=pid, ppid=parent, cmdline=_cmdline(pid)))
    return sorted(found)


def _reap(pids: Iterable[int]) -> None:
    """Collect those of ``pids`` that are our exited children."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def reap_adopted() -> None:
    """Collect every exited child: orphans adopted as subreaper have no Popen to wait for them.

    Only once nothing else waits for a child (the end of the session): it takes their exit status.
    """
    me = os.getpid()
    _reap(int(e.name) for e in _PROC.iterdir() if e.name.isdigit() and _stat(int(e.name)) == (me, "Z"))


def outliving(*, grace_s: float) -> list[Leftover]:
    """The descendants still running after up to ``grace_s`` seconds for them to exit."""
    deadline = time.monotonic() + grace_s
    while (left := descendants()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _gone(pid: int) -> bool:
    # A zombie of another parent is that parent's to collect (or ours, once that parent is killed too).
    stat = _stat(pid)
    return stat is None or (stat[1] == "Z" and stat[0] != os.getpid())


def kill(pids: Collection[int], *, timeout_s: float = 10.0) -> None:
    """SIGKILL ``pids`` and wait until they are gone (reaping those that are our children)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pids)
        if all(_gone(pid) for pid in pids):
            return
        time.sleep(0.05)
