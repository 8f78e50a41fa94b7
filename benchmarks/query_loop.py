"""End-to-end text query latency: a query string in, hits with their text out (``Retriever.search``).

Run: ``nice python benchmarks/query_loop.py [--sizes 2000,10000,100000]`` (or ``search.py --query-loop``) →
``benchmarks/results/query_loop.json`` and ``query_loop.md``.

What a user of the library, the RAG pipeline or ``mindgap search`` waits for. The query is
encoded with the bundled model (PyTorch, CPU), the store is scanned, the corrector scores and
the hits' items are fetched. The store-level benchmarks (``search.py --gap-overhead``,
``--hybrid``) give the encoder the query vector and time only the search.

Corpus: the hybrid benchmark's (:func:`search_hybrid.worded_corpus`). These are real
offline-model embeddings grown to N items, each text carrying a Flickr8k caption and every
other image a caption as its title, with a tantivy side index built from the store. The queries
are caption 4 of each photo.

Per size and per setting there is one fresh process:

* ``0``: the bundled model in PyTorch, ``MINDGAP_QUERY_THREADS=0``: PyTorch's own thread count
  (2 here), as before that setting existed;
* ``1``: the same with the default, one PyTorch thread for a single query text;
* ``onnx-spin`` (with ``--onnx``): the bundled model exported to ONNX (fp32), run with ONNX
  Runtime's threads busy-waiting between runs (``spin=1``, ONNX Runtime's default);
* ``onnx``: the same export with mindgap's default, ``spin=0``.

Each process times ``--rounds`` rounds of ``--queries`` queries. Within a round it alternates
three searches:

* ``naive`` (dense, no correction);
* ``calibrated`` (dense, the store default ``auto``'s method);
* ``hybrid`` (the calibrated fusion with BM25).

It also times the encoder alone (``embed_query`` in a loop with no search between calls).
The settings run in separate processes because the encoder's and OpenBLAS's worker threads
carry their state from one call to the next.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results"
MODES = ("naive", "calibrated", "hybrid")


def worker(n: int, queries: int, rounds: int, encoder: str = "") -> dict[str, Any]:
    """One size, one setting (``MINDGAP_QUERY_THREADS`` from the environment; ``encoder``: an
    ``onnx:`` spec of the bundled model's export, else the bundled model itself), in this process."""
    sys.path.insert(0, str(HERE))
    from search import K, base_embeddings, gap_retriever, load_avg
    from search_hybrid import worded_corpus

    from mindgap import Retriever
    from mindgap.encoders import load_encoder

    base = base_embeddings()
    q = np.ascontiguousarray(base["queries"])
    items, vecs, qtext = worded_corpus(base, n)
    r = gap_retriever(items, vecs, q[:200], gap="calibrated")
    if encoder:  # the same model exported: the store's vectors stand, its manifest names the export
        enc = load_encoder(encoder)
        m = r.store.manifest
        m.encoder_spec = enc.name
        r.store.save_manifest(m)
        r = Retriever(r.store, encoder=enc)
    r.enable_lexical()
    r.encoder  # load the model before timing  # noqa: B018
    calls = {"naive": lambda t: r.search(t, k=K, gap="naive"),
             "calibrated": lambda t: r.search(t, k=K, gap="calibrated"),
             "hybrid": lambda t: r.search(t, k=K, gap="calibrated", hybrid=True)}
    for fn in calls.values():
        fn(qtext[0])
    row: dict[str, Any] = {"items": n, "query_threads": os.environ.get("MINDGAP_QUERY_THREADS", ""),
                           "encoder": r.encoder.name, "load_before": load_avg(), "rounds": []}
    import torch

    row["torch_threads"] = torch.get_num_threads()
    for rd in range(rounds):
        times: dict[str, list[float]] = {m: [] for m in (*MODES, "encode")}
        for i in range(queries):
            t = qtext[(rd * queries + i) % len(qtext)]
            order = list(MODES) if i % 2 else list(MODES)[::-1]
            for m in order:
                t0 = time.perf_counter()
                calls[m](t)
                times[m].append(time.perf_counter() - t0)
        for i in range(queries):  # the encoder alone: no scan between its calls
            t0 = time.perf_counter()
            r.embed_query(qtext[(rd * queries + i) % len(qtext)])
            times["encode"].append(time.perf_counter() - t0)
        row["rounds"].append({m: {"p50_ms": round(1e3 * float(np.median(v)), 3),
                                  "p10_ms": round(1e3 * float(np.percentile(v, 10)), 3)} for m, v in times.items()})
    row["load_after"] = load_avg()
    for m in (*MODES, "encode"):
        row[m] = {k: round(float(np.median([x[m][k] for x in row["rounds"]])), 3) for k in ("p50_ms", "p10_ms")}
    row["ratio_calibrated_naive"] = round(row["calibrated"]["p50_ms"] / row["naive"]["p50_ms"], 3)
    row["ratio_hybrid_dense"] = round(row["hybrid"]["p50_ms"] / row["calibrated"]["p50_ms"], 3)
    return row


LABELS = {"0": "PyTorch, MINDGAP_QUERY_THREADS=0 (PyTorch's own threads)",
          "1": "PyTorch, MINDGAP_QUERY_THREADS=1 (default)",
          "onnx-spin": "ONNX fp32, spin=1 (ONNX Runtime's default)", "onnx": "ONNX fp32, spin=0 (default)"}
#: (before, after) pairs of settings compared in the speed-up table
PAIRS = (("0", "1"), ("onnx-spin", "onnx"))


def markdown(res: dict[str, Any]) -> str:
    from mindgap.eval.reports import md_table

    rows, speed = [], []
    for n, by in res["sizes"].items():
        for key, r in by.items():
            rows.append([n, LABELS.get(key, key), r["torch_threads"], r["encode"]["p50_ms"], r["naive"]["p50_ms"],
                         r["calibrated"]["p50_ms"], r["hybrid"]["p50_ms"], r["ratio_calibrated_naive"],
                         r["ratio_hybrid_dense"], f"{r['load_before'][0]:.1f} / {r['load_after'][0]:.1f}"])
        for a, b in PAIRS:
            if a in by and b in by:
                speed.append([n, f"{LABELS[a]} → {LABELS[b]}",
                              *(round(by[a][m]["p50_ms"] / by[b][m]["p50_ms"], 2) for m in MODES)])
    return "\n".join([
        "# End-to-end text query latency (benchmarks/query_loop.py)", "",
        "`Retriever.search(text)`: encode the query with the bundled model (PyTorch, CPU; or its ONNX export), scan "
        "the exact store, score, fetch the hits' items; k = 10, both modalities merged. Corpus: the hybrid "
        "benchmark's (real offline-model embeddings grown to N items, Flickr8k captions as the items' words, a tantivy "
        "side index). Median over rounds of each round's p50; the three searches alternate call by call in one "
        "process, one process per setting; `encode alone` = the encoder in a loop with no search between its calls. "
        f"Machine: {res['env']['cores']} cores, {res['env']['cpu']}.", "",
        md_table(["items", "setting", "torch threads", "encode alone p50 ms", "naive p50 ms",
                  "calibrated p50 ms", "hybrid p50 ms", "calibrated ÷ naive", "hybrid ÷ calibrated dense",
                  "load before / after"], rows), "",
        "Speed-up of mindgap's default over the encoder's own threading, p50 ÷ p50:", "",
        md_table(["items", "settings", "naive", "calibrated", "hybrid"], speed), ""])


def onnx_export(cache: Path) -> Path:
    """The bundled model exported to ONNX (fp32) under ``cache``, once per model."""
    from mindgap.encoders import DEFAULT_OFFLINE_SPEC
    from mindgap.encoders.export import export_onnx

    d = cache / f"onnx-{DEFAULT_OFFLINE_SPEC.replace(':', '-')}" / "onnx"
    if not (d / "mindgap_onnx.json").exists():
        export_onnx(DEFAULT_OFFLINE_SPEC, d, int8=False)
    return d


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="2000,10000,100000")
    ap.add_argument("--queries", type=int, default=150, help="queries per round (each searched 3 ways)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settings", default="0,1", help="MINDGAP_QUERY_THREADS values, one process each")
    ap.add_argument("--onnx", default="auto", metavar="DIR",
                    help="also time the bundled model's ONNX export in DIR with spin=1 and spin=0 (auto: export it "
                         "once under runs/bench-cache; none: skip)")
    ap.add_argument("--encoder", default="", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(OUT / "query_loop.json"))
    ap.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.queries, args.rounds, args.encoder)))
        return 0
    sys.path.insert(0, str(HERE))
    from search import CACHE, environment

    settings = [(qt, {"MINDGAP_QUERY_THREADS": qt}, "") for qt in [x.strip() for x in args.settings.split(",")
                                                                   if x.strip()]]
    if args.onnx != "none":
        d = Path(args.onnx) if args.onnx != "auto" else onnx_export(CACHE)
        settings += [("onnx-spin", {}, f"onnx:{d}?spin=1"), ("onnx", {}, f"onnx:{d}")]
    res: dict[str, Any] = {"env": environment(), "queries": args.queries, "rounds": args.rounds, "sizes": {}}
    for n in [int(x) for x in args.sizes.split(",") if x]:
        for key, extra, encoder in settings:
            got = subprocess.run([sys.executable, __file__, "--worker", str(n), "--queries", str(args.queries),
                                  "--rounds", str(args.rounds), "--encoder", encoder],
                                 env={**os.environ, **extra}, capture_output=True, text=True)
            if got.returncode != 0:
                sys.stderr.write(got.stderr)
                return got.returncode
            row = json.loads(got.stdout.strip().splitlines()[-1])
            res["sizes"].setdefault(str(n), {})[key] = row
            print(json.dumps({n: {key: {m: row[m] for m in (*MODES, "encode")}}}), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
