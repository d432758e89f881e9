"""``obdal up`` on embedded defaults: starts its own servers, persists data, leaves no orphans."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from obdal.servers import free_port
from tests.api import Api
from tests.conftest import BIN, Process, clean_env, start_process, wait_http


def children(pid: int) -> set[int]:
    """Direct children of ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, FileNotFoundError):
        return False
    return status != "Z"


def wait_gone(pids: set[int], timeout: float = 15) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return {p for p in pids if alive(p)}


def up(data_dir: Path, port: int, log_name: str) -> tuple[Process, str]:
    env = clean_env(OBDAL_DATA_DIR=str(data_dir), OBDAL_GATEWAY_PORT=str(port))
    process = start_process([str(BIN / "obdal"), "up"], env, data_dir.parent / log_name)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/v1/status", process)
    return process, url


def test_embedded_stack_persists_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    process, url = up(data_dir, port, "first.log")
    servers = children(process.proc.pid)
    try:
        token = (data_dir / "admin_token").read_text().strip()
        assert token in process.log(), "the generated admin token is printed"
        assert oct((data_dir / "admin_token").stat().st_mode)[-3:] == "600"
        assert len(servers) == 3, "nats-server, redis/valkey and secantusdb run as children"
        api = Api(url, token)
        _, key = api.new_tenant("persist")
        file_id = api.index(key, "hours.md", "The Lisbon office opens at 08:30 on weekdays.")
        assert "08:30" in api.chat(key, "When does the Lisbon office open?").json()["content"]
        api.wait_usage(key, 1)
    finally:
        assert process.stop(signal.SIGINT) == 0, process.log()[-3000:]
    assert wait_gone(servers) == set(), "no server outlives obdal up"

    process, url = up(data_dir, port, "second.log")
    try:
        api = Api(url, token)  # the same token still works: it was persisted
        assert api.http.get(f"/v1/files/{file_id}", headers=api.auth(key)).json()["status"] == "ready"
        assert "08:30" in api.chat(key, "When does the Lisbon office open?").json()["content"]
        assert api.wait_usage(key, 2)["total_requests"] == 2
    finally:
        assert process.stop(signal.SIGTERM) == 0, process.log()[-3000:]


def test_servers_die_with_a_killed_parent(tmp_path: Path) -> None:
    process, _ = up(tmp_path / "data", free_port(), "killed.log")
    servers = children(process.proc.pid)
    try:
        assert len(servers) == 3
    finally:
        process.proc.kill()
        process.proc.wait()
    assert wait_gone(servers) == set(), "children must not be orphaned by a SIGKILLed parent"


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        env = clean_env(OBDAL_DATA_DIR=str(tmp_path / "data"), OBDAL_GATEWAY_PORT=str(port))
        process = start_process([str(BIN / "obdal"), "up"], env, tmp_path / "busy.log")
        assert process.proc.wait(120) == 1
    assert "cannot listen" in process.log()
