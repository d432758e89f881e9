"""``obdal apps export APP`` and ``obdal apps import ARCHIVE`` (docs/export.md).

Export saves ``GET /v1/admin/apps/{id}/export`` (the archive ``GET /v1/export`` gives an app's
key) to a file as it streams. Import checks the archive (``manifest.json``, its schema version,
the SHA-256 of every member) before it changes anything, then recreates the app on the Obdal
at ``--url`` through its API: the app and its settings, its keys (new secrets, printed once:
secrets are never exported), its documents re-uploaded from their original bytes (so they are
re-indexed by that Obdal's embedder), its curated answers (pointing at the new files), and its
website sources (synced again from the site), and its sessions and usage records
(``POST /v1/admin/apps/{id}/import/history``, stored by metering as it stores any).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from obdal.files_cli import api_error

__all__ = ["add_archive_commands"]

_FORMAT = "obdal-app-export"
_SCHEMA_VERSIONS = (1,)
_IMPORT_KEY_SCOPES = ["files:read", "files:write"]
_CHAT_FIELDS = (
    "model",
    "system_prompt",
    "temperature",
    "max_tokens",
    "input_cost_per_mtok",
    "output_cost_per_mtok",
)
_KEY_FIELDS = ("name", "kind", "scopes", "allowed_origins", "rate_limit_rpm", "token_budget", "expires_at")
_SOURCE_FIELDS = ("url", "mode", "max_pages", "max_depth", "include", "exclude", "resync")


def _fail(message: str) -> SystemExit:
    sys.stderr.write(f"obdal: {message}\n")
    return SystemExit(2)


@dataclass
class Archive:
    """An export, read and checked: every member's bytes by name, and the manifest."""

    manifest: dict[str, Any]
    members: dict[str, bytes] = field(repr=False)

    @classmethod
    def read(cls, path: Path) -> Archive:
        try:
            with tarfile.open(path, mode="r:gz") as tar:
                members = {
                    m.name: extracted.read()
                    for m in tar.getmembers()
                    if m.isfile() and (extracted := tar.extractfile(m)) is not None
                }
        except (OSError, tarfile.TarError, EOFError) as exc:
            raise _fail(f"{path} is not a readable .tar.gz archive: {exc}") from None
        if "manifest.json" not in members:
            raise _fail(f"{path} has no manifest.json: the export was cut short")
        manifest: dict[str, Any] = json.loads(members.pop("manifest.json"))
        if manifest.get("format") != _FORMAT or manifest.get("schema_version") not in _SCHEMA_VERSIONS:
            raise _fail(
                f"{path} is not an Obdal app export this version reads "
                f"(format {manifest.get('format')!r}, schema {manifest.get('schema_version')!r})"
            )
        listed: dict[str, dict[str, Any]] = manifest["members"]
        if set(listed) != set(members):
            raise _fail(f"{path}: members differ from the manifest: {sorted(set(listed) ^ set(members))}")
        for name, data in members.items():
            if hashlib.sha256(data).hexdigest() != listed[name]["sha256"]:
                raise _fail(f"{path}: {name} does not match its checksum: the archive is damaged")
        return cls(manifest=manifest, members=members)

    def json(self, name: str) -> Any:
        return json.loads(self.members[name])

    def rows(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.members[name].splitlines() if line.strip()]


class _Api:
    def __init__(self, url: str, token: str) -> None:
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=120)
        self._admin = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, *, key: str | None = None, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {key}"} if key else self._admin
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise _fail(f"cannot reach {self._http.base_url}: {exc}") from None
        if response.status_code >= 400:
            raise _fail(f"{method} {path}: {api_error(response)}")
        return response.json() if response.content else {}

    def download(self, path: str, target: Path | None) -> Path:
        try:
            with self._http.stream("GET", path, headers=self._admin, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _fail(api_error(response))
                disposition = response.headers.get("content-disposition", "")
                name = disposition.partition('filename="')[2].rstrip('"') or "obdal-export.tar.gz"
                out = target or Path(name)
                partial = out.with_name(f".{out.name}.partial")
                with partial.open("wb") as handle:
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
        except httpx.HTTPError as exc:
            raise _fail(f"the export was cut short: {exc}") from None
        partial.replace(out)  # only a whole archive gets the name
        return out


def _export(args: argparse.Namespace, token: str) -> None:
    api = _Api(args.url, token)
    out = api.download(f"/v1/admin/apps/{args.app_id}/export", Path(args.output) if args.output else None)
    manifest = Archive.read(out).manifest
    sys.stdout.write(f"{out}: {json.dumps(manifest['counts'], sort_keys=True)}\n")


def _import(args: argparse.Namespace, token: str) -> None:
    archive = Archive.read(Path(args.archive))
    api = _Api(args.url, token)
    old = archive.json("app.json")
    app_id = api.call("POST", "/v1/admin/apps", json={"name": args.name or old["name"]})["app_id"]
    report: dict[str, Any] = {"app_id": app_id, "from_app_id": old["app_id"]}
    if old.get("chat"):
        api.call("PUT", f"/v1/admin/apps/{app_id}/chat", json={k: old["chat"].get(k) for k in _CHAT_FIELDS})
    for part in ("widget", "handoff"):
        if old.get(part):
            api.call("PUT", f"/v1/admin/apps/{app_id}/{part}", json=old[part])
    report["keys"] = _import_keys(api, app_id, archive.rows("keys.ndjson"))
    loader = api.call(
        "POST",
        f"/v1/admin/apps/{app_id}/keys",
        json={"name": "obdal apps import", "scopes": _IMPORT_KEY_SCOPES},
    )
    try:
        files = _import_files(api, archive, loader["key"], timeout=args.timeout)
        report["files"] = len(files)
        report["answers"] = _import_answers(api, loader["key"], archive.rows("answers.ndjson"), files)
        for source in archive.rows("sources.ndjson"):
            api.call("POST", "/v1/sources", key=loader["key"], json={k: source[k] for k in _SOURCE_FIELDS})
        report["sources"] = len(archive.rows("sources.ndjson"))
        keys = {k["from_key_id"]: k["key_id"] for k in report["keys"]}
        report["history"] = _import_history(api, app_id, archive, key_id=loader["key_id"], keys=keys)
    finally:
        api.call("DELETE", f"/v1/admin/keys/{loader['key_id']}")
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _import_keys(api: _Api, app_id: str, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Live keys made again with the same settings (new secrets, shown once); revoked and
    expired ones are not."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    made = []
    for key in keys:
        if key.get("revoked_at") or (key.get("expires_at") and key["expires_at"] <= now):
            continue
        body = {k: key[k] for k in _KEY_FIELDS if key.get(k) is not None}
        created = api.call("POST", f"/v1/admin/apps/{app_id}/keys", json=body)
        made.append({"from_key_id": key["key_id"], "key_id": created["key_id"], "key": created["key"]})
    return made


def _import_files(api: _Api, archive: Archive, key: str, *, timeout: float) -> dict[str, str]:
    """Each document (not websites' pages: their sources sync again) uploaded from its original
    bytes and waited for; old file id -> new file id."""
    new_ids: dict[str, str] = {}
    for file in archive.rows("files.ndjson"):
        if file.get("source_id"):
            continue
        content = io.BytesIO(archive.members[file["path"]])
        files = {"file": (file["filename"], content, file.get("content_type") or "application/octet-stream")}
        new_ids[file["file_id"]] = api.call("POST", "/v1/files", key=key, files=files)["file_id"]
    deadline = time.monotonic() + timeout
    for file_id in new_ids.values():
        while (status := api.call("GET", f"/v1/files/{file_id}", key=key))["status"] not in (
            "ready",
            "failed",
        ):
            if time.monotonic() > deadline:
                raise _fail(f"file {file_id} not indexed within {timeout:.0f} s")
            time.sleep(0.2)
        if status["status"] == "failed":
            sys.stderr.write(f"obdal: {status['filename']} failed: {status.get('error')}\n")
    return new_ids


def _import_answers(api: _Api, key: str, answers: list[dict[str, Any]], files: dict[str, str]) -> int:
    for answer in answers:
        body = {"questions": answer["questions"], "answer": answer["answer"]}
        if answer.get("source_file_id") in files:
            body["source_file_id"] = files[answer["source_file_id"]]
        api.call("POST", "/v1/answers", key=key, json=body)
    return len(answers)


def _import_history(
    api: _Api, app_id: str, archive: Archive, *, key_id: str, keys: dict[str, str]
) -> dict[str, int]:
    """Sessions and usage records, one archive member per request; metering stores them."""
    counts = {"turns": 0, "usage": 0}
    for name in sorted(archive.members):
        part = name.partition("/")[0]
        if part not in ("sessions", "usage"):
            continue
        body = {"key_id": key_id, "keys": keys, part: archive.rows(name)}
        answer = api.call("POST", f"/v1/admin/apps/{app_id}/import/history", json=body)
        counts["turns"] += answer["turns"]
        counts["usage"] += answer["usage"]
    return counts


def add_archive_commands(apps: Any, *, admin_token: Callable[[argparse.Namespace], str]) -> None:
    """Register ``apps export|import`` on the ``apps`` subcommand parser."""
    export = apps.add_parser(
        "export", help="save an app as one archive (documents, settings, sessions, usage)"
    )
    export.add_argument("app_id")
    export.add_argument("-o", "--output", default=None, help="the archive's path (default: its name, here)")
    export.set_defaults(func=lambda args: _export(args, admin_token(args)))
    imported = apps.add_parser(
        "import", help="recreate an exported app on this Obdal, re-indexing its documents"
    )
    imported.add_argument("archive")
    imported.add_argument("--name", default=None, help="the new app's name (default: the exported one's)")
    imported.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for indexing")
    imported.set_defaults(func=lambda args: _import(args, admin_token(args)))
