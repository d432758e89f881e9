"""Soak: a mixed load for ``--minutes`` while a chaos loop SIGKILLs one part of the stack at a time.

Why: the fault tests (tests/faults/, tests/test_nats_cluster.py, tests/test_replicas.py) each
break one thing once for seconds. This runs the stack as deployed past one machine (a 3-node
JetStream cluster at replication 3, Redis, SecantusDB, ``obdal up`` with the gateway, chat and
ingest, two ``obdal-metering`` replicas and ``obdal-webhooks``, each a process of its own, on a
loopback OpenAI-compatible upstream run as a process: tests/upstream.py) for long enough to see
what repeated failures leave behind: requests that never recover, memory that grows, usage
lost or counted twice.

Every ``--chaos-every`` seconds (default 120) one part, picked with a seeded RNG (``--seed``),
is SIGKILLed: a NATS node, Redis, SecantusDB, a metering replica, webhooks or the ``obdal up``
process (each kind once in every six kills, in a random order). It is started again ``--down``
seconds later (same ports, same data) and waited for; a service that exits by itself is
started again too (as an orchestrator would) and reported. Meanwhile four threads stream chats
(``POST /v1/chat``, stream true), one uploads a small text file every second, one reads
``/v1/usage`` and ``/v1/sessions``.

Measured, per 10-second bucket: requests by outcome (``end``, ``event: error`` code, HTTP status
and error code, cut, timed out past ``BOUND_S``, transport error) and p50/p99 latency; RSS of
each process (with its children) at start and at end (restarted ones: their new process). At
the end, once metering has settled, from MongoDB: completed answers (message ids of ``end``
events) missing from ``usage_events`` (lost) and message ids stored more than once (doubled),
both must be 0; accepted uploads that never became ready; usage stored for requests the client
did not see complete (metered after a cut: docs/reliability.md#a-nats-cluster). Prints a
summary, writes a plot (``--plot``), and ends with one JSON line.

    .venv/bin/python bench/soak.py [--minutes 30] [--chaos-every 120] [--down 10] [--seed 21]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from pymongo import MongoClient

from obdal.servers import ManagedServer, free_port, mongo_server, nats_cluster, redis_server
from obdal_common.processes import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DB = "soak"
ADMIN_TOKEN = "soak-admin-token"
MODEL = "gpt-4o-mini"
BUCKET_S = 10
BOUND_S = 30.0  # a request taking longer is counted "timed out"
TRANSPORT_PAUSE_S = 0.5  # after a refused connection (gateway down): no busy loop of instant failures
READY_TIMEOUT_S = 240.0
DOCUMENT = (
    "Parcels ship from the Lisbon warehouse within two working days. "
    "Returns are accepted for thirty days with the receipt. "
)
# The parts the chaos loop picks from: a kind (each once per round of six, in a random order), then
# one of its processes at random.
KINDS = ("nats", "redis", "mongo", "metering", "webhooks", "up")


@dataclass
class Sample:
    at: float  # seconds since the load started, when the request was sent
    kind: str  # chat, upload, usage, sessions
    outcome: str
    took: float


@dataclass
class Outcomes:
    """What the load saw; shared by the load threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    samples: list[Sample] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)  # message ids of `end` events
    uploads: list[str] = field(default_factory=list)  # file ids accepted (202)
    started: float = field(default_factory=time.monotonic)

    def record(self, kind: str, outcome: str, sent: float, took: float) -> None:
        with self.lock:
            self.samples.append(Sample(sent - self.started, kind, outcome, took))


@dataclass
class Service:
    """An Obdal process of the soak: started, SIGKILLed and started again with the same settings."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Started from the main thread, which lives as long as the bench: dies with it.
                preexec_fn=functools.partial(die_with_parent, os.getpid()),
                process_group=0,  # its children (the ingest parser) are killed with it
            )

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout_s: float = 30) -> int | None:
        if not self.process or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.poll() is None else None


@dataclass
class Stack:
    nats: list[ManagedServer]
    redis: ManagedServer
    mongo: ManagedServer
    upstream: Service
    up: Service
    metering: list[Service]
    webhooks: Service
    url: str

    def parts(self) -> dict[str, ManagedServer | Service]:
        named: dict[str, ManagedServer | Service] = {f"nats-{n}": node for n, node in enumerate(self.nats)}
        named |= {"redis": self.redis, "secantusdb": self.mongo, "up": self.up, "webhooks": self.webhooks}
        named |= {f"metering-{n}": m for n, m in enumerate(self.metering)}
        return named

    def pids(self) -> dict[str, int | None]:
        found: dict[str, int | None] = {}
        for name, part in self.parts().items():
            if isinstance(part, Service):
                found[name] = part.pid
            else:
                alive = part.process is not None and part.process.poll() is None
                found[name] = part.process.pid if alive and part.process else None
        found["upstream"] = self.upstream.pid
        return found


def tree_rss_mb(pid: int | None) -> float | None:
    """RSS of a process and its children, in MB (None: no such process)."""
    if pid is None:
        return None
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return round(total / 2**20, 1)


def status(url: str) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"{url}/v1/status", timeout=5)
        body: dict[str, Any] = response.json()
        return body
    except (httpx.HTTPError, ValueError):
        return None


def wait_services(url: str, services: tuple[str, ...], timeout: float = READY_TIMEOUT_S) -> bool:
    """Until ``/v1/status`` says each of ``services`` is ready; False if not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = status(url)
        if body and all(body.get("services", {}).get(s, {}).get("ok") for s in services):
            return True
        time.sleep(0.5)
    return False


def wait_jetstream(urls: list[str], timeout: float = 60) -> None:
    """Until the cluster answers JetStream requests (its meta leader is elected): a port that
    accepts is not yet a cluster, and ``obdal up`` creating its streams then was seen to time out."""
    import asyncio

    import nats

    async def ready() -> None:
        client = await nats.connect(servers=urls, connect_timeout=2)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    await client.jetstream(timeout=2).account_info()
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.5)
        finally:
            await client.close()

    asyncio.run(ready())


def start_ready(service: Service, url: str, services: tuple[str, ...], restarts: list[str]) -> None:
    """Start ``service`` and wait until ``services`` are ready; started again if it exits first."""
    for _ in range(3):
        service.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and service.pid is not None:
            if wait_services(url, services, timeout=2):
                return
        if service.pid is not None:
            break
        code = service.process.returncode if service.process else None
        restarts.append(f"{service.name} exited at start-up ({code})")
        print(f"  {restarts[-1]}; starting it again", flush=True)
    raise SystemExit(f"{service.name} did not become ready; log in {service.log_path}")


def start_stack(base: Path, upstream_port: int, restarts: list[str]) -> Stack:
    servers = base / "servers"
    nats = nats_cluster(servers)
    redis, mongo = redis_server(servers), mongo_server(servers)
    for server in [*nats, redis, mongo]:
        server.start()
    wait_jetstream([node.url for node in nats])
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBDAL_")} | {
        "OBDAL_NATS_URL": ",".join(node.url for node in nats),
        "OBDAL_NATS_REPLICAS": "3",
        "OBDAL_REDIS_URL": redis.url,
        "OBDAL_MONGO_URL": mongo.url,
        "OBDAL_MONGO_DB": DB,
        "OBDAL_DATA_DIR": str(base / "data"),
        "OBDAL_GATEWAY_PORT": str(port),
        "OBDAL_ADMIN_TOKEN": ADMIN_TOKEN,
        "OBDAL_CHAT_MODEL": f"openai/{MODEL}",
        "OBDAL_CHAT_API_BASE": f"http://127.0.0.1:{upstream_port}/v1",
        "OBDAL_CHAT_API_KEY": "sk-up",
        "OBDAL_DEFAULT_RATE_LIMIT_RPM": "10000000",
        "OBDAL_MAX_CONCURRENT_ANSWERS_PER_KEY": "100000",
    }
    logs = base / "logs"
    logs.mkdir(exist_ok=True)
    upstream = Service(
        "upstream",
        [str(sys.executable), "-m", "tests.upstream", "--port", str(upstream_port), "--chunks", "20"],
        env,
        logs / "upstream.log",
    )
    up = Service(
        "up", [str(BIN / "obdal"), "up"], env | {"OBDAL_SERVICES": "gateway,chat,ingest"}, logs / "up.log"
    )
    metering = [
        Service(f"metering-{n}", [str(BIN / "obdal-metering")], env, logs / f"metering-{n}.log")
        for n in range(2)
    ]
    webhooks = Service("webhooks", [str(BIN / "obdal-webhooks")], env, logs / "webhooks.log")
    stack = Stack(nats, redis, mongo, upstream, up, metering, webhooks, f"http://127.0.0.1:{port}")
    # `obdal up` first, alone: it creates the streams and buckets. A metering replica started with
    # it on a fresh cluster was seen exiting (nats timeout on a bucket being created).
    upstream.start()
    start_ready(up, stack.url, ("chat", "ingest"), restarts)
    start_ready(metering[0], stack.url, ("metering",), restarts)
    start_ready(webhooks, stack.url, ("webhooks",), restarts)
    metering[1].start()
    time.sleep(5)
    if metering[1].pid is None:
        start_ready(metering[1], stack.url, ("metering",), restarts)
    return stack


def stop_stack(stack: Stack) -> dict[str, int | None]:
    """Services first (SIGINT, as an orchestrator stops them), then the servers; exit codes."""
    codes = {s.name: s.stop() for s in (stack.up, *stack.metering, stack.webhooks)}
    stack.upstream.kill()
    stack.mongo.kill()  # its data is thrown away; a clean stop takes seconds
    for server in (*stack.nats, stack.redis):
        server.stop()
    return codes


def tenant(url: str) -> str:
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    app_id = admin.post("/v1/admin/apps", json={"name": "soak"}).json()["app_id"]
    created = admin.post(f"/v1/admin/apps/{app_id}/keys", json={"name": "soak", "rate_limit_rpm": 10**7})
    key = str(created.json()["key"])
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    file_id = http.post("/v1/files", files={"file": ("shipping.txt", DOCUMENT.encode())}).json()["file_id"]
    deadline = time.monotonic() + 120
    while (state := http.get(f"/v1/files/{file_id}").json()["status"]) not in ("ready", "failed"):
        if time.monotonic() > deadline:
            raise SystemExit("the first document did not become ready")
        time.sleep(0.2)
    if state != "ready":
        raise SystemExit("the first document failed")
    return key


def refusal(response: httpx.Response) -> str:
    """A refusal's status and error code (``non-json`` if it is not our error shape)."""
    try:
        return f"{response.status_code} {response.json()['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code} non-json"


def chat(http: httpx.Client, out: Outcomes, n: int) -> str:
    body = {"message": f"How fast do parcels ship? ({n})", "stream": True, "user": f"customer-{n % 7}"}
    with http.stream("POST", "/v1/chat", json=body) as response:
        if response.status_code != 200:
            response.read()
            return refusal(response)
        last_event, last_data = "", ""
        name = "message"
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                last_event, last_data = name, line[5:].strip()
            elif not line:
                name = "message"
    if last_event == "end":
        with out.lock:
            out.answered.append(json.loads(last_data)["message_id"])
        return "end"
    if last_event == "error":
        return f"error {json.loads(last_data).get('code')}"
    return "cut"  # closed without saying how it ended


def upload(http: httpx.Client, out: Outcomes, n: int) -> str:
    note = f"Note {n}. {DOCUMENT}".encode()
    response = http.post("/v1/files", files={"file": (f"note-{n}.txt", note)})
    if response.status_code == 202:
        with out.lock:
            out.uploads.append(response.json()["file_id"])
        return "202"
    return refusal(response)


def read(http: httpx.Client, path: str) -> str:
    response = http.get(path)
    return "200" if response.status_code == 200 else refusal(response)


def load(
    kind: str | None,
    step: Callable[[int], str],
    pause: float,
    out: Outcomes,
    stop: threading.Event,
) -> None:
    n = 0
    while not stop.is_set():
        what = kind or ("usage" if n % 2 else "sessions")
        sent = time.monotonic()
        wait = pause
        try:
            outcome = step(n)
        except httpx.TimeoutException:
            outcome = "timed out"
        except httpx.TransportError as exc:
            outcome, wait = f"transport {type(exc).__name__}", max(pause, TRANSPORT_PAUSE_S)
        except (ValueError, KeyError) as exc:  # a 200 whose body is not what it should be
            outcome = f"bad body {type(exc).__name__}"
        took = time.monotonic() - sent
        if took > BOUND_S and outcome != "timed out":
            outcome = f"{outcome} (over {BOUND_S:.0f} s)"
        out.record(what, outcome, sent, took)
        n += 1
        stop.wait(wait)


def start_load(url: str, key: str, out: Outcomes, stop: threading.Event) -> list[threading.Thread]:
    def client() -> httpx.Client:
        timeout = httpx.Timeout(BOUND_S, connect=5)
        return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout)

    threads = []
    for t in range(4):
        http = client()
        step = functools.partial(lambda n, h, t: chat(h, out, n * 10 + t), h=http, t=t)
        threads.append(threading.Thread(target=load, args=("chat", step, 0.05, out, stop)))
    uploader = client()
    threads.append(
        threading.Thread(target=load, args=("upload", lambda n: upload(uploader, out, n), 1.0, out, stop))
    )
    reader = client()

    def read_step(n: int) -> str:
        return read(reader, "/v1/usage" if n % 2 else "/v1/sessions")

    threads.append(threading.Thread(target=load, args=(None, read_step, 0.2, out, stop)))
    for thread in threads:
        thread.start()
    return threads


@dataclass
class Kill:
    at: float  # planned, seconds since the load started
    target: str
    killed_at: float = 0.0
    restarted_at: float = 0.0
    back_at: float | None = None  # ready again (None: never, within READY_TIMEOUT_S)


def schedule(duration: float, every: float, down: float, seed: int) -> list[Kill]:
    """A kill every ``every`` seconds, each far enough from the end for its part to be back."""
    rng = random.Random(seed)
    kills: list[Kill] = []
    kinds: list[str] = []
    at = every
    while at + down + 30 <= duration:
        if not kinds:  # every kind once per round, in a random order
            kinds = list(KINDS)
            rng.shuffle(kinds)
        kind = kinds.pop()
        target = {
            "nats": f"nats-{rng.randrange(3)}",
            "metering": f"metering-{rng.randrange(2)}",
            "mongo": "secantusdb",
        }.get(kind, kind)
        kills.append(Kill(at, target))
        at += every
    return kills


def back(stack: Stack, target: str) -> bool:
    """Wait until the restarted ``target`` serves again."""
    part = stack.parts()[target]
    if target == "up":
        return wait_services(stack.url, ("chat", "ingest"))
    if isinstance(part, Service):
        # A metering or webhooks replica: up if it is still running once it has connected.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if part.pid is None:
                return False
            time.sleep(0.5)
        return part.pid is not None
    return True  # a server's start() returns once it accepts connections


@dataclass
class Exit:
    """A service that exited by itself (not killed by the chaos loop), and was started again."""

    at: float
    target: str
    code: int | None


def watch(stack: Stack, out: Outcomes, until: float, exits: list[Exit], down: str = "") -> None:
    """Sleep until ``until`` (seconds since the load started), restarting any service that exits by
    itself, as an orchestrator would (except ``down``, the one the chaos loop holds down)."""
    while (left := out.started + until - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        for name, part in stack.parts().items():
            if name == down or not isinstance(part, Service) or part.process is None:
                continue
            code = part.process.poll()
            if code is not None:
                exits.append(Exit(time.monotonic() - out.started, name, code))
                print(f"  [{exits[-1].at:7.1f} s] {name} EXITED by itself ({code}); restarted", flush=True)
                part.start()


def chaos(
    stack: Stack, kills: list[Kill], down: float, out: Outcomes, stop_at: float, exits: list[Exit]
) -> None:
    """In the main thread (the one children die with): each kill at its time, then its restart."""
    for kill in kills:
        watch(stack, out, kill.at, exits)
        part = stack.parts()[kill.target]
        kill.killed_at = time.monotonic() - out.started
        part.kill()
        print(f"  [{kill.killed_at:7.1f} s] killed {kill.target}", flush=True)
        watch(stack, out, kill.killed_at + down, exits, down=kill.target)
        kill.restarted_at = time.monotonic() - out.started
        try:
            part.start()
            ok = back(stack, kill.target)
        except Exception as exc:  # a server that does not start: reported, and the soak goes on
            print(f"  [{kill.restarted_at:7.1f} s] {kill.target} failed to start: {exc}", flush=True)
            ok = False
        if ok:
            kill.back_at = time.monotonic() - out.started
            took = kill.back_at - kill.restarted_at
            print(
                f"  [{kill.back_at:7.1f} s] {kill.target} back ({took:.1f} s after its restart)", flush=True
            )
        else:
            print(f"  [{time.monotonic() - out.started:7.1f} s] {kill.target} NOT back", flush=True)
    watch(stack, out, stop_at, exits)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def category(outcome: str) -> str:
    """The plot's classes of outcome."""
    if "over" in outcome:
        return "over bound"
    if outcome in ("end", "202", "200"):
        return "ok"
    if outcome.startswith("error "):
        return "event: error"
    if outcome.startswith("transport"):
        return "transport error"
    if outcome in ("cut", "timed out") or outcome.startswith("bad body"):
        return "cut / timed out"
    if outcome[:1] == "5":
        return "5xx JSON refusal"
    return "other HTTP"


CATEGORIES = (
    "ok",
    "5xx JSON refusal",
    "event: error",
    "other HTTP",
    "transport error",
    "cut / timed out",
    "over bound",
)
COLOURS = ("#4c9a2a", "#e0a030", "#d0601b", "#8060c0", "#a0a0a0", "#c02020", "#000000")


def buckets(samples: list[Sample], duration: float) -> list[dict[str, Any]]:
    rows = []
    for start in range(0, int(duration) + BUCKET_S, BUCKET_S):
        inside = [s for s in samples if start <= s.at < start + BUCKET_S]
        if not inside and start >= duration:
            break
        took = [s.took for s in inside if not s.outcome.startswith("transport")]
        chat_took = [s.took for s in inside if s.kind == "chat" and s.outcome == "end"]
        rows.append(
            {
                "t": start,
                "outcomes": dict(collections.Counter(category(s.outcome) for s in inside)),
                "p50_ms": round(statistics.median(took) * 1000, 1) if took else None,
                "p99_ms": round(percentile(took, 0.99) * 1000, 1) if took else None,
                "chat_end_p99_ms": round(percentile(chat_took, 0.99) * 1000, 1) if chat_took else None,
            }
        )
    return rows


def plot(rows: list[dict[str, Any]], kills: list[Kill], exits: list[Exit], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    minutes = [r["t"] / 60 for r in rows]
    width = BUCKET_S / 60
    below = [0.0] * len(rows)
    for name, colour in zip(CATEGORIES, COLOURS, strict=True):
        heights = [float(r["outcomes"].get(name, 0)) for r in rows]
        if any(heights):
            top.bar(minutes, heights, width, bottom=below, align="edge", color=colour, label=name)
            below = [b + h for b, h in zip(below, heights, strict=True)]
    top.set_ylim(0, max(below, default=1) * 1.3)
    top.set_ylabel(f"requests per {BUCKET_S} s")
    top.legend(loc="upper right", fontsize=8, ncol=4)
    for key, label, style in (
        ("p50_ms", "p50 (all)", "-"),
        ("p99_ms", "p99 (all)", "-"),
        ("chat_end_p99_ms", "p99 (chats ending `end`)", "--"),
    ):
        points = [(m + width / 2, r[key]) for m, r in zip(minutes, rows, strict=True) if r[key]]
        bottom.plot([p[0] for p in points], [p[1] for p in points], style, label=label)
    bottom.set_yscale("log")
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel("minutes")
    bottom.legend(loc="upper right", fontsize=8)
    bottom.grid(True, which="both", alpha=0.3)
    marks = [(k.killed_at, k.target, 1.0, {"color": "#c02020", "alpha": 0.7}) for k in kills]
    marks += [(g.at, f"{g.target} exited", 0.75, {"color": "#404040", "linestyle": ":"}) for g in exits]
    for at, label, height, style in marks:
        for axis in (top, bottom):
            axis.axvline(at / 60, linewidth=0.8, **style)
        top.annotate(
            label,
            (at / 60, height),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=7,
            va="top",
            ha="right",
        )
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def settle_metering(db: Any, answered: list[str], timeout: float = 180) -> collections.Counter[str]:
    """Usage events by message id, once every answer is stored and the count holds for 10 s."""
    deadline = time.monotonic() + timeout
    last, steady_since = -1, time.monotonic()
    while True:
        metered = collections.Counter(
            str(d["message_id"]) for d in db.usage_events.find({}, {"message_id": 1})
        )
        total = sum(metered.values())
        if total != last:
            last, steady_since = total, time.monotonic()
        complete = all(m in metered for m in answered)
        if (complete and time.monotonic() - steady_since >= 10) or time.monotonic() > deadline:
            return metered
        time.sleep(1)


def files_unready(url: str, key: str, uploads: list[str], timeout: float = 240) -> dict[str, str]:
    """Accepted uploads not ``ready`` within ``timeout``: file id to its last status."""
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    pending = {file_id: "?" for file_id in uploads}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for file_id in list(pending):
            try:
                response = http.get(f"/v1/files/{file_id}")
                state = response.json().get("status", f"http {response.status_code}")
            except (httpx.HTTPError, ValueError):
                continue
            if state == "ready":
                del pending[file_id]
            else:
                pending[file_id] = str(state)
        if pending and not any(s in ("queued", "processing", "?") for s in pending.values()):
            break  # only final states (failed, not found) left
        time.sleep(2)
    return pending


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--chaos-every", type=float, default=120, help="seconds between kills")
    parser.add_argument("--down", type=float, default=10, help="seconds a killed part stays down")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "reliability-soak.png")
    args = parser.parse_args()
    duration = args.minutes * 60
    kills = schedule(duration, args.chaos_every, args.down, args.seed)
    print(
        f"soak: {args.minutes:g} min, a kill every {args.chaos_every:g} s, "
        f"down {args.down:g} s, seed {args.seed}"
    )
    print("schedule: " + ", ".join(f"{k.at:.0f} s {k.target}" for k in kills), flush=True)

    base = Path(tempfile.mkdtemp(prefix="obdal-soak-"))
    print(f"data and logs: {base}", flush=True)
    upstream_port = free_port()
    startup: list[str] = []
    stack = start_stack(base, upstream_port, startup)
    codes: dict[str, int | None] = {}
    try:
        key = tenant(stack.url)
        pids_start = stack.pids()
        rss_start = {name: tree_rss_mb(pid) for name, pid in pids_start.items()}
        print("RSS at start (MB): " + json.dumps(rss_start), flush=True)
        out, stop, exits = Outcomes(), threading.Event(), list[Exit]()
        threads = start_load(stack.url, key, out, stop)
        try:
            chaos(stack, kills, args.down, out, duration, exits)
        finally:
            stop.set()
            for thread in threads:
                thread.join(BOUND_S + 10)
        hung = sum(thread.is_alive() for thread in threads)
        loaded_s = time.monotonic() - out.started
        print(f"load stopped after {loaded_s:.0f} s; settling", flush=True)
        wait_services(stack.url, ("chat", "ingest", "metering", "webhooks"), timeout=120)
        pids_end = stack.pids()
        rss_end = {name: tree_rss_mb(pid) for name, pid in pids_end.items()}
        mongo: MongoClient[dict[str, Any]] = MongoClient(stack.mongo.url)
        db = mongo[DB]
        metered = settle_metering(db, out.answered)
        turns = collections.Counter(str(d["message_id"]) for d in db.turns.find({}, {"message_id": 1}))
        mongo.close()
        unready = files_unready(stack.url, key, out.uploads)
    finally:
        codes = stop_stack(stack)

    answered = set(out.answered)
    lost = sorted(answered - set(metered))
    doubled = {m: c for m, c in metered.items() if c > 1}
    turns_doubled = {m: c for m, c in turns.items() if c > 1}
    extra = len(set(metered) - answered)
    by_outcome = collections.Counter(f"{s.kind} {s.outcome}" for s in out.samples)
    took = [s.took for s in out.samples if not s.outcome.startswith("transport")]  # answered at all
    ended = [s.took for s in out.samples if s.kind == "chat" and s.outcome == "end"]
    not_ended = sum(c for k, c in by_outcome.items() if k.startswith("chat ") and k != "chat end")
    rows = buckets(out.samples, loaded_s)
    # A bucket with any request not ok, and which buckets were all ok after the last kill's return.
    bad_buckets = [r["t"] for r in rows if set(r["outcomes"]) - {"ok"}]
    last_back = max((k.back_at or 0.0 for k in kills), default=0.0)
    after_last = [t for t in bad_buckets if t >= last_back + BUCKET_S]

    print("\nchaos:")
    for k in kills:
        back_s = f"back at {k.back_at:.1f} s" if k.back_at is not None else "NOT BACK"
        print(f"  {k.killed_at:7.1f} s  {k.target:<11} restarted {k.restarted_at:7.1f} s  {back_s}")
    for gone in exits:
        print(f"  {gone.at:7.1f} s  {gone.target:<11} EXITED by itself with {gone.code}; restarted")
    print(f"\nrequests by outcome ({len(out.samples)}):")
    for name, count in sorted(by_outcome.items()):
        print(f"  {name:<45} {count:>7}")
    p50, p99 = statistics.median(took) * 1000, percentile(took, 0.99) * 1000
    print(
        f"latency (requests answered, not transport errors): p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
        f"max {max(took):.1f} s"
    )
    if ended:
        e50, e99 = statistics.median(ended) * 1000, percentile(ended, 0.99) * 1000
        print(f"chats ending `end`: p50 {e50:.0f} ms, p99 {e99:.0f} ms")
    print("\nRSS MB (process and its children), start -> end:")
    for name in rss_start:
        print(
            f"  {name:<11} {rss_start[name]} -> {rss_end.get(name)}"
            f"   pid {pids_start[name]} -> {pids_end.get(name)}"
        )
    print(f"\nusage: {len(out.answered)} completed answers, {len(lost)} lost, {len(doubled)} doubled")
    print(
        f"  usage events stored: {sum(metered.values())} ({extra} for chats the client did not see end; "
        f"{not_ended} chats did not end with `end`)"
    )
    print(f"  turns stored: {sum(turns.values())}, doubled {len(turns_doubled)}")
    print(
        f"uploads: {len(out.uploads)} accepted, {len(unready)} not ready: "
        f"{json.dumps(dict(list(unready.items())[:10]))}"
    )
    print(f"load threads hung: {hung}; buckets with a non-ok request after the last return: {after_last}")
    print(f"exit codes at the end: {json.dumps(codes)}; start-up exits: {startup}")

    title = (
        f"soak: {args.minutes:g} min, {len(kills)} SIGKILLs (every {args.chaos_every:g} s, down "
        f"{args.down:g} s), {os.cpu_count()} cores"
    )
    plot(rows, kills, exits, args.plot, title)
    print(f"plot written to {args.plot}")
    print(
        json.dumps(
            {
                "benchmark": "soak",
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "cpus": os.cpu_count(),
                "minutes": args.minutes,
                "chaos_every_s": args.chaos_every,
                "down_s": args.down,
                "seed": args.seed,
                "kills": [k.__dict__ for k in kills],
                "self_exits": [e.__dict__ for e in exits],
                "startup_exits": startup,
                "requests": len(out.samples),
                "by_outcome": dict(sorted(by_outcome.items())),
                "latency_p50_ms": round(p50, 1),
                "latency_p99_ms": round(p99, 1),
                "latency_max_s": round(max(took), 2),
                "rss_start_mb": rss_start,
                "rss_end_mb": rss_end,
                "answered": len(out.answered),
                "lost": len(lost),
                "doubled": len(doubled),
                "lost_ids": lost[:20],
                "doubled_ids": dict(list(doubled.items())[:20]),
                "turns_doubled": len(turns_doubled),
                "metered_not_seen_complete": extra,
                "chats_not_ended": not_ended,
                "uploads": len(out.uploads),
                "uploads_not_ready": len(unready),
                "hung_threads": hung,
                "non_ok_buckets_after_last_return": after_last,
                "exit_codes": codes,
                "buckets": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
