"""HTTP load test of ``mindgap serve`` on loopback: throughput, latency, errors, memory.

Run: ``python benchmarks/load.py [--clients 50] [--seconds 30] [--no-compare]``
→ ``benchmarks/results/load.json`` and ``.md``.

Setup: a real store of Flickr8k *test* data (``--images`` images + two captions each as
text passages, offline model (``DEFAULT_OFFLINE_SPEC``), ``zscore`` fitted on the model's
held-out calib images), built once into ``runs/load-store`` (git-ignored). The server is the
real CLI (``mindgap serve``) in its own process; the clients are ``--clients`` asyncio
tasks with one HTTP/1.1 keep-alive connection each, in this process, for ``--seconds``
after a short warm-up. Traffic mix per request: 70 % ``GET /search`` (a held-out caption as
the query, ``gap=zscore``, ``k=10``), 20 % ``POST /embed/text`` (one caption), 10 %
``POST /search`` with an image upload (a Flickr8k test JPEG). Every request must answer 200.

Server memory is sampled every second from ``/proc/<pid>/status`` (VmRSS). By default the
test runs twice — request batching on (``--max-batch 64``) and off (``--max-batch 1``) —
to show what batching buys. Clients and server share this machine's CPUs (2 cores here);
the JSON records the CPU count and load average: other jobs slow every wall-clock number,
so the server's CPU time per request (``/proc/<pid>/stat``) and the encoder's CPU cost per
batch size are recorded too — those do not depend on what else runs. Like ``mindgap
serve`` itself, the run disables oneDNN's primitive cache (see ``cli/serve_cmd.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mindgap.encoders import DEFAULT_OFFLINE_SPEC

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results"
STORE = ROOT / "runs" / "load-store"
MIX = (("search_text", 0.7), ("embed_text", 0.2), ("search_image", 0.1))


def build_store(n_images: int) -> str:
    """The benchmark store (cached in runs/; rebuilt when the size changes)."""
    from mindgap.datasets import load_caption_set
    from mindgap.encoders import load_encoder
    from mindgap.retriever import Retriever
    from mindgap.types import Item, Modality

    sys.path.insert(0, str(ROOT / "tests"))
    from _server_kit import calib_fit

    stamp = STORE / "built.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("images") == n_images:
        return f"exact:{STORE}"
    shutil.rmtree(STORE, ignore_errors=True)
    enc = load_encoder(DEFAULT_OFFLINE_SPEC)
    recs = load_caption_set("flickr8k_224", split="test")[:n_images]
    r = Retriever(f"exact:{STORE}", encoder=enc)
    items = [Item(f"img:{x.image_id}", Modality.IMAGE, uri=str(x.path)) for x in recs]
    items += [Item(f"txt:{x.image_id}:{j}", Modality.TEXT, text=x.captions[j]) for x in recs for j in range(2)]
    r.index(items, progress=True)
    r.fit_gap("zscore", calib_fit(r, n=200), make_default=True)
    stamp.write_text(json.dumps({"images": n_images}))
    return f"exact:{STORE}"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def encoder_cpu_cost(queries: list[str]) -> dict:
    """CPU ms per ``encode_text`` call by batch size, in this process (contention-proof: CPU, not wall time)."""
    import torch

    from mindgap.encoders import load_encoder

    enc = load_encoder(DEFAULT_OFFLINE_SPEC)
    torch.set_num_threads(1)
    rng = random.Random(0)
    enc.encode_text(queries[:8], show_progress=False)
    out = {}
    for n in (1, 8, 32):
        reps = 20
        t0 = time.process_time()
        for _ in range(reps):
            enc.encode_text(rng.sample(queries, n), show_progress=False)
        ms = (time.process_time() - t0) / reps * 1000
        out[str(n)] = {"cpu_ms_per_call": round(ms, 1), "cpu_ms_per_text": round(ms / n, 2)}
    return out


def start_server(store: str, port: int, max_batch: int) -> subprocess.Popen:
    import httpx

    cmd = [sys.executable, "-c", "from mindgap.cli import run; run()", "serve", store, "--port", str(port),
           "--max-batch", str(max_batch), "--log-level", "error"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 300:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start")


async def client(i: int, base: str, stop_at: float, record_from: float, queries: list[str], images: list[bytes],
                 out: list, errors: list) -> None:
    import httpx

    rng = random.Random(i)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=1)) as c:
        while True:
            now = time.perf_counter()
            if now >= stop_at:
                return
            kind = rng.choices(kinds, weights)[0]
            q = rng.choice(queries)
            t0 = time.perf_counter()
            try:
                if kind == "search_text":
                    r = await c.get("/search", params={"query": q, "k": 10, "gap": "zscore"})
                elif kind == "embed_text":
                    r = await c.post("/embed/text", json={"texts": [q]})
                else:
                    r = await c.post("/search", files={"image": ("q.jpg", rng.choice(images), "image/jpeg")},
                                     data={"k": "10", "gap": "naive"})
                ok = r.status_code == 200
                if not ok:
                    errors.append(f"{kind}: HTTP {r.status_code} {r.text[:200]}")
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                ok = False
                errors.append(f"{kind}: {type(exc).__name__}: {exc}")
            t1 = time.perf_counter()
            if t0 >= record_from:
                out.append((kind, t1 - t0, ok))


async def drive(base: str, clients: int, seconds: float, warmup: float, queries: list[str],
                images: list[bytes]) -> tuple[list, list, float]:
    out: list = []
    errors: list = []
    start = time.perf_counter()
    record_from = start + warmup
    stop_at = record_from + seconds
    await asyncio.gather(*[client(i, base, stop_at, record_from, queries, images, out, errors)
                           for i in range(clients)])
    return out, errors, time.perf_counter() - record_from


def summarise(samples: list, wall: float) -> dict:
    def block(rows: list) -> dict:
        lat = np.array([d for _, d, _ in rows]) * 1000
        if not len(lat):
            return {"requests": 0}
        return {"requests": len(rows), "rps": round(len(rows) / wall, 1),
                "p50_ms": round(float(np.percentile(lat, 50)), 1), "p90_ms": round(float(np.percentile(lat, 90)), 1),
                "p99_ms": round(float(np.percentile(lat, 99)), 1), "max_ms": round(float(lat.max()), 1),
                "errors": sum(not ok for _, _, ok in rows)}

    out = {"all": block(samples)}
    for kind, _ in MIX:
        out[kind] = block([s for s in samples if s[0] == kind])
    return out


def run_once(store: str, clients: int, seconds: float, warmup: float, max_batch: int, queries: list[str],
             images: list[bytes]) -> dict:
    import httpx

    from mindgap.server.threaded import free_port

    port = free_port()
    proc = start_server(store, port, max_batch)
    base = f"http://127.0.0.1:{port}"
    mem: list[tuple[float, float]] = []
    stop = False

    async def sampler() -> None:
        t0 = time.perf_counter()
        while not stop:
            mem.append((round(time.perf_counter() - t0, 1), round(rss_mb(proc.pid), 1)))
            await asyncio.sleep(1.0)

    cpu: dict[str, float] = {}

    async def mark_cpu() -> None:
        await asyncio.sleep(warmup)
        cpu["start"] = cpu_seconds(proc.pid)

    async def main() -> tuple:
        nonlocal stop
        task = asyncio.create_task(sampler())
        marker = asyncio.create_task(mark_cpu())
        res = await drive(base, clients, seconds, warmup, queries, images)
        cpu["end"] = cpu_seconds(proc.pid)
        stop = True
        await task
        await marker
        return res

    try:
        rss_idle = rss_mb(proc.pid)
        samples, errors, wall = asyncio.run(main())
        stats = httpx.get(base + "/stats", timeout=30).json()["server"]
        alive = httpx.get(base + "/healthz", timeout=10).status_code == 200
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    server_cpu = cpu.get("end", 0.0) - cpu.get("start", 0.0)
    rss = [m for _, m in mem]
    after_warm = [m for t, m in mem if t >= warmup] or rss
    half = len(after_warm) // 2
    return {
        "max_batch": max_batch, "clients": clients, "seconds": round(wall, 2), "warmup_s": warmup,
        "latency": summarise(samples, wall), "errors": len(errors), "error_examples": errors[:5],
        "server_alive_after": alive, "batching": stats.get("batching"),
        "server_cpu_s": round(server_cpu, 2),
        "server_cpu_ms_per_request": round(1000 * server_cpu / max(1, len(samples)), 1),
        "server_cpu_share": round(server_cpu / wall, 2),
        "memory_mb": {"idle": round(rss_idle, 1), "start": after_warm[0], "end": after_warm[-1],
                      "max": max(rss), "first_half_mean": round(float(np.mean(after_warm[:half] or after_warm)), 1),
                      "second_half_mean": round(float(np.mean(after_warm[half:])), 1), "samples": mem},
    }


def write_md(res: dict, path: Path) -> None:
    lines = [f"# Load test: `mindgap serve` on loopback ({res['config']['clients']} clients × "
             f"{res['config']['seconds']} s)", "",
             f"Store: {res['config']['store_items']} (Flickr8k test, offline model), mix "
             + ", ".join(f"{int(w * 100)} % {k}" for k, w in MIX)
             + f". Machine: {res['machine']['cpus']} CPUs (clients and server share them), load average before "
             f"{res['machine']['loadavg_before']}. Command: `{res['config']['command']}`.", "",
             "| batching | requests | req/s | p50 ms | p90 ms | p99 ms | errors | requests / encoder call | "
             "server CPU ms / request | server CPU share | RSS start → end (max) MB | RSS 1st → 2nd half MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in res["runs"]:
        a, m, b = run["latency"]["all"], run["memory_mb"], run["batching"] or {}
        lines.append(f"| max_batch={run['max_batch']} | {a['requests']} | {a['rps']} | {a['p50_ms']} | {a['p90_ms']} | "
                     f"{a['p99_ms']} | {run['errors']} | {b.get('mean_requests_per_call', '–')} | "
                     f"{run['server_cpu_ms_per_request']} | {run['server_cpu_share']} | "
                     f"{m['start']} → {m['end']} ({m['max']}) | {m['first_half_mean']} → {m['second_half_mean']} |")
    enc = res.get("encoder_cpu_ms")
    if enc:
        lines += ["", "Encoder cost by batch size (this process, CPU time, 1 thread): "
                  + ", ".join(f"batch {n}: {v['cpu_ms_per_call']} ms/call = {v['cpu_ms_per_text']} ms/text"
                              for n, v in enc.items()) + "."]
    lines += ["", "Per endpoint (first run):", "", "| endpoint | requests | req/s | p50 ms | p99 ms | errors |",
              "|---|---|---|---|---|---|"]
    first = res["runs"][0]["latency"]
    for k, _ in MIX:
        e = first[k]
        if e.get("requests"):
            lines.append(f"| {k} | {e['requests']} | {e['rps']} | {e['p50_ms']} | {e['p99_ms']} | {e['errors']} |")
    lines += ["", "Wall-clock numbers depend on the share of the machine the server gets (\"server CPU share\": "
              "CPU-seconds the server used per second of the run; 2.0 = both cores); CPU ms per request is the "
              "server's own cost and does not depend on other jobs. Memory is the server process's RSS, sampled "
              "every second after warm-up. `mindgap serve` turns oneDNN's primitive cache off (one cached primitive "
              "per tensor shape made RSS climb ~300 MB; see `cli/serve_cmd.py`).", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--images", type=int, default=300, help="Flickr8k test images in the store (+2 captions each).")
    ap.add_argument("--no-compare", action="store_true", help="Only the batched run.")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    for var in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY"):
        os.environ.setdefault(var, "0")  # as `mindgap serve` does (before PyTorch loads)

    from mindgap.datasets import load_caption_set

    store = build_store(args.images)
    recs = load_caption_set("flickr8k_224", split="test")
    queries = [x.captions[4] for x in recs[: args.images]]  # unseen captions of stored images
    images = [x.path.read_bytes() for x in recs[args.images: args.images + 20]]
    enc_cost = encoder_cpu_cost(queries)
    load_before = os.getloadavg()
    runs = [run_once(store, args.clients, args.seconds, args.warmup, 64, queries, images)]
    if not args.no_compare:
        runs.append(run_once(store, args.clients, args.seconds, args.warmup, 1, queries, images))
    res = {
        "config": {"clients": args.clients, "seconds": args.seconds, "warmup_s": args.warmup, "mix": dict(MIX),
                   "store_items": f"{args.images} images + {2 * args.images} texts",
                   "command": "python benchmarks/load.py " + " ".join(sys.argv[1:])},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "encoder_cpu_ms": enc_cost,
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load.json").write_text(json.dumps(res, indent=1))
    write_md(res, args.out / "load.md")
    for run in runs:
        a = run["latency"]["all"]
        print(f"max_batch={run['max_batch']}: {a['requests']} requests, {a['rps']} req/s, p50 {a['p50_ms']} ms, "
              f"p99 {a['p99_ms']} ms, errors {run['errors']}, RSS {run['memory_mb']['start']} → "
              f"{run['memory_mb']['end']} MB, server CPU {run['server_cpu_ms_per_request']} ms/request")
    print(f"wrote {args.out / 'load.json'} and load.md")


if __name__ == "__main__":
    main()
