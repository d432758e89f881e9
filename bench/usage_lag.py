"""How long after a streamed answer ends its usage (and its session) can be read back.

Starts ``obdal up`` on embedded defaults in a temporary directory (or uses a running
stack with ``--url`` and ``--admin-token``), streams ``--chats`` answers one after
the other, and after each ``end`` event polls ``GET /v1/usage`` and
``GET /v1/sessions/{id}`` until they include it. Prints p50/p99/max lag in
milliseconds; the last line is JSON. Target: usage visible within 1 s.

    .venv/bin/python bench/usage_lag.py --chats 100
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from obdal.servers import free_port
from obdal_common.processes import die_with_parent

DOC = b"# Returns\n\nOur refund window is 45 days from delivery. Refunds go to the original payment method.\n"
POLL_S = 0.005


@contextmanager
def embedded_stack(*, stop_timeout_s: float = 60, **extra_env: str) -> Iterator[tuple[str, str]]:
    """``obdal up`` with its own servers in a temporary directory; (url, admin token).

    ``extra_env`` adds settings (``OBDAL_CHAT_MODEL=...``, or servers' URLs to use instead of
    its own) to its environment."""
    with tempfile.TemporaryDirectory(prefix="obdal-bench-") as tmp:
        port, token = free_port(), "bench-admin-token"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OBDAL_")}
        env |= {
            "OBDAL_DATA_DIR": tmp,
            "OBDAL_GATEWAY_PORT": str(port),
            "OBDAL_ADMIN_TOKEN": token,
        } | extra_env
        log = (Path(tmp) / "obdal.log").open("wb")
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "obdal"), "up"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            # A bench killed mid-run (a load takes minutes) must not leave its stack running.
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/v1/status", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            else:
                raise SystemExit(f"obdal up did not become ready; log in {log.name}")
            yield url, token
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(stop_timeout_s)


def wait_until(check: Callable[[], bool], start: float) -> float:
    """Seconds from ``start`` until ``check()`` holds."""
    while not check():
        time.sleep(POLL_S)
    return time.perf_counter() - start


def counted(http: httpx.Client, requests: int) -> Callable[[], bool]:
    return lambda: int(http.get("/v1/usage").json()["total_requests"]) >= requests


def stored(http: httpx.Client, session_id: str) -> Callable[[], bool]:
    return lambda: http.get(f"/v1/sessions/{session_id}").status_code == 200


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(url: str, admin_token: str, chats: int) -> dict[str, float | int]:
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30)
    app_id = admin.post("/v1/admin/apps", json={"name": "bench"}).json()["app_id"]
    key = admin.post(f"/v1/admin/apps/{app_id}/keys", json={"name": "bench"}).json()["key"]
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    file_id = http.post("/v1/files", files={"file": ("policy.md", DOC)}).json()["file_id"]
    while http.get(f"/v1/files/{file_id}").json()["status"] not in ("ready", "failed"):
        time.sleep(0.1)

    usage_lags: list[float] = []
    session_lags: list[float] = []
    for n in range(chats):
        body = {"message": "How long is the refund window?", "stream": True}
        with http.stream("POST", "/v1/chat", json=body) as response:
            lines = list(response.iter_lines())
        ended = time.perf_counter()
        end = json.loads(lines[lines.index("event: end") + 1].removeprefix("data:").strip())
        usage_lags.append(wait_until(counted(http, n + 1), ended))
        session_lags.append(wait_until(stored(http, end["session_id"]), ended))
    ms = 1000.0
    return {
        "chats": chats,
        "usage_lag_p50_ms": round(statistics.median(usage_lags) * ms, 1),
        "usage_lag_p99_ms": round(percentile(usage_lags, 0.99) * ms, 1),
        "usage_lag_max_ms": round(max(usage_lags) * ms, 1),
        "session_lag_p50_ms": round(statistics.median(session_lags) * ms, 1),
        "session_lag_p99_ms": round(percentile(session_lags, 0.99) * ms, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=50)
    parser.add_argument("--url", help="a running stack (default: start one)")
    parser.add_argument("--admin-token", help="its operator token")
    args = parser.parse_args()
    if args.url:
        result = run(args.url, args.admin_token, args.chats)
    else:
        with embedded_stack() as (url, token):
            result = run(url, token, args.chats)
    for name, value in result.items():
        print(f"{name:>20}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
