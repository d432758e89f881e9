"""Child processes that die with whatever started them, even a SIGKILLed parent.

Used for the embedded servers (``obdal.servers``), the ingest worker's parser child and the
processes tests start. Linux's ``PR_SET_PDEATHSIG`` does it, with one gap: a parent that
dies between the child's start and its ``prctl`` sends no signal. A spawned parser child
re-imports the worker's modules first (seconds), and one was found orphaned, waiting for
work forever, after a fault test killed its worker in that window. So the child also
checks that its parent is still the one that started it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1
# The C library's symbols (CDLL(None): this process's own, glibc or musl), resolved once, at import:
# a dlopen between fork and exec can deadlock on a lock another thread held at the fork.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def die_with_parent(parent: int) -> None:
    """Have this process SIGKILLed when ``parent``, the pid that started it, dies (Linux; else nothing).

    Call it in the child: as ``preexec_fn`` (``functools.partial(die_with_parent, os.getpid())``),
    as a process pool's initializer, or first thing in its own code. The kernel signals when the
    thread that started the child ends, so start children from a thread that lives as long as
    its process (the main one, or the event loop's).
    """
    if _LIBC is None:
        return
    # SIGKILL, not SIGTERM: SecantusDB was seen ignoring a SIGTERM that arrived this way,
    # and JetStream and WiredTiger both recover from a hard stop. Normal stops are the owner's.
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the prctl, so no signal will come: already orphaned
        os._exit(1)
