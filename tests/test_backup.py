"""``obdal backup`` while ``obdal up`` runs and answers, ``obdal restore`` into an empty data dir:
the restored stack gives the same answers, sessions, usage, keys, files and audit log."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from obdal.servers import free_port
from tests.api import Api, SseResponse, poll
from tests.conftest import BIN, clean_env, wait_service
from tests.test_stack_lifecycle import children, up, wait_gone

QUESTION = "How long do I have to return an order?"
RETURNS = (
    "# Returns\n\nOur refund window is 45 days from delivery.\n\n"
    "Refunds are paid to the original payment method within 5 business days.\n"
)
SHIPPING = "# Shipping\n\nParcels to Portugal arrive in 3 working days; express takes one day.\n"


def obdal(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(OBDAL_DATA_DIR=str(data_dir))
    return subprocess.run(
        [str(BIN / "obdal"), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def answer_of(response: SseResponse) -> tuple[str, list[tuple[str, str, str, float]]]:
    sources = response.one("sources")["sources"]
    cited = [(s["file_id"], s["filename"], s["snippet"], round(s["score"], 4)) for s in sources]
    return response.text(), cited


def state(api: Api, key: str, app_id: str, session_id: str, file_id: str) -> dict[str, Any]:
    """Everything the restore must bring back, as the API shows it."""
    keys = api.admin.get(f"/v1/admin/apps/{app_id}/keys").json()["keys"]
    return {
        "sessions": api.sessions(key, include_all="true"),
        "history": api.http.get(f"/v1/sessions/{session_id}", headers=api.auth(key)).json(),
        "usage": api.usage(key, group_by="day"),
        # Last-used times are in Redis, which no restart of the embedded stack keeps either.
        "keys": [{k: v for k, v in item.items() if k != "last_used_at"} for item in keys],
        "audit": api.admin.get("/v1/admin/audit", params={"app_id": app_id, "limit": "100"}).json(),
        "file": api.http.get(f"/v1/files/{file_id}", headers=api.auth(key)).json(),
    }


def test_backup_of_a_running_stack_restores_the_same_data(tmp_path: Path) -> None:
    first, second, backup_dir = tmp_path / "first", tmp_path / "second", tmp_path / "backup"
    process, url = up(first, free_port(), "first.log")
    servers = children(process.proc.pid)
    try:
        wait_service(url, "chat")
        token = (first / "admin_token").read_text().strip()
        api = Api(url, token)
        app_id = api.create_app("backup")
        created = api.create_key(app_id, name="backend")
        key, key_id = created["key"], created["key_id"]
        file_id = api.index(key, "returns.md", RETURNS)
        before = answer_of(api.chat_stream(key, QUESTION))
        assert "45 days" in before[0], before
        assert before[1], "the answer cites the file"
        session_id = api.chat_stream(key, "And how are refunds paid?").one("end")["session_id"]
        api.chat(key, "Within how many days?", session_id=session_id)
        renamed = api.admin.patch(f"/v1/admin/keys/{key_id}", json={"name": "backend server"})
        assert renamed.status_code == 200, renamed.text
        api.wait_usage(key, 3)
        api.wait_session(key, session_id, messages=4)
        expected = poll(
            lambda: state(api, key, app_id, session_id, file_id),
            lambda s: any(e.get("action") == "key.updated" for e in s["audit"]["events"]),
            what="the key change in the audit log",
        )

        # Another app keeps answering while the backup runs: whatever of it is in the backup, the
        # first app's data is complete and the restored stack starts.
        _, busy_key = api.new_tenant("busy")
        api.index(busy_key, "shipping.md", SHIPPING)
        stop, statuses = threading.Event(), list[int]()

        def chatter() -> None:
            busy = Api(url, token)
            while not stop.is_set():  # paced under the key's default rate limit
                statuses.append(busy.chat_stream(busy_key, "How long does shipping take?").status)
                stop.wait(0.2)

        talking = threading.Thread(target=chatter)
        talking.start()
        try:
            started = time.monotonic()
            made = obdal(first, "backup", str(backup_dir))
            backup_s = time.monotonic() - started
        finally:
            stop.set()
            talking.join(30)
        assert statuses, "answers were asked for while the backup ran"
        assert set(statuses) == {200}, statuses
        assert made.returncode == 0, made.stderr
        manifest = json.loads((backup_dir / "manifest.json").read_text())
        assert manifest["schema_version"] == 1
        assert manifest["contents"]["index"] == {"copied": False, "ready_files_to_reindex": 2}
        assert manifest["contents"]["nats_streams"]["KV_obdal_keys"]["messages"] >= 2
        assert "KV_obdal_console_sessions" not in manifest["contents"]["nats_streams"]
        assert set(manifest["files"]) >= {"admin_token", "nats/OBJ_obdal_file_bytes.msgs"}
    finally:
        assert process.stop(signal.SIGINT) == 0, process.log()[-3000:]
    assert wait_gone(servers) == set()

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "something").write_text("x")
    refused = obdal(occupied, "restore", str(backup_dir))
    assert refused.returncode == 2, refused.stderr
    assert "is not empty" in refused.stderr

    corrupt = tmp_path / "corrupt"
    shutil.copytree(backup_dir, corrupt)
    with (corrupt / "nats" / "KV_obdal_keys.msgs").open("r+b") as handle:
        handle.seek(10)
        handle.write(b"\xff\xfe")
    refused = obdal(tmp_path / "never", "restore", str(corrupt))
    assert refused.returncode == 2, refused.stderr
    assert "is corrupt" in refused.stderr
    assert "nats/KV_obdal_keys.msgs" in refused.stderr
    assert not (tmp_path / "never").exists(), "nothing is written from a corrupt backup"

    started = time.monotonic()
    restored = obdal(second, "restore", str(backup_dir))
    restore_s = time.monotonic() - started
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["files_reindexed"] == 2
    print(f"backup {backup_s:.1f} s, restore {restore_s:.1f} s")  # the figures docs/operations.md quotes

    process, url = up(second, free_port(), "second.log")
    try:
        wait_service(url, "chat")
        api = Api(url, token)  # the admin token came back too
        # Metering takes the events it had not acknowledged again (idempotently): wait for it.
        poll(lambda: state(api, key, app_id, session_id, file_id), lambda s: s == expected, timeout=20)
        assert answer_of(api.chat_stream(key, QUESTION)) == before, "the same passages answer"
    finally:
        assert process.stop(signal.SIGINT) == 0, process.log()[-3000:]
