"""Hybrid vs. dense search latency and the lexical index build cost (issue 15); ``search.py --hybrid``.

Corpus: :func:`search.make_corpus` (real offline-model embeddings of Flickr8k grown to N items,
¾ texts, ¼ images) with real words: each text item carries a Flickr8k caption (captions 0–3 of
the test + val photos, cycled), every other image a caption as its title (the rest carry no
text, as photos do). Queries: caption 4 of each photo (its real embedding and its string).

Per size: the lexical side index built from the store (``Retriever.enable_lexical``: in memory)
and on disk (build seconds, bytes); then ``calibrated`` dense vs. hybrid (``hybrid=True``,
the calibrated fusion) single queries timed alternately in one process (p50 and p10), and
batches of 100 (median and best); the ratio hybrid / dense is the target (≤ 1.5 at 100K).
"""

from __future__ import annotations

import gc
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def texts_for(n_text: int, n_img: int) -> tuple[list[str], list[str | None], list[str]]:
    from mindgap.datasets import load_caption_set, shared_data_dir

    root = shared_data_dir() / "flickr8k_224"
    recs = load_caption_set(root, split="test") + load_caption_set(root, split="val")
    caps = [r.captions[i] for i in range(4) for r in recs]
    text = [caps[i % len(caps)] for i in range(n_text)]
    titles = [caps[(7 * i) % len(caps)] if i % 2 == 0 else None for i in range(n_img)]
    return text, titles, [r.captions[4] for r in recs]


def worded_corpus(base: dict[str, np.ndarray], n: int) -> tuple[list[Any], np.ndarray, list[str]]:
    """:func:`search.make_corpus` of ``n`` items with real words (module docstring) → ``(items,
    vectors, query strings)``; the query strings match ``base["queries"]`` row for row."""
    from search import make_corpus

    from mindgap.types import Item, Modality

    items, vecs = make_corpus(base, n)
    n_img = sum(it.modality == Modality.IMAGE for it in items)
    text, titles, qtext = texts_for(len(items) - n_img, n_img)
    ti = ii = 0
    fixed = []
    for it in items:
        if it.modality == Modality.TEXT:
            fixed.append(Item(it.id, it.modality, text=text[ti]))
            ti += 1
        else:
            fixed.append(Item(it.id, it.modality, uri=f"/img/{ii:07d}.jpg", text=titles[ii]))
            ii += 1
    return fixed, vecs, qtext


def hybrid_overhead(base: dict[str, np.ndarray], args: Any) -> dict[str, Any]:
    """Per size in ``args.sizes`` (see the module docstring); ``args.blas_threads`` (> 0) limits numpy's
    BLAS to that many threads for the whole run (on 2 cores, a 2-thread BLAS scan leaves the BM25
    thread no free core)."""
    from search import with_blas_threads

    return with_blas_threads(int(getattr(args, "blas_threads", 0) or 0), _hybrid_overhead, base, args)


def _hybrid_overhead(base: dict[str, np.ndarray], args: Any) -> dict[str, Any]:
    from search import K, gap_retriever, load_avg

    from mindgap.lexical import LexicalIndex

    q = np.ascontiguousarray(base["queries"][: args.queries])
    out: dict[str, Any] = {"k": K, "dense": "calibrated", "hybrid": "calibrated fusion (hybrid=True)", "sizes": {}}
    for n in [int(x) for x in args.sizes.split(",") if x]:
        fixed, vecs, qtext = worded_corpus(base, n)
        qtext = qtext[: len(q)]
        r = gap_retriever(fixed, vecs, q, gap="calibrated")
        st = r.store
        row: dict[str, Any] = {"load_before": load_avg()}
        t = time.perf_counter()
        r.enable_lexical()
        row["lexical_build_memory_s"] = round(time.perf_counter() - t, 3)
        with tempfile.TemporaryDirectory(dir=args.tmp) as d:
            t = time.perf_counter()
            lex = LexicalIndex(Path(d) / "lexical")
            lex.sync(st)
            row["lexical_build_disk_s"] = round(time.perf_counter() - t, 3)
            row["lexical_bytes"] = lex.size_bytes()
            t = time.perf_counter()
            lex.add(fixed[:64])  # one ingestion batch (already indexed ids are replaced)
            row["lexical_add_batch64_s"] = round(time.perf_counter() - t, 4)
            del lex
        modes = {"dense": None, "hybrid": True}
        for m, h in modes.items():
            r.search_vectors(q[:2], k=K, gap="calibrated", fetch=False, texts=qtext[:2], hybrid=h)
        single: dict[str, list[float]] = {m: [] for m in modes}
        for i in range(args.single):
            for m in (list(modes) if i % 2 else list(modes)[::-1]):
                t = time.perf_counter()
                r.search_vectors(q[i % len(q)][None], k=K, gap="calibrated", fetch=False,
                                 texts=[qtext[i % len(q)]], hybrid=modes[m])
                single[m].append(time.perf_counter() - t)
        batch: dict[str, list[float]] = {m: [] for m in modes}
        bs = args.batch
        for i in range(6):
            for m in (list(modes) if i % 2 else list(modes)[::-1]):
                t = time.perf_counter()
                r.search_vectors(q[:bs], k=K, gap="calibrated", fetch=False, texts=qtext[:bs], hybrid=modes[m])
                batch[m].append(time.perf_counter() - t)
        for m in modes:
            row[m] = {"single_p50_ms": round(1e3 * float(np.median(single[m])), 3),
                      "single_p10_ms": round(1e3 * float(np.percentile(single[m], 10)), 3),
                      "batch_ms": round(1e3 * float(np.median(batch[m])), 2),
                      "batch_best_ms": round(1e3 * float(np.min(batch[m])), 2), "singles": len(single[m])}
        d, h = row["dense"], row["hybrid"]
        row["ratio_single_p50"] = round(h["single_p50_ms"] / d["single_p50_ms"], 3)
        row["ratio_single_p10"] = round(h["single_p10_ms"] / d["single_p10_ms"], 3)
        row["ratio_batch"] = round(h["batch_ms"] / d["batch_ms"], 3)
        row["ratio_batch_best"] = round(h["batch_best_ms"] / d["batch_best_ms"], 3)
        row["items_with_text"] = len(fixed) - len(r.lexical_index(sync=False).no_text_ids())
        row["load_after"] = load_avg()
        out["sizes"][str(n)] = row
        print(json.dumps({n: row}), flush=True)
        del vecs, fixed, r, st
        gc.collect()
    return out


def markdown(res: dict[str, Any]) -> str:
    from mindgap.eval.reports import md_table

    h = res["hybrid_overhead"]
    rows = [[n, r["items_with_text"], r["lexical_build_memory_s"], r["lexical_build_disk_s"],
             round(r["lexical_bytes"] / 1e6, 2), r["lexical_add_batch64_s"], r["dense"]["single_p50_ms"],
             r["hybrid"]["single_p50_ms"], r["ratio_single_p50"], r["ratio_single_p10"], r["dense"]["batch_ms"],
             r["hybrid"]["batch_ms"], r["ratio_batch"], r["ratio_batch_best"],
             f"{r['load_before'][0]:.1f} / {r['load_after'][0]:.1f}"] for n, r in h["sizes"].items()]
    return "\n".join([
        "# Hybrid vs. dense search latency and lexical index build cost (benchmarks/search.py --hybrid)", "",
        "Exact store, real offline-model embeddings grown to N items (¾ texts carrying Flickr8k captions, ¼ images, "
        "half of them titled), k = 10, both modalities merged, no item fetch. Dense = `calibrated` (pseudo pairs); "
        "hybrid = the same plus the tantivy BM25 side index and the calibrated fusion. Timed alternately in one "
        f"process on a shared 2-core machine; ratio = hybrid / dense; numpy BLAS threads: {h.get('blas_threads', 'default')}.",
        "",
        md_table(["items", "items with text", "index build (memory) s", "index build (disk) s", "index MB",
                  "add a 64-item batch s", "dense single p50 ms", "hybrid single p50 ms", "ratio p50",
                  "ratio p10", "dense batch-100 ms", "hybrid batch-100 ms", "ratio batch", "ratio batch (best)",
                  "load before / after"], rows), ""])


__all__ = ["hybrid_overhead", "markdown", "worded_corpus"]
