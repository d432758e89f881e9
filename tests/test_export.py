""" "No lock-in, ever" (docs/export.md): ``GET /v1/export`` gives the whole app as one archive of
open formats, never a secret, never an erased session; ``obdal apps export`` saves it and
``obdal apps import`` recreates the app from it (documents re-indexed from their original
bytes), answering the same questions the same way, with the same sessions and usage."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.api import Api
from tests.conftest import BIN, Stack, clean_env

DOCUMENT = (
    "The Aurora kettle boils one litre in ninety seconds. Its warranty lasts three years "
    "and covers the heating element. Descale it monthly with citric acid."
)


def _members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        names = tar.getnames()
        assert names[-1] == "manifest.json", "the manifest comes last: without it an archive was cut"
        members = {}
        for member in tar.getmembers():
            extracted = tar.extractfile(member)
            assert extracted is not None
            members[member.name] = extracted.read()
    return members


def _rows(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines()]


def _cli(stack: Stack, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = clean_env(OBDAL_URL=stack.url, OBDAL_ADMIN_TOKEN=stack.admin_token)
    return subprocess.run(
        [str(BIN / "obdal"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def _app_with_history(api: Api) -> tuple[str, dict[str, Any], str]:
    """An app with settings, keys, a document, a curated answer, two sessions and an erased
    one: (app id, its secret key, the erased session's id)."""
    app_id = api.create_app("Kettles")
    secret = api.create_key(app_id, name="backend")
    api.create_key(app_id, name="site", kind="publishable", allowed_origins=["https://kettles.example"])
    revoked = api.create_key(app_id, name="old")
    assert api.admin.delete(f"/v1/admin/keys/{revoked['key_id']}").status_code == 200
    chat = {"system_prompt": "You answer for Kettles Ltd.", "temperature": 0.1, "max_tokens": 300}
    assert api.admin.put(f"/v1/admin/apps/{app_id}/chat", json=chat).status_code == 200
    widget = {"title": "Kettle help", "greeting": "Hi!", "color": "#225588"}
    assert api.admin.put(f"/v1/admin/apps/{app_id}/widget", json=widget).status_code == 200
    key = secret["key"]
    file_id = api.index(key, "aurora.txt", DOCUMENT)
    curated = api.http.post(
        "/v1/answers",
        headers=api.auth(key),
        json={"questions": ["Do you ship abroad?"], "answer": "Yes, to the EU.", "source_file_id": file_id},
    )
    assert curated.status_code == 201, curated.text
    kept = api.chat(key, "How long is the warranty?", user="ana").json()
    api.chat(key, "What does it cover?", session_id=kept["session_id"], user="ana")
    api.chat(key, "How fast does it boil?", user="ben")
    erased = api.chat(key, "My address is 5 Secret Lane, can you ship there?", user="cy").json()
    api.wait_usage(key, 4)
    api.wait_session(key, erased["session_id"], messages=2)
    assert api.http.delete(f"/v1/sessions/{erased['session_id']}", headers=api.auth(key)).status_code == 200
    return app_id, secret, erased["session_id"]


def test_the_export_holds_the_whole_app_and_no_secret_or_erased_session(api: Api) -> None:
    app_id, secret, erased = _app_with_history(api)
    response = api.http.get("/v1/export", headers=api.auth(secret["key"]), timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/gzip"
    assert f"obdal-export-{app_id}-" in response.headers["content-disposition"]
    members = _members(response.content)
    manifest = json.loads(members.pop("manifest.json"))

    # Open formats, each member checked by the manifest.
    assert manifest["format"] == "obdal-app-export"
    assert manifest["schema_version"] == 1
    assert set(manifest["members"]) == set(members)
    for name, data in members.items():
        assert manifest["members"][name] == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert manifest["counts"] == {
        "keys": 3,
        "sources": 0,
        "answers": 1,
        "files": 1,
        "sessions": 2,
        "usage": 4,
    }

    app = json.loads(members["app.json"])
    assert (app["name"], app["chat"]["system_prompt"], app["widget"]["title"]) == (
        "Kettles",
        "You answer for Kettles Ltd.",
        "Kettle help",
    )
    (file,) = _rows(members["files.ndjson"])
    assert members[file["path"]] == DOCUMENT.encode(), "the original bytes"
    assert file["sha256"] == hashlib.sha256(DOCUMENT.encode()).hexdigest()
    assert {k["name"] for k in _rows(members["keys.ndjson"])} == {"backend", "site", "old"}
    (answer,) = _rows(members["answers.ndjson"])
    assert answer["source_file_id"] == file["file_id"]

    sessions = [s for name in members if name.startswith("sessions/") for s in _rows(members[name])]
    assert sorted(s["user"] for s in sessions) == ["ana", "ben"]
    assert sum(len(s["messages"]) for s in sessions) == 6
    usage = [u for name in members if name.startswith("usage/") for u in _rows(members[name])]
    assert len(usage) == 4
    assert sum(u["session_id"] is None for u in usage) == 1

    # Never a secret, never the erased conversation.
    everything = b"".join(members.values())
    assert secret["key"].encode() not in everything
    assert b"secret_hash" not in everything
    assert erased.encode() not in everything
    assert b"Secret Lane" not in everything


def test_only_a_key_with_the_export_scope_may_export(api: Api) -> None:
    app_id = api.create_app("scoped")
    reader = api.create_key(app_id, scopes=["sessions:read", "files:read", "usage:read"])["key"]
    refused = api.http.get("/v1/export", headers=api.auth(reader))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "insufficient_scope"
    publishable = api.create_key(app_id, kind="publishable", allowed_origins=["https://a.example"])["key"]
    assert api.http.get("/v1/export", headers=api.auth(publishable)).status_code == 403
    assert api.http.get("/v1/export").status_code == 401
    assert api.http.get("/v1/admin/apps/app_nope/export", headers=api.admin.headers).status_code == 404


def test_an_app_exported_and_imported_answers_the_same_with_the_same_sessions_and_usage(
    api: Api, stack: Stack, tmp_path: Path
) -> None:
    app_id, secret, _ = _app_with_history(api)
    exported = _cli(stack, "apps", "export", app_id, "-o", "kettles.tar.gz", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert '"sessions": 2' in exported.stdout

    imported = _cli(stack, "apps", "import", "kettles.tar.gz", "--name", "Kettles again", cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    report = json.loads(imported.stdout)
    new_app = report["app_id"]
    assert new_app != app_id
    assert report["files"] == 1
    assert report["answers"] == 1
    assert report["history"] == {"turns": 3, "usage": 4}
    new_keys = {k["from_key_id"]: k["key"] for k in report["keys"]}
    assert len(new_keys) == 2, "live keys are made again, the revoked one is not"
    key = new_keys[secret["key_id"]]

    # The same sessions with the same messages, and the same usage.
    def history(k: str) -> list[tuple[str | None, list[tuple[str, str]]]]:
        found = sorted(api.sessions(k, include_all="true"), key=lambda s: s["session_id"])
        details = [api.http.get(f"/v1/sessions/{s['session_id']}", headers=api.auth(k)).json() for s in found]
        return [(d["user"], [(m["role"], m["content"]) for m in d["messages"]]) for d in details]

    deadline = time.monotonic() + 30
    while (imported_history := history(key)) != history(secret["key"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert imported_history == history(secret["key"])
    old_usage, new_usage = (api.usage(k) for k in (secret["key"], key))
    for field in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert new_usage[field] == old_usage[field], field

    # Settings, and the same answer to the same question from the re-indexed document.
    old_chat = api.admin.get(f"/v1/admin/apps/{app_id}/chat").json()
    assert api.admin.get(f"/v1/admin/apps/{new_app}/chat").json() == old_chat
    question = "How long is the warranty of the Aurora kettle?"
    before, after = (api.chat(k, question).json() for k in (secret["key"], key))
    assert after["content"] == before["content"]
    assert [s["filename"] for s in after["sources"]] == [s["filename"] for s in before["sources"]]
    curated = api.chat(key, "Do you ship abroad?").json()
    assert curated["content"] == "Yes, to the EU."

    # A damaged archive changes nothing.
    archive = (tmp_path / "kettles.tar.gz").read_bytes()
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        damaged = io.BytesIO()
        with tarfile.open(fileobj=damaged, mode="w:gz") as out:
            for member in tar.getmembers():
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                if member.name.startswith("files/"):
                    data = data.replace(b"three", b"ten")
                member.size = len(data)
                out.addfile(member, io.BytesIO(data))
    (tmp_path / "damaged.tar.gz").write_bytes(damaged.getvalue())
    apps_before = len(api.admin.get("/v1/admin/apps").json()["apps"])
    refused = _cli(stack, "apps", "import", "damaged.tar.gz", cwd=tmp_path)
    assert refused.returncode == 2
    assert "does not match its checksum" in refused.stderr
    assert len(api.admin.get("/v1/admin/apps").json()["apps"]) == apps_before
    assert httpx.get(f"{stack.url}/v1/status/live").status_code == 200
