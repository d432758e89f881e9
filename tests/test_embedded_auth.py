"""The embedded servers are not open to other local users (issue #15, finding 4).

``obdal up`` on embedded defaults: NATS, Redis/Valkey and SecantusDB each refuse a client
without the credentials kept in ``<data dir>/credentials.json`` (0600), accept one with
them, listen on 127.0.0.1 only (one port each: no monitoring port), show no password on
their command lines, and keep their data in 0700 directories. A SecantusDB store made
before authentication was required gets its user on the next start.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
from pathlib import Path

import httpx
import nats
import pytest
import redis
from nats.errors import Error as NatsError
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from obdal.servers import free_port, mongo_server
from obdal_common.redaction import redact_text
from tests.conftest import BIN, clean_env, start_process, wait_http, wait_service
from tests.test_stack_lifecycle import children

ADMIN = "embedded-auth-admin"
SERVERS = {"nats-server": "nats", "valkey-server": "redis", "redis-server": "redis", "secantusd-py": "mongo"}


def mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)


def listening(pid: int) -> set[tuple[str, int]]:
    """The TCP addresses ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            # /proc prints the address as 32-bit words in host (little-endian) order.
            raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8))
            found.add((socket.inet_ntop(family, raw), int(port, 16)))
    return found


def nats_refusal(url: str) -> str | None:
    """Why NATS refused a connection to ``url``; None if it accepted it."""

    async def attempt() -> str | None:
        try:
            nc = await nats.connect(servers=[url], allow_reconnect=False, connect_timeout=2)
        except NatsError as exc:
            return str(exc)
        await nc.close()
        return None

    return asyncio.run(attempt())


def test_obdal_up_servers_require_the_generated_credentials(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    env = clean_env(
        OBDAL_DATA_DIR=str(data_dir),
        OBDAL_GATEWAY_PORT=str(port),
        OBDAL_ADMIN_TOKEN=ADMIN,
        OBDAL_SERVICES="gateway,metering",  # enough to use NATS, Redis and MongoDB
    )
    process = start_process([str(BIN / "obdal"), "up"], env, tmp_path / "up.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/v1/status/live", process)
        admin = {"Authorization": f"Bearer {ADMIN}"}
        wait_service(url, "metering", headers=admin)  # it reports mongo, once it has said hello
        status = httpx.get(f"{url}/v1/status", headers=admin, timeout=10)
        deps = status.json()["dependencies"]
        assert all(deps[name]["ok"] for name in ("nats", "redis", "mongo")), status.text

        passwords: dict[str, str] = json.loads((data_dir / "credentials.json").read_text())
        assert set(passwords) == {"nats", "redis", "mongo"}
        assert mode(data_dir / "credentials.json") == "0o600"
        for config in ("nats.conf", "redis.conf"):
            assert mode(data_dir / config) == "0o600", config
        for directory in (data_dir, data_dir / "logs", data_dir / "nats", data_dir / "mongo"):
            assert mode(directory) == "0o700", directory
        for log in (data_dir / "logs").iterdir():
            assert mode(log) == "0o600", log

        servers: dict[str, tuple[int, str]] = {}
        for pid in children(process.proc.pid):
            command = Path(f"/proc/{pid}/cmdline").read_text()
            addresses = listening(pid)
            name = next(kind for binary, kind in SERVERS.items() if binary in command)
            assert not any(p in command for p in passwords.values()), (
                f"a password on the command line of {name}"
            )
            assert len(addresses) == 1, f"{command}: one port, on loopback, and nothing else: {addresses}"
            ((host, server_port),) = addresses
            assert host == "127.0.0.1", command
            servers[name] = (server_port, passwords[name])
        assert set(servers) == {"nats", "redis", "mongo"}

        nats_port, nats_password = servers["nats"]
        for refused_url in (f"nats://127.0.0.1:{nats_port}", f"nats://obdal:wrong@127.0.0.1:{nats_port}"):
            assert "Authorization Violation" in (nats_refusal(refused_url) or "accepted"), refused_url
        assert nats_refusal(f"nats://obdal:{nats_password}@127.0.0.1:{nats_port}") is None

        redis_port, redis_password = servers["redis"]
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=redis_port).get("obdal:key_last_used")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=redis_port, password="wrong").ping()
        assert redis.Redis(port=redis_port, password=redis_password).ping()

        mongo_port, mongo_password = servers["mongo"]
        anonymous: MongoClient[dict[str, object]] = MongoClient(
            port=mongo_port, serverSelectionTimeoutMS=3000
        )
        with anonymous, pytest.raises(OperationFailure) as refused:
            anonymous.obdal.usage.find_one()
        assert refused.value.code == 13  # Unauthorized
        authenticated: MongoClient[dict[str, object]] = MongoClient(
            f"mongodb://obdal:{mongo_password}@127.0.0.1:{mongo_port}/?authSource=admin"
        )
        with authenticated:
            assert "obdal" in authenticated.list_database_names(), "metering wrote through its credentials"

        leaks = [name for name, p in passwords.items() if p in process.log() or p in status.text]
        assert leaks == [], "a password in obdal up's output or in /v1/status"
    finally:
        assert process.stop() == 0, process.log()[-3000:]


def test_a_store_made_without_auth_gets_its_user_and_a_rotated_password(tmp_path: Path) -> None:
    store, port = tmp_path / "mongo", free_port()
    store.mkdir()
    # A store as `obdal up` left it before authentication was required, with an intruder's user.
    command = [
        str(BIN / "secantusd-py"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        str(store),
    ]
    legacy = subprocess.Popen([*command, "--log-level", "WARNING"])
    try:
        client: MongoClient[dict[str, object]] = MongoClient(port=port, serverSelectionTimeoutMS=30000)
        with client:
            client.obdal.usage.insert_one({"event_id": "evt_before_auth"})
            client.obdal.command("createUser", "intruder", pwd="intruder", roles=["readWrite"])
    finally:
        legacy.terminate()
        legacy.wait(30)

    server = mongo_server(tmp_path, port=port).start()
    try:
        with MongoClient(server.url) as client:
            assert client.obdal.usage.find_one({"event_id": "evt_before_auth"}) is not None
            users = {(u["db"], u["user"]) for u in client.admin["system.users"].find()}
            assert users == {("admin", "obdal")}, "users made while the store was open are dropped"
        with pytest.raises(OperationFailure), MongoClient(port=port) as anonymous:
            anonymous.obdal.usage.find_one()
    finally:
        server.stop()
    assert mode(tmp_path / "mongo") == "0o700"

    # Rotation: the entry deleted from credentials.json is generated anew at the next start.
    credentials = tmp_path / "credentials.json"
    old_url = server.url
    passwords = json.loads(credentials.read_text())
    del passwords["mongo"]
    credentials.write_text(json.dumps(passwords))
    server = mongo_server(tmp_path, port=port).start()
    try:
        assert server.url != old_url
        with MongoClient(server.url) as client:
            assert client.obdal.usage.find_one({"event_id": "evt_before_auth"}) is not None
        with pytest.raises(OperationFailure), MongoClient(old_url) as stale:
            stale.obdal.usage.find_one()
    finally:
        server.stop()
    assert mode(credentials) == "0o600"


def test_url_passwords_are_redacted_from_logs_and_spans() -> None:
    """What every log line and exported span goes through: the servers' URLs lose their passwords."""
    assert redact_text("cannot connect to NATS at nats://obdal:s3cret@127.0.0.1:4222: timed out") == (
        "cannot connect to NATS at nats://obdal:[REDACTED]@127.0.0.1:4222: timed out"
    )
    assert redact_text("redis://:s3cret@127.0.0.1:6379/0") == "redis://:[REDACTED]@127.0.0.1:6379/0"
    assert redact_text("nats://t0ken@nats:4222,nats://a:b@nats-2:4222") == (
        "nats://[REDACTED]@nats:4222,nats://a:[REDACTED]@nats-2:4222"
    )
    assert "s3cret" not in redact_text(
        "MongoDB is unreachable at mongodb://obdal:s3cret@mongo:27017/?authSource=admin"
    )
    assert redact_text("http://127.0.0.1:8080/v1/status from ops@example.com") == (
        "http://127.0.0.1:8080/v1/status from ops@example.com"
    )
