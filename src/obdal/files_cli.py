"""``obdal files``: upload documents (with progress through to ``ready``), list and delete them.

Uses only the public HTTP API with an app's key (``--key`` or ``OBDAL_API_KEY``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

__all__ = ["add_file_commands", "api_error"]

_BAR = 24
_POLL_S = 0.3
_DONE = ("ready", "failed")


@dataclass
class _Tracked:
    name: str
    file_id: str = ""
    status: str = "uploading"
    progress: int = 0
    detail: str = ""


def _client(args: argparse.Namespace) -> httpx.Client:
    key = args.key or os.environ.get("OBDAL_API_KEY")
    if not key:
        raise SystemExit("obdal: no API key: pass --key or set OBDAL_API_KEY")
    return httpx.Client(base_url=args.url.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=60)


def api_error(response: httpx.Response) -> str:
    """An error answer of the API as a line: status, code and message."""
    try:
        error = response.json().get("error", {})
    except ValueError:
        return f"{response.status_code}"
    return f"{response.status_code} {error.get('code', '')}: {error.get('message', '')}"


def _checked(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise SystemExit(f"obdal: {api_error(response)}")
    return response.json()


def _expand(paths: list[str]) -> list[Path]:
    """Files named, and every non-hidden file under named directories, in a stable order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
                )
            )
        elif path.is_file():
            found.append(path)
        else:
            raise SystemExit(f"obdal: no such file or directory: {raw}")
    return found


def _line(item: _Tracked, width: int) -> str:
    filled = _BAR * item.progress // 100
    bar = "#" * filled + "." * (_BAR - filled)
    detail = f"  {item.detail}" if item.detail else ""
    return f"[{bar}] {item.progress:3d}% {item.status:<10} {item.name[:width]}{detail}"


class _Display:
    """Per-file bars and an overall one; redrawn in place on a terminal, state changes only otherwise."""

    def __init__(self, items: list[_Tracked], out: TextIO) -> None:
        self._items = items
        self._out = out
        self._tty = out.isatty()
        self._drawn = 0
        self._last: dict[int, tuple[str, int]] = {}

    def _overall(self) -> str:
        done = sum(i.status in _DONE for i in self._items)
        percent = sum(i.progress for i in self._items) // max(1, len(self._items))
        overall = _Tracked(name=f"{done}/{len(self._items)} files done", status="overall", progress=percent)
        return _line(overall, 60)

    def draw(self) -> None:
        if self._tty:
            if self._drawn:
                self._out.write(f"\x1b[{self._drawn}F")
            lines = [_line(i, 50) for i in self._items] + [self._overall()]
            self._out.write("".join(f"\x1b[2K{line}\n" for line in lines))
            self._drawn = len(lines)
        else:
            for n, item in enumerate(self._items):
                if self._last.get(n) != (item.status, item.progress) and item.status in (*_DONE, "queued"):
                    self._out.write(_line(item, 80) + "\n")
                    self._last[n] = (item.status, item.progress)
        self._out.flush()


def _upload(args: argparse.Namespace) -> None:
    files = _expand(args.paths)
    if not files:
        raise SystemExit("obdal: nothing to upload")
    items = [_Tracked(name=str(p)) for p in files]
    display = _Display(items, sys.stdout)
    with _client(args) as client:
        for path, item in zip(files, items, strict=True):
            with path.open("rb") as handle:
                response = client.post("/v1/files", files={"file": (path.name, handle)})
            if response.status_code >= 400:
                item.status, item.detail = "failed", api_error(response)
            else:
                body = response.json()
                item.file_id, item.status = body["file_id"], body["status"]
                item.detail = "duplicate of an existing file" if body.get("duplicate") else ""
                item.progress = 100 if item.status == "ready" else 0
            display.draw()
        deadline = time.monotonic() + args.timeout
        while not args.no_wait and any(i.status not in _DONE for i in items):
            if time.monotonic() > deadline:
                raise SystemExit(f"obdal: files not processed after {args.timeout:g} s")
            time.sleep(_POLL_S)
            for item in items:
                if item.status in _DONE:
                    continue
                status = _checked(client.get(f"/v1/files/{item.file_id}"))
                item.status, item.progress = status["status"], int(status.get("progress", 0))
                if item.status == "failed":
                    item.detail = str(status.get("error") or "")
                elif item.status == "ready":
                    item.detail = f"{status.get('chunks', 0)} chunks, {status.get('tokens', 0)} tokens"
            display.draw()
    for item in items:
        if item.file_id:
            sys.stdout.write(f"{item.file_id}\t{item.status}\t{item.name}\n")
    if any(i.status == "failed" for i in items):
        raise SystemExit(1)


def _ls(args: argparse.Namespace) -> None:
    with _client(args) as client:
        files = _checked(client.get("/v1/files"))["files"]
    for f in files:
        sys.stdout.write(f"{f['file_id']}\t{f['status']}\t{f['chunks']}\t{f['size']}\t{f['filename']}\n")


def _rm(args: argparse.Namespace) -> None:
    with _client(args) as client:
        if args.all:
            body = _checked(client.delete("/v1/files", params={"confirm": "true"}))
            sys.stdout.write(f"deleted {body['files_deleted']} files ({body['vectors_deleted']} passages)\n")
            return
        if not args.file_ids:
            raise SystemExit("obdal: name file ids to delete, or pass --all")
        for file_id in args.file_ids:
            body = _checked(client.delete(f"/v1/files/{file_id}"))
            sys.stdout.write(f"deleted {file_id} ({body['vectors_deleted']} passages)\n")


def add_file_commands(commands: Any) -> None:
    """Register ``files upload|ls|rm`` on the CLI's subcommand parser."""
    files = commands.add_parser("files", help="upload, list and delete an app's documents")
    files.add_argument("--key", default=None, help="the app's API key (default: $OBDAL_API_KEY)")
    actions = files.add_subparsers(dest="action", required=True)
    upload = actions.add_parser("upload", help="upload files and directories (recursively), wait for ready")
    upload.add_argument("paths", nargs="+")
    upload.add_argument("--no-wait", action="store_true", help="return once the files are queued")
    upload.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for ingestion")
    upload.set_defaults(func=_upload)
    actions.add_parser("ls", help="list the app's files").set_defaults(func=_ls)
    remove = actions.add_parser("rm", help="delete files: bytes, every vector and the status")
    remove.add_argument("file_ids", nargs="*")
    remove.add_argument("--all", action="store_true", help="delete every file of the app")
    remove.set_defaults(func=_rm)
