"""Generator speed: load time (GGUF conversion vs cache), tokens/s, prompt processing, server overhead.

Run: ``python benchmarks/generators.py [--repeats 3] [--threads N] [--backends transformers,llama_cpp]``
→ ``benchmarks/results/generators.json`` and ``.md``.

Measured on whatever machine runs it (the JSON records CPU count, torch threads and the
load average, since other jobs on a shared machine slow every number down):

* ``local:smollm2`` load: *cold* (de-quantise the GGUF with transformers into a fresh cache
  dir) and *warm* (from the safetensors cache), each in a fresh subprocess so imports count;
* decode speed: completion tokens / s on a short prompt (64 new tokens, greedy);
* RAG-sized prompt: ~1,500-token prompt (10 MMQA-like passages), 32 new tokens — prefill
  dominates; reported as prompt tokens / s and the end-to-end seconds;
* the same generator through :mod:`mindgap.rag.openai_server` on 127.0.0.1 (HTTP overhead);
* ``extractive``: seconds per answer on the RAG-sized prompt.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results"
SHORT = [{"role": "user", "content": "Write a short story about a cat who learns to sail."}]
PASSAGE = ("The A.P. Warrior was a Thoroughbred racehorse trained in California. He finished 18th in the "
           "Kentucky Derby at Churchill Downs, a race of one and one-quarter miles for three-year-old horses, "
           "whose winner is draped in a blanket of 554 roses and whose traditional drink is the mint julep. ")


def rag_messages(n: int = 10) -> list[dict]:
    refs = "\n".join(f"Reference text {i}: {PASSAGE * 2}" for i in range(1, n + 1))
    return [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Answer the following question referencing the following texts or images.\n"
                                        f"Question: How many roses are in the blanket?\n{refs}"}]


LOAD_SNIPPET = """
import json, sys, time
t0 = time.perf_counter()
from mindgap.rag import load_generator
g = load_generator("local:smollm2", backend=sys.argv[1], **({{"threads": int(sys.argv[2])}} if sys.argv[2] != "0" else {{}}))
g.load()
print(json.dumps({{"wall": time.perf_counter() - t0, "load_seconds": g.load_seconds, "source": g.load_source}}))
"""


def timed_load(backend: str, threads: int, cache: str) -> dict:
    env = dict(os.environ, MINDGAP_CACHE=cache)
    out = subprocess.run([sys.executable, "-c", LOAD_SNIPPET.format(), backend, str(threads)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def median(xs: list[float]) -> float:
    return round(statistics.median(xs), 3)


def bench_backend(backend: str, repeats: int, threads: int) -> dict:
    from mindgap.rag import load_generator
    from mindgap.rag.openai_server import create_app, serve_in_thread

    res: dict = {"backend": backend}
    if backend == "transformers":
        with tempfile.TemporaryDirectory() as cache:
            cold = timed_load(backend, threads, cache)
            warm = timed_load(backend, threads, cache)
        res["load_cold"] = {"seconds_in_load": round(cold["load_seconds"], 2), "wall_with_imports": round(cold["wall"], 2),
                            "source": cold["source"]}
        res["load_warm"] = {"seconds_in_load": round(warm["load_seconds"], 2), "wall_with_imports": round(warm["wall"], 2),
                            "source": warm["source"]}
    opts = {"backend": backend, **({"threads": threads} if threads else {})}
    g = load_generator("local:smollm2", **opts)
    t0 = time.perf_counter()
    g.load()
    res.setdefault("load_in_process", round(time.perf_counter() - t0, 2))
    g.generate(SHORT, max_tokens=8)  # warm-up
    runs = [g.generate(SHORT, max_tokens=64) for _ in range(repeats)]
    res["decode"] = {"new_tokens": runs[0].tokens, "prompt_tokens": runs[0].prompt_tokens,
                     "seconds": median([r.seconds for r in runs]), "tokens_per_s": median([r.tokens_per_s for r in runs])}
    msgs = rag_messages()
    rag = [g.generate(msgs, max_tokens=32) for _ in range(repeats)]
    pt = rag[0].prompt_tokens
    secs = median([r.seconds for r in rag])
    res["rag_prompt"] = {"prompt_tokens": pt, "new_tokens": rag[0].tokens, "seconds": secs,
                         "end_to_end_tokens_per_s": median([r.tokens_per_s for r in rag])}
    with serve_in_thread(create_app(g, model_name="smollm2")) as srv:
        client = load_generator(f"openai:smollm2@{srv.base_url}", timeout=300, max_retries=0)
        client.generate(SHORT, max_tokens=8)
        http = [client.generate(SHORT, max_tokens=64) for _ in range(repeats)]
    res["via_openai_server"] = {"seconds": median([r.seconds for r in http]),
                                "overhead_seconds": round(median([r.seconds for r in http]) - res["decode"]["seconds"], 3),
                                "same_text_as_direct": http[0].text == runs[0].text}
    return res


def bench_extractive(repeats: int) -> dict:
    from mindgap.rag import load_generator

    g = load_generator("extractive")
    msgs = rag_messages()
    runs = [g.generate(msgs) for _ in range(max(repeats, 5))]
    return {"seconds_per_answer": round(statistics.median(r.seconds for r in runs), 5), "answer": runs[0].text}


def to_markdown(r: dict) -> str:
    env = r["environment"]
    lines = ["# Generator benchmarks", "",
             f"Machine: {env['cpus']} CPUs, torch threads {env['torch_threads']}, load average before/after "
             f"{env['loadavg_before']} / {env['loadavg_after']} (a shared machine: other jobs slow these numbers). "
             f"Median of {r['repeats']} runs, greedy decoding.", "",
             "| backend | load cold (GGUF→fp32) | load warm (cache) | decode tok/s | RAG prompt (tokens) | "
             "RAG answer s (32 new) | via OpenAI server s (64 new) | HTTP overhead s |",
             "|---|---|---|---|---|---|---|---|"]
    for b in r["backends"]:
        if "error" in b:
            lines.append(f"| {b['backend']} | not available: {b['error']} | | | | | | |")
            continue
        cold = b.get("load_cold", {}).get("wall_with_imports", b.get("load_in_process"))
        warm = b.get("load_warm", {}).get("wall_with_imports", "–")
        lines.append(f"| {b['backend']} | {cold} s | {warm} s | {b['decode']['tokens_per_s']} | "
                     f"{b['rag_prompt']['prompt_tokens']} | {b['rag_prompt']['seconds']} | "
                     f"{b['via_openai_server']['seconds']} | {b['via_openai_server']['overhead_seconds']} |")
    lines += ["", f"extractive (no LM): {r['extractive']['seconds_per_answer'] * 1000:.2f} ms per answer on the same "
              "RAG prompt.", ""]
    lines += [f"- {n}" for n in r.get("notes", [])]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch / llama.cpp threads (0 = library default)")
    ap.add_argument("--backends", default="transformers,llama_cpp")
    ap.add_argument("--note", action="append", default=[], help="a line added to the report (e.g. install times)")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    import importlib.util

    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    res = {"repeats": a.repeats, "environment": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                                 "loadavg_before": [round(x, 2) for x in os.getloadavg()],
                                                 "python": sys.version.split()[0], "torch": torch.__version__}}
    res["backends"] = []
    for b in [x.strip() for x in a.backends.split(",") if x.strip()]:
        if b == "llama_cpp" and importlib.util.find_spec("llama_cpp") is None:
            res["backends"].append({"backend": b, "error": "llama-cpp-python not installed"})
            continue
        res["backends"].append(bench_backend(b, a.repeats, a.threads))
    res["extractive"] = bench_extractive(a.repeats)
    res["environment"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    res["notes"] = list(a.note)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "generators.json").write_text(json.dumps(res, indent=2) + "\n")
    (a.out / "generators.md").write_text(to_markdown(res))
    print(to_markdown(res))


if __name__ == "__main__":
    main()
