"""Streaming throughput and latency of Obdal against its limit and its peer, in one run.

Starts a loopback OpenAI-compatible upstream (tests/upstream.py: 50 words per answer,
at once), then four servers relaying it, and drives each with the same load
(concurrency 1, 32 and 256; a fixed count of streams):

- ``bare``: Litestar streaming SSE from memory (the framework's own limit);
- ``relay``: Litestar with a bearer check and an httpx stream from the upstream;
- ``relay_aiohttp``: the same relay with aiohttp (the HTTP client of Obdal's worker);
- ``rag_relay``: the minimal RAG relay, the honest limit for a grounded answer: the bearer check,
  Obdal's embedder and Qdrant Edge hybrid search over the same document, the prompt, aiohttp;
- ``litellm``: the LiteLLM proxy (``.tools/litellm-proxy``, see ``make bench``) on the upstream;
- ``obdal``: embedded defaults as two ``obdal up`` processes, the gateway (with metering, webhooks) and one
  chat worker (with ingest) on the upstream, as in production (``POST /v1/chat``).

For each: streams/s, time to first token and total time (p50/p99), CPU seconds per
stream of the server's processes (for Obdal also that of its NATS, Redis and SecantusDB
servers, apart), and Obdal's ratios to the others. Then, with answers
paced at 50 words/s, how many concurrent streams Obdal holds before time to first token
passes 500 ms (p99) and its memory per open stream; then usage lag (bench/usage_lag.py),
retrieval latency (bench/retrieval.py) and ingest chunks/s (bench/ingest.py). The last
line is one JSON object with every figure.

    .venv/bin/python bench/stream.py [--quick] [--plot docs/performance-stream.png]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvloop
from usage_lag import embedded_stack, percentile
from usage_lag import run as usage_lag

from obdal.servers import free_port, mongo_server, nats_server, redis_server

ROOT = Path(__file__).resolve().parent.parent
PYTHON = Path(sys.executable)
LITELLM = ROOT / ".tools" / "litellm-proxy" / "bin" / "litellm"
KEY = "sk-bench"  # the relay's and the LiteLLM proxy's key (bench/peers.py)
CHUNKS = 50
FIRST, LAST = b" w0", f" w{CHUNKS - 1}".encode()
PACED_INTERVAL_S = 0.02  # 50 words/s
RAMP_PER_S = 25  # paced streams opened per second
HELD_S = 3.0  # how long all of a level's streams stay open together
PACED_CHUNKS = int((1000 / RAMP_PER_S + HELD_S + 2) / PACED_INTERVAL_S)  # enough for the largest level
TTFT_LIMIT_S = 0.5
# The retrieval subset of --quick: these first test queries, on their relevant documents and others.
QUICK_QUERIES, QUICK_DOCS = 30, 60
MODEL = "gpt-4o-mini"
# Each stream asks its own question (the serial is replaced per request, same length): a repeated
# one would be served from Obdal's query cache, which the peers do not have.
SERIAL = b"00000000"
QUESTION = f"How long is the refund window? (question {SERIAL.decode()})"
# The document both Obdal's app and the RAG relay search.
DOCUMENT = (
    "# Returns\n\nOur refund window is 45 days from delivery. Refunds go to the original payment method "
    "within five working days of the parcel reaching our warehouse.\n\n"
    "# Exchanges\n\nAn item may be exchanged once for another size or colour. Exchanges ship free of "
    "charge; the first parcel's label is printed from the order page.\n\n"
    "# Damaged items\n\nA damaged item is replaced at once. Send a photo of the damage and of the "
    "parcel's label from the order page within 14 days of delivery.\n\n"
    "# Shipping\n\nOrders placed before 2 pm ship the same working day from the Lisbon warehouse. "
    "Delivery takes two to four working days in the EU.\n"
)
_serials = itertools.count()


@dataclass(frozen=True)
class Target:
    """A server under load: where to send a stream, and the processes whose CPU it costs."""

    name: str
    port: int
    request: bytes
    pids: tuple[int, ...]
    servers: tuple[int, ...] = ()  # the databases it uses, measured apart
    end: bytes = b""  # what a complete answer ends with, if it says so


def cpu_seconds(pids: tuple[int, ...]) -> float:
    """User and system CPU time of these processes and their children."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


def http_request(port: int, path: str, body: dict[str, Any], key: str) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    ).encode() + data


@dataclass
class Stream:
    ttft: float | None = None
    total: float = 0.0
    ok: bool = False


async def one_stream(target: Target) -> Stream:
    """One streamed answer over a raw connection: the cheapest client, so the servers are measured."""
    result = Stream()
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
    try:
        writer.write(target.request.replace(SERIAL, f"{next(_serials):08d}".encode(), 1))
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        tail = b""
        last, ended = False, not target.end
        while part := await reader.read(65536):
            window = tail + part
            if result.ttft is None and FIRST in window:
                result.ttft = time.perf_counter() - started
            last = last or LAST in window
            ended = ended or target.end in window
            tail = window[-16:]
        result.ok = status == 200 and last and ended
    finally:
        writer.close()
        result.total = time.perf_counter() - started
    return result


async def drive(target: Target, *, concurrency: int, count: int) -> dict[str, float]:
    """``count`` streams, ``concurrency`` at a time; throughput, latencies and CPU per stream."""
    results: list[Stream] = []
    remaining = count

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            try:
                results.append(await one_stream(target))
            except OSError:
                results.append(Stream())

    cpu_before, servers_before = cpu_seconds(target.pids), cpu_seconds(target.servers)
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(min(concurrency, count))))
    wall = time.perf_counter() - started
    cpu, servers = cpu_seconds(target.pids) - cpu_before, cpu_seconds(target.servers) - servers_before
    good = [r for r in results if r.ok and r.ttft is not None]
    ttfts = [r.ttft for r in good if r.ttft is not None]
    totals = [r.total for r in good]
    ms = 1000.0
    return {
        "streams": count,
        "errors": count - len(good),
        "streams_per_s": round(len(good) / wall, 2),
        "ttft_p50_ms": round(statistics.median(ttfts) * ms, 1) if ttfts else -1,
        "ttft_p99_ms": round(percentile(ttfts, 0.99) * ms, 1) if ttfts else -1,
        "total_p50_ms": round(statistics.median(totals) * ms, 1) if totals else -1,
        "total_p99_ms": round(percentile(totals, 0.99) * ms, 1) if totals else -1,
        "cpu_s_per_stream": round(cpu / max(1, len(good)), 5),
        **({"servers_cpu_s_per_stream": round(servers / max(1, len(good)), 5)} if target.servers else {}),
    }


async def hold(
    target: Target, memory: dict[str, int], baseline: dict[str, int], *, streams: int, key: str
) -> dict[str, float]:
    """Open ``streams`` paced answers in a ramp, all open at once at the end of it: TTFT and memory
    (RSS over ``baseline`` per open stream, of each process in ``memory``, by name)."""
    # Each answer lasts the ramp and HELD_S more, so that the first is still open when the last starts.
    words = int((streams / RAMP_PER_S + HELD_S) / PACED_INTERVAL_S)
    body = {"message": f"[paced:{words}] {QUESTION}", "stream": True}
    target = dataclasses.replace(target, request=http_request(target.port, "/v1/chat", body, key))
    processes = {name: psutil.Process(pid) for name, pid in memory.items()}
    tasks = []
    for _ in range(streams):
        tasks.append(asyncio.create_task(one_stream(target)))
        await asyncio.sleep(1 / RAMP_PER_S)
    await asyncio.sleep(HELD_S / 2)  # the last ones reach their first token; none has ended yet
    rss_open = {name: p.memory_info().rss for name, p in processes.items()}
    results: list[Stream] = []
    for task in tasks:
        try:
            results.append(await task)
        except OSError:
            results.append(Stream())
    ttfts = [r.ttft for r in results if r.ttft is not None]
    return {
        "streams": streams,
        "errors": sum(not r.ok for r in results),
        "ttft_p50_ms": round(statistics.median(ttfts) * 1000, 1) if ttfts else -1,
        "ttft_p99_ms": round(percentile(ttfts, 0.99) * 1000, 1) if ttfts else -1,
        **{
            f"{name}_kb_per_stream": round((rss_open[name] - baseline[name]) / 1024 / streams, 1)
            for name in processes
        },
    }


def wait_ready(url: str, process: subprocess.Popen[bytes], *, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {timeout} s")


@contextmanager
def process(
    args: list[str], *, env: dict[str, str] | None = None, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def kill(pids: list[int]) -> None:
    """SIGKILL to each of these processes, without waiting: nothing of theirs is kept, and each one's
    graceful stop takes a second or more."""
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def litellm_config(path: Path, upstream: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": "bench",
                        "litellm_params": {
                            "model": f"openai/{MODEL}",
                            "api_base": upstream,
                            "api_key": "sk-up",
                        },
                    }
                ],
                "general_settings": {"master_key": KEY},
                "litellm_settings": {"telemetry": False},
            }
        )
    )
    return path


def chat_body() -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}], "stream": True}


def obdal_key(url: str, admin_token: str) -> str:
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30)
    app_id = admin.post("/v1/admin/apps", json={"name": "stream-bench"}).json()["app_id"]
    created = admin.post(f"/v1/admin/apps/{app_id}/keys", json={"name": "bench", "rate_limit_rpm": 10**7})
    key = str(created.json()["key"])
    # The document the RAG relay searches too, indexed before the loads.
    files = {"file": ("returns.md", DOCUMENT.encode(), "text/markdown")}
    uploaded = httpx.post(
        f"{url}/v1/files",
        params={"wait": "true"},
        files=files,
        headers={"Authorization": f"Bearer {key}"},
        timeout=150,
    )
    if uploaded.json().get("status") != "ready":
        raise SystemExit(f"the bench document was not indexed: {uploaded.text}")
    return key


@dataclass
class Report:
    paths: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)
    hold: list[dict[str, float]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Phases:
    """Wall-clock seconds of each phase of the run, in order: where the run's own time goes."""

    seconds: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 1)
            print(f"  [{name}: {self.seconds[name]:.1f} s]", flush=True)

    def total(self) -> dict[str, float]:
        """Every phase, and the whole run so far as ``total``."""
        return {**self.seconds, "total": round(time.perf_counter() - self.started, 1)}


@contextmanager
def profiled(pids: dict[str, int], out: Path | None) -> Iterator[None]:
    """py-spy samples each process while the block runs (raw stacks in ``out``.<name>.txt), if ``out``."""
    if out is None:
        yield
        return
    spies = [
        subprocess.Popen(
            [
                str(PYTHON.parent / "py-spy"),
                "record",
                "-f",
                "raw",
                "-r",
                "200",
                "-p",
                str(pid),
                "-o",
                f"{out}.{name}.txt",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]
    time.sleep(1)  # attached before the load starts
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(60)


async def measure_paths(
    targets: list[Target],
    loads: dict[int, int],
    report: Report,
    profile: dict[str, int],
    out: Path | None,
    phases: Phases,
) -> None:
    for target in targets:
        with phases(f"loads_{target.name}"):
            # Warm: imports, caches, and connection pools grown to the concurrency measured next.
            await drive(target, concurrency=32, count=32)
            report.paths[target.name] = {}
            for concurrency, count in loads.items():
                with profiled(profile, out if target.name == "obdal" and concurrency == 32 else None):
                    result = await drive(target, concurrency=concurrency, count=count)
                report.paths[target.name][concurrency] = result
                print(f"  {target.name:<8} c={concurrency:<4} {json.dumps(result)}", flush=True)


async def measure_hold(obdal: Obdal, levels: list[int], report: Report) -> None:
    """Ascending levels on a fresh stack (Python keeps the memory it once used), until one fails."""
    await drive(obdal.target, concurrency=4, count=8)  # imports and first connections
    baseline = {name: psutil.Process(pid).memory_info().rss for name, pid in obdal.memory.items()}
    for streams in levels:
        result = await hold(obdal.target, obdal.memory, baseline, streams=streams, key=obdal.key)
        report.hold.append(result)
        print(f"  paced    n={streams:<5} {json.dumps(result)}", flush=True)
        if result["ttft_p99_ms"] > TTFT_LIMIT_S * 1000 or result["errors"]:
            break


def _ratios(report: Report, concurrency: int) -> dict[str, float]:
    """Obdal's streams/s over each other path's at ``concurrency``."""
    at = {name: loads[concurrency] for name, loads in report.paths.items() if concurrency in loads}
    obdal = at.get("obdal")
    if not obdal:
        return {}
    return {
        f"obdal_over_{name}_streams_per_s": round(obdal["streams_per_s"] / r["streams_per_s"], 3)
        for name, r in at.items()
        if name != "obdal" and r["streams_per_s"] > 0
    }


def summary(report: Report) -> dict[str, Any]:
    ratios = {concurrency: _ratios(report, concurrency) for concurrency in (32, 256)}
    ttft_overhead: dict[str, float] = {}
    if "obdal" in report.paths and 1 in report.paths["obdal"]:
        mine = report.paths["obdal"][1]["ttft_p50_ms"]
        for peer in ("rag_relay", "relay_aiohttp", "relay"):
            if 1 in report.paths.get(peer, {}):
                ttft_overhead[f"obdal_minus_{peer}_ttft_p50_ms_at_1"] = round(
                    mine - report.paths[peer][1]["ttft_p50_ms"], 1
                )
    held = [h for h in report.hold if h["ttft_p99_ms"] <= TTFT_LIMIT_S * 1000 and not h["errors"]]
    most = max(held, key=lambda h: h["streams"]) if held else None
    rag = "obdal_over_rag_relay_streams_per_s"
    targets = {
        "rag_relay_share_ge_0.75_at_32": ratios[32].get(rag, 0) >= 0.75,
        "rag_relay_share_ge_0.75_at_256": ratios[256].get(rag, 0) >= 0.75,
        "ttft_overhead_over_rag_relay_le_10ms": ttft_overhead.get(
            "obdal_minus_rag_relay_ttft_p50_ms_at_1", 1e9
        )
        <= 10,
        "litellm_multiple_ge_7": ratios[32].get("obdal_over_litellm_streams_per_s", 0) >= 7,
        "holds_1000_paced": bool(most and most["streams"] >= 1000),
        # Memory at the most streams opened, whether or not their TTFT held.
        "kb_per_stream_lt_50": bool(report.hold and report.hold[-1]["gateway_kb_per_stream"] < 50),
    }
    return {
        "ratios_at_32": ratios[32],
        "ratios_at_256": ratios[256],
        "ttft_overhead": ttft_overhead,
        "paced_streams_held": most["streams"] if most else 0,
        "targets": targets,
    }


def print_table(report: Report, figures: dict[str, Any]) -> None:
    print(
        f"\n{'path':<13} {'conc':>5} {'streams/s':>10} {'TTFT p50':>9} {'p99':>8} {'total p50':>10} "
        f"{'p99':>8} {'CPU ms/stream':>14} {'+servers':>9} {'errors':>7}"
    )
    for name, loads in report.paths.items():
        for concurrency, r in loads.items():
            servers = (
                f"{r['servers_cpu_s_per_stream'] * 1000:.2f}" if "servers_cpu_s_per_stream" in r else "-"
            )
            print(
                f"{name:<13} {concurrency:>5} {r['streams_per_s']:>10.1f} {r['ttft_p50_ms']:>9.1f} "
                f"{r['ttft_p99_ms']:>8.1f} {r['total_p50_ms']:>10.1f} {r['total_p99_ms']:>8.1f} "
                f"{r['cpu_s_per_stream'] * 1000:>14.2f} {servers:>9} {r['errors']:>7}"
            )
    print("\npaced answers held:", json.dumps(report.hold))
    print("ratios at concurrency 32:", json.dumps(figures["ratios_at_32"]))
    print("ratios at concurrency 256:", json.dumps(figures["ratios_at_256"]))
    print("time to first token over the peers at concurrency 1:", json.dumps(figures["ttft_overhead"]))
    print(f"paced streams held (TTFT p99 <= {TTFT_LIMIT_S * 1000:.0f} ms): {figures['paced_streams_held']}")
    print("targets:", json.dumps(figures["targets"]))


def plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, loads in report.paths.items():
        levels = sorted(loads)
        left.plot(levels, [loads[c]["streams_per_s"] for c in levels], marker="o", label=name)
        right.plot(levels, [loads[c]["ttft_p50_ms"] for c in levels], marker="o", label=name)
    for axis, label in ((left, "streams/s"), (right, "time to first token p50 (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("concurrent streams")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    left.legend()
    fig.suptitle(f"{CHUNKS}-chunk streams from a loopback upstream ({os.cpu_count()} cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


async def run_loads(
    targets: list[Target], obdal: Obdal, args: argparse.Namespace, report: Report, phases: Phases
) -> None:
    print(f"paced answers ({1 / PACED_INTERVAL_S:.0f} words/s), opened {RAMP_PER_S}/s:", flush=True)
    with phases("paced_hold"):
        await measure_hold(obdal, [100] if args.quick else [100, 250, 500, 1000], report)
    loads = {1: 8, 32: 32, 256: 256} if args.quick else {1: 40, 32: 480, 256: 1024}
    print("streams of", CHUNKS, "chunks:", flush=True)
    await measure_paths(targets, loads, report, obdal.memory, args.profile, phases)


def start_peers(
    stack: ExitStack, upstream: str, logs: Path, env: dict[str, str], skip: set[str]
) -> list[tuple[Target, subprocess.Popen[bytes]]]:
    """The bare and relay Litestar apps and the LiteLLM proxy, started (not yet ready)."""
    commands = {
        "bare": [str(PYTHON), "-m", "uvicorn", "peers:bare", "--app-dir", "bench"],
        "relay": [str(PYTHON), "-m", "uvicorn", "peers:relay", "--app-dir", "bench"],
        "relay_aiohttp": [str(PYTHON), "-m", "uvicorn", "peers:relay_aiohttp", "--app-dir", "bench"],
        "rag_relay": [str(PYTHON), "-m", "uvicorn", "peers:rag_relay", "--app-dir", "bench"],
        "litellm": [str(LITELLM), "--config", str(litellm_config(logs / "litellm.json", upstream))],
    }
    quiet = {"bare": ["--log-level", "warning", "--no-access-log"], "litellm": ["--num_workers", "1"]}
    (logs / "returns.md").write_text(DOCUMENT)
    peer_env = env | {
        "BENCH_UPSTREAM": upstream,
        "BENCH_RAG_DIR": str(logs / "rag"),
        "BENCH_RAG_DOC": str(logs / "returns.md"),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
    }
    started = []
    for name, command in commands.items():
        if name in skip:
            continue
        port = free_port()
        args = [*command, "--host", "127.0.0.1", "--port", str(port), *quiet.get(name, quiet["bare"])]
        proc = stack.enter_context(process(args, env=peer_env, log=logs / f"{name}.log"))
        model = "bench" if name == "litellm" else MODEL
        request = http_request(port, "/v1/chat/completions", chat_body() | {"model": model}, KEY)
        end = b"" if name == "bare" else b"[DONE]"
        started.append((Target(name, port, request, (proc.pid,), end=end), proc))
    return started


@dataclass(frozen=True)
class Obdal:
    target: Target
    memory: dict[str, int]  # the processes whose memory per stream is reported, by name
    url: str
    admin_token: str
    key: str


def start_obdal(
    stack: ExitStack, upstream: str, logs: Path, env: dict[str, str], settings: list[str], phases: Phases
) -> Obdal:
    """Two ``obdal up`` processes on servers of their own: the gateway (with metering and webhooks,
    whose status it reports), and one chat worker (and ingest)."""
    servers = [nats_server(logs), redis_server(logs), mongo_server(logs)]
    with phases("obdal_servers"):
        for server in servers:
            server.start()
            stack.callback(server.stop)
        # Killed first: SecantusDB takes ~2 s to stop cleanly, and its data here is thrown away.
        stack.callback(servers[2].kill)
    common = {
        "OBDAL_NATS_URL": servers[0].url,
        "OBDAL_REDIS_URL": servers[1].url,
        "OBDAL_MONGO_URL": servers[2].url,
        "OBDAL_DATA_DIR": str(logs / "data"),
        "OBDAL_CHAT_MODEL": f"openai/{MODEL}",
        "OBDAL_CHAT_API_BASE": upstream,
        "OBDAL_CHAT_API_KEY": "sk-up",
        "OBDAL_CHAT_CONCURRENCY": "4000",
        # One key carries the whole load here: its cap on answers in progress is not what is measured.
        "OBDAL_MAX_CONCURRENT_ANSWERS_PER_KEY": "100000",
        **dict(setting.split("=", 1) for setting in settings),
    }
    # The chat worker and ingest share the embedded index, which one process at a time may open.
    worker_env = env | common | {"OBDAL_SERVICES": "chat,ingest", "OBDAL_GATEWAY_PORT": str(free_port())}
    worker = stack.enter_context(
        process([str(PYTHON.parent / "obdal"), "up"], env=worker_env, log=logs / "chat.log")
    )
    with phases("obdal_gateway_ready"):
        url, admin_token = stack.enter_context(
            embedded_stack(**common, OBDAL_SERVICES="gateway,metering,webhooks")
        )
    gateway = next(
        p.pid for p in psutil.Process().children() if "up" in p.cmdline()[1:] and p.pid != worker.pid
    )
    port = int(url.rsplit(":", 1)[1])
    key = obdal_key(url, admin_token)
    request = http_request(port, "/v1/chat", {"message": QUESTION, "stream": True}, key)
    databases = tuple(s.process.pid for s in servers if s.process)
    memory = {"gateway": gateway, "worker": worker.pid}
    target = Target("obdal", port, request, (gateway, worker.pid), databases, end=b"event: end")
    return Obdal(target, memory, url, admin_token, key)


async def retrieval_and_ingest(*, quick: bool, phases: Phases) -> dict[str, Any]:
    """bench/retrieval.py and bench/ingest.py, run in this process once the servers are stopped: one
    interpreter start-up and one load of the embedder for both, instead of one each."""
    # Imported only now: the index and embedder modules would add their import to the start-up phase.
    import ingest
    import retrieval

    # Kept between runs: indexing SciFact with the MiniLM embedder takes minutes (the quick subset 15-30 s).
    index_dir = f"retrieval-quick-{QUICK_QUERIES}q-{QUICK_DOCS}d" if quick else "retrieval"
    subset = {"limit_queries": QUICK_QUERIES, "limit_docs": QUICK_DOCS} if quick else {}
    with phases("retrieval"):
        scores = await retrieval.evaluate(
            retrieval.DEFAULT_DATASET, data_dir=ROOT / ".bench" / index_dir, **subset
        )
    mode = scores["index"]["default_mode"]
    with phases("ingest"):
        formats = await ingest.run(1 if quick else 20)
    ingest.print_table(formats)
    chunks = sum(f["chunks"] for f in formats.values())
    return {
        "retrieval": {
            "mode": mode,
            **scores[mode],
            **{name: scores["index"][name] for name in ("documents", "queries", "chunks")},
            "index_s": scores["index"]["seconds"],
        },
        "ingest": {
            "chunks_per_s": round(chunks / sum(f["seconds"] for f in formats.values()), 1),
            **{f"{name}_chunks_per_s": f["chunks_per_s"] for name, f in formats.items()},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a reduced run (under three minutes)")
    parser.add_argument("--plot", type=Path, help="write the streams/s and TTFT plot (PNG) here")
    parser.add_argument(
        "--profile", type=Path, help="py-spy Obdal at concurrency 32: PATH.gateway.txt, PATH.worker.txt"
    )
    parser.add_argument(
        "--obdal-env", nargs="*", default=[], help="settings of the Obdal stack (OBDAL_X=value ...)"
    )
    parser.add_argument("--skip", default="", help="comma-separated paths not to run (e.g. litellm)")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if "litellm" not in skip and not LITELLM.exists():
        raise SystemExit(f"{LITELLM} is missing: run `make bench` (or pass --skip litellm)")
    logs = Path(tempfile.mkdtemp(prefix="obdal-stream-bench-"))
    port = free_port()
    upstream = f"http://127.0.0.1:{port}/v1"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBDAL_")}
    phases, report = Phases(), Report()
    with ExitStack() as stack:
        command = ["-m", "tests.upstream", "--port", str(port), "--chunks", str(CHUNKS)]
        paced = ["--paced-chunks", str(PACED_CHUNKS), "--paced-interval-s", str(PACED_INTERVAL_S)]
        with phases("upstream_ready"):
            up = stack.enter_context(process([str(PYTHON), *command, *paced], log=logs / "upstream.log"))
            wait_ready(f"{upstream}/models", up)
        peers = start_peers(stack, upstream, logs, env, skip)
        obdal = start_obdal(stack, upstream, logs, env, args.obdal_env, phases)  # while the peers start
        for target, proc in peers:
            with phases(f"{target.name}_ready"):
                wait_ready(f"http://127.0.0.1:{target.port}/", proc)
        targets = [target for target, _ in peers]
        if "obdal" not in skip:
            targets.append(obdal.target)
        # First, on the quiet stack: after the loads, metering would still be storing their usage.
        print("usage lag:", flush=True)
        with phases("usage_lag"):
            lag = usage_lag(obdal.url, obdal.admin_token, 5 if args.quick else 50)
        uvloop.run(run_loads(targets, obdal, args, report, phases))
        report.extra["usage_lag"] = lag
        with phases("teardown"):
            # All at once, then each waited for in turn (the servers after the services using them).
            kill([up.pid, *(proc.pid for _, proc in peers), *obdal.target.pids])
            stack.close()
    print("retrieval and ingest:", flush=True)
    report.extra |= asyncio.run(retrieval_and_ingest(quick=args.quick, phases=phases))
    figures = summary(report)
    print_table(report, figures)
    for name, value in report.extra.items():
        print(f"{name}: {json.dumps(value)}")
    if args.plot:
        plot(report, args.plot)
        print(f"plot written to {args.plot}")
    print(
        json.dumps(
            {
                "benchmark": "stream",
                "quick": args.quick,
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "cpus": os.cpu_count(),
                "chunks": CHUNKS,
                "paths": report.paths,
                "paced": report.hold,
                **figures,
                **report.extra,
                "phase_seconds": phases.total(),
            }
        )
    )


if __name__ == "__main__":
    main()
