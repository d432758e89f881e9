"""How long an app's export and import take, and how big the archive is (docs/export.md).

Starts ``obdal up`` on embedded defaults (``usage_lag.embedded_stack``), fills an app with
``--files`` text documents of ``--kb`` KB and ``--chats`` answered questions, then times
``obdal apps export`` (through the admin API, streamed to a file) and ``obdal apps import``
(checks, re-uploads and re-indexes every document, brings sessions and usage) into the same
stack. The last line is JSON.

    .venv/bin/python bench/export.py --files 50 --chats 200
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from usage_lag import embedded_stack

_WORDS = [
    "kettle",
    "warranty",
    "descale",
    "boil",
    "litre",
    "element",
    "citric",
    "acid",
    "parcel",
    "refund",
    "delivery",
]


def _document(n: int, kb: int) -> bytes:
    line = " ".join(_WORDS[(n + i) % len(_WORDS)] for i in range(12)) + f" (document {n}).\n"
    return (line * (kb * 1024 // len(line) + 1)).encode()[: kb * 1024]


def _fill(url: str, token: str, *, files: int, kb: int, chats: int) -> str:
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    app_id = str(admin.post("/v1/admin/apps", json={"name": "export bench"}).json()["app_id"])
    key = admin.post(f"/v1/admin/apps/{app_id}/keys", json={"name": "bench"}).json()["key"]
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
    ids = [
        http.post("/v1/files", files={"file": (f"doc-{n}.txt", _document(n, kb))}).json()["file_id"]
        for n in range(files)
    ]
    for file_id in ids:
        while http.get(f"/v1/files/{file_id}").json()["status"] not in ("ready", "failed"):
            time.sleep(0.2)
    with ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda n: http.post("/v1/chat", json={"message": f"How do I descale? ({n})"}), range(chats)
            )
        )
    while http.get("/v1/usage").json()["total_requests"] < chats:
        time.sleep(0.2)
    return app_id


def _obdal(url: str, token: str, *args: str, cwd: Path) -> str:
    env = {**os.environ, "OBDAL_URL": url, "OBDAL_ADMIN_TOKEN": token}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "obdal"), *args], env=env, cwd=cwd, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(done.stderr)
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--kb", type=int, default=20)
    parser.add_argument("--chats", type=int, default=200)
    args = parser.parse_args()
    with embedded_stack() as (url, token), tempfile.TemporaryDirectory() as tmp:
        app_id = _fill(url, token, files=args.files, kb=args.kb, chats=args.chats)
        started = time.perf_counter()
        _obdal(url, token, "apps", "export", app_id, "-o", "app.tar.gz", cwd=Path(tmp))
        export_s = time.perf_counter() - started
        size = (Path(tmp) / "app.tar.gz").stat().st_size
        started = time.perf_counter()
        report = json.loads(_obdal(url, token, "apps", "import", "app.tar.gz", cwd=Path(tmp)))
        import_s = time.perf_counter() - started
    result = {
        "files": args.files,
        "kb_per_file": args.kb,
        "chats": args.chats,
        "export_s": round(export_s, 2),
        "archive_bytes": size,
        "import_s": round(import_s, 2),
        "imported": {"files": report["files"], **report["history"]},
    }
    print(
        f"export: {export_s:.2f} s, {size / 1024:.0f} KB for {args.files} files of {args.kb} KB and "
        f"{args.chats} answers; import (re-indexing): {import_s:.2f} s"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
