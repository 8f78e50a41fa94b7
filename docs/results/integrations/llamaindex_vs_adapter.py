"""Issue 17, part 7: LlamaIndex's own multimodal retrieval (fixed quotas) vs. the same index through
mindgap's adapter (``mindgap.integrations.llamaindex.GapFusionRetriever``), on the Flickr8k mixed
benchmark of docs/results/fusion (test split of flickr8k_224: 1,000 photos + 1,000 caption-#0
passages; 2,000 caption queries, each relevant to its photo *and* its passage).

* One real ``MultiModalVectorStoreIndex`` (llama-index-core, in-memory ``SimpleVectorStore`` s,
  cosine similarity) whose embedding model is mindgap's bundled encoder (``MindgapEmbedding``).
  The nodes' vectors come from mindgap's embedding cache (the same encoder on the same files;
  ``tests/test_integrations.py`` checks that LlamaIndex embedding a photo itself gives the same
  vector), so a re-run does not re-encode 2,000 items on 2 cores.
* LlamaIndex: ``index.as_retriever(similarity_top_k=5, image_similarity_top_k=5).retrieve(q)`` —
  5 passages then 5 photos, in the order it returns them (its defaults are 2 + 2; that row is
  shown too, 4 results).
* Adapter: ``GapFusionRetriever(index, corrector, k=10)`` — 20 candidates per modality from the
  same index, merged through a ``calibrated`` corrector fitted (a) on the benchmark's fit split
  (the encoder's held-out calib images: gold pairs) or (b) label-free on the index's own
  passages (each passage's top-1 other passage and top-1 photo: mindgap's out-of-the-box fit).
  Neither sees a test label; the corpus sample is the indexed collection itself (unlabelled).

Metrics (``mindgap.eval.runner.multi_gold_metrics``, the fusion report's): per-modality R@10
(the query's photo / passage in the top 10), both@10 (both in the top 10), nDCG@10 (both relevant).

Run: ``docs/results/integrations/reproduce.sh`` (writes results.json and report.md here).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

OUT = Path(__file__).resolve().parent


def main(out: Path = OUT, limit: int | None = None) -> dict:
    import llama_index.core
    from llama_index.core.indices import MultiModalVectorStoreIndex
    from llama_index.core.schema import ImageNode, TextNode

    from mindgap.caption.cache import encode_images, encode_texts
    from mindgap.encoders import DEFAULT_OFFLINE_SPEC, load_encoder
    from mindgap.eval.benchmarks import build_caption_benchmark
    from mindgap.eval.runner import multi_gold_metrics, relevant_sets
    from mindgap.gap.portable import fit_corrector
    from mindgap.integrations.llamaindex import GapFusionRetriever, MindgapEmbedding
    from mindgap.types import Modality

    t_all = time.perf_counter()
    enc = load_encoder(DEFAULT_OFFLINE_SPEC)
    bench = build_caption_benchmark("flickr8k_224", encoder=DEFAULT_OFFLINE_SPEC)
    test_q = bench.split("test")[:limit] if limit else bench.split("test")
    fit_q = bench.split("fit")
    items = bench.corpus_items()
    fit_items = {it.id: it for it in bench.corpus_items(fit_only=True)}

    def embed(its: list) -> np.ndarray:
        out = np.zeros((len(its), enc.dim), np.float32)
        ti = [i for i, it in enumerate(its) if it.modality == Modality.TEXT]
        ii = [i for i, it in enumerate(its) if it.modality == Modality.IMAGE]
        if ti:
            out[ti] = encode_texts(enc, [its[i].text for i in ti], show_progress=False)
        if ii:
            out[ii] = encode_images(enc, [its[i].uri for i in ii], show_progress=False)
        return out

    vec = embed(items)
    qvec = np.asarray(encode_texts(enc, [q.query for q in test_q], show_progress=False), np.float32)
    t_embed = time.perf_counter() - t_all
    print(f"embeddings ready ({t_embed:.0f} s)", file=sys.stderr, flush=True)

    # the LlamaIndex index: mindgap's encoder is its embedding model (text and image)
    emb = MindgapEmbedding(enc, query_cache=len(test_q) + 16)
    nodes = []
    for it, v in zip(items, vec):
        if it.modality == Modality.TEXT:
            nodes.append(TextNode(text=it.text, id_=it.id, embedding=v.tolist()))
        else:
            nodes.append(ImageNode(image_path=it.uri, id_=it.id, embedding=v.tolist(),
                                   metadata={"file_name": Path(it.uri).name}))
    t0 = time.perf_counter()
    index = MultiModalVectorStoreIndex(nodes, embed_model=emb, image_embed_model=emb, show_progress=False)
    t_index = time.perf_counter() - t0
    emb.prime_queries([q.query for q in test_q], qvec)  # LlamaIndex embeds each query once per modality

    # correctors: never fitted on test labels
    is_text = np.array([it.modality == Modality.TEXT for it in items])
    corpus = {"text": vec[is_text], "image": vec[~is_text]}
    counts = {"text": int(is_text.sum()), "image": int((~is_text).sum())}
    fq = np.asarray(encode_texts(enc, [q.query for q in fit_q], show_progress=False), np.float32)
    gold_ids = [(i, g) for i, q in enumerate(fit_q) for g in q.gold_ids if g in fit_items]
    gvec = dict(zip(sorted({g for _, g in gold_ids}), embed([fit_items[g] for g in sorted({g for _, g in gold_ids})])))
    gold_fit = fit_corrector("calibrated", queries=fq[[i for i, _ in gold_ids]],
                             gold=np.stack([gvec[g] for _, g in gold_ids]),
                             gold_modality=[fit_items[g].modality.value for _, g in gold_ids],
                             corpus=corpus, counts=counts, encoder=DEFAULT_OFFLINE_SPEC)
    # label-free: the index's own passages as pseudo queries; pseudo gold = top-1 other passage / top-1 photo
    pt = corpus["text"]
    st = pt @ pt.T
    np.fill_diagonal(st, -np.inf)
    si = pt @ corpus["image"].T
    lf = fit_corrector("calibrated", queries=np.concatenate([pt, pt]),
                       gold=np.concatenate([pt[st.argmax(1)], corpus["image"][si.argmax(1)]]),
                       gold_modality=["text"] * len(pt) + ["image"] * len(pt), corpus=corpus, counts=counts,
                       pairs="pseudo", encoder=DEFAULT_OFFLINE_SPEC)

    mod_of = {it.id: it.modality for it in items}
    pos = {i: (m,) for i, m in mod_of.items()}
    rel = relevant_sets(bench, test_q)

    def hits_of(nodes_out: list) -> list:
        return [SimpleNamespace(id=n.node.node_id, modality=mod_of[n.node.node_id]) for n in nodes_out]

    systems = {
        "LlamaIndex defaults (2 text + 2 image)": index.as_retriever(),
        "LlamaIndex fixed quota (5 text + 5 image)": index.as_retriever(similarity_top_k=5, image_similarity_top_k=5),
        "mindgap adapter, calibrated (fit: calib gold pairs)": GapFusionRetriever(index, corrector=gold_fit, k=10),
        "mindgap adapter, calibrated (label-free: the index's own passages)": GapFusionRetriever(index, corrector=lf,
                                                                                                 k=10),
    }
    rows = {}
    for name, retr in systems.items():
        t0 = time.perf_counter()
        res = []
        for i, q in enumerate(test_q):
            res.append(hits_of(retr.retrieve(q.query)))
            if (i + 1) % 500 == 0:
                print(f"  {name}: {i + 1} queries, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        dt = time.perf_counter() - t0
        m = multi_gold_metrics(res, rel, pos, k=10)
        m["results_per_query"] = round(float(np.mean([len(r) for r in res])), 3)
        m["ms_per_query"] = round(1000 * dt / len(test_q), 2)
        rows[name] = m
        print(f"{name}: {m}", file=sys.stderr)
    quota = rows["LlamaIndex fixed quota (5 text + 5 image)"]
    adapter = rows["mindgap adapter, calibrated (fit: calib gold pairs)"]
    summary = {
        "benchmark": bench.name, "queries": len(test_q), "encoder": DEFAULT_OFFLINE_SPEC,
        "corpus": counts, "fit_queries": len(fit_q), "fit_pairs": len(gold_ids),
        "llama_index_core": llama_index.core.__version__, "python": platform.python_version(),
        "seconds": {"embed_cached": round(t_embed, 1), "build_index": round(t_index, 1),
                    "total": round(time.perf_counter() - t_all, 1)},
        "systems": rows,
        "target": {"adapter both@10 >= LlamaIndex quota both@10": adapter["both@10"] >= quota["both@10"],
                   "adapter": adapter["both@10"], "llamaindex_quota": quota["both@10"]},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(summary), encoding="utf-8")
    return summary


def markdown(s: dict) -> str:
    def f(x: object) -> str:
        return "–" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)

    L = ["# LlamaIndex's multimodal retrieval vs. the same index through mindgap's adapter", "",
         f"Generated by `docs/results/integrations/reproduce.sh` (`llamaindex_vs_adapter.py`). Benchmark: "
         f"`{s['benchmark']}` — {s['corpus']['image']:,} photos + {s['corpus']['text']:,} caption passages in one "
         f"llama-index-core {s['llama_index_core']} `MultiModalVectorStoreIndex` embedded by `{s['encoder']}`; "
         f"{s['queries']:,} caption queries, each relevant to its photo and its passage. Correctors fitted on the "
         f"fit split ({s['fit_pairs']} gold pairs from the encoder's held-out calib images) or label-free; never on "
         "test.", "",
         "| system | photo R@10 | passage R@10 | both@10 | nDCG@10 | photos in top 10 | results | ms/query |",
         "|---|---|---|---|---|---|---|---|"]
    for name, m in s["systems"].items():
        L.append(f"| {name} | {f(m['image_R@10'])} | {f(m['text_R@10'])} | {f(m['both@10'])} | {f(m['nDCG@10'])} | "
                 f"{f(m['image_share@10'])} | {m['results_per_query']:g} | {m['ms_per_query']:g} |")
    t = s["target"]
    L += ["", f"Target (issue 17): the adapter at least as good as LlamaIndex's quotas on both@10 — "
              f"{'**met**' if t['adapter both@10 >= LlamaIndex quota both@10'] else '**missed**'} "
              f"({t['adapter']:.3f} vs. {t['llamaindex_quota']:.3f}).", "",
          "Reading: LlamaIndex returns `similarity_top_k` passages then `image_similarity_top_k` photos, whatever "
          "the query; its default (2 + 2) returns 4 results, so its R@10 is really R@2 per modality. The adapter "
          "asks the same index for 20 candidates per modality and merges them through the corrector: the share of "
          "photos follows each query (photos in top 10 above: the adapter's average vs. LlamaIndex's fixed "
          "half). nDCG@10 scores LlamaIndex's lists in the order it returns them: every passage before every "
          "photo. ms/query is the whole `retrieve()` (LlamaIndex's in-memory store scans every vector per "
          "modality) measured on 2 CPU cores shared with other jobs (load average ~9 during the run): read it as "
          "\"the adapter adds no visible cost\", not as a benchmark.", "",
          f"Timing: cached embeddings {s['seconds']['embed_cached']} s, index build {s['seconds']['build_index']} s, "
          f"run {s['seconds']['total']} s in all.", ""]
    return "\n".join(L)


if __name__ == "__main__":
    if sys.argv[1:] == ["--report-only"]:  # re-render report.md from the committed results.json
        (OUT / "report.md").write_text(markdown(json.loads((OUT / "results.json").read_text())), encoding="utf-8")
    else:
        main(limit=int(sys.argv[1]) if len(sys.argv) > 1 else None)
