"""The end-of-session leftover check (tests/leftovers.py) finds an orphaned grandchild, and kills it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import leftovers

# The child starts a grandchild (its output not tied to ours) and exits at once: an orphan.
ORPHANING = """
import subprocess, sys
sleeping = [sys.executable, "-c", "import time; time.sleep(300)"]
print(subprocess.Popen(sleeping, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the check needs Linux (prctl, /proc)")
def test_an_orphaned_grandchild_is_found_then_killed() -> None:
    started = subprocess.run(
        [sys.executable, "-c", ORPHANING], capture_output=True, text=True, check=True, timeout=60
    )
    orphan = int(started.stdout)
    try:
        found = {process.pid: process for process in leftovers.outliving(grace_s=0.5)}
        assert orphan in found, "an orphan of the suite must be found"
        assert found[orphan].ppid == os.getpid(), "re-parented to pytest, the subreaper, not to init"
        assert "time.sleep(300)" in found[orphan].cmdline
    finally:
        leftovers.kill([orphan])
    assert orphan not in {process.pid for process in leftovers.descendants()}
    assert not Path(f"/proc/{orphan}").exists(), "killed and reaped, not left a zombie"


# A child whose parent died before it asked to die with it would never be signalled: it must exit.
STARTS = {
    "parser child": "from obdal_ingest.parser_pool import _prepare_child; _prepare_child(2**34, {parent})",
    "server": "from obdal_common.processes import die_with_parent; die_with_parent({parent})",
}


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("start", STARTS.values(), ids=STARTS.keys())
@pytest.mark.parametrize("orphaned", [False, True], ids=["parent alive", "parent gone"])
def test_a_child_started_after_its_parent_died_exits(start: str, orphaned: bool) -> None:
    # Its parent is this pytest; naming another pid is what a child sees once re-parented.
    code = start.format(parent=1 if orphaned else os.getpid()) + "; print('running')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == ((1, "") if orphaned else (0, "running")), done.stderr
