"""Issue 15's measurement: dense, lexical and hybrid search side by side (the eval harness's benchmarks).

:func:`run_hybrid` evaluates, on the MMQA dev slice and the Flickr8k test mixed store:

* **dense** — ``naive`` (raw cosine) and ``calibrated`` (fitted on the fit split's gold
  pairs; the store path :meth:`~mindgap.retriever.Retriever.search_vectors`);
* **lexical** — BM25 alone (the tantivy side index);
* **hybrid** — the calibrated fusion (:mod:`mindgap.hybrid`, weights fitted on the fit split's
  candidates), its ablation without the linked evidence (names mentioned by the query's best
  passages), its ablation that scores an item without text as a BM25 *zero* instead of a
  *missing* signal, and the peers' rules on the same dense and BM25 lists: weighted sum
  0.7 / 0.3, RRF (k = 60), min-max, DBSF.

Fitting data: MMQA — the benchmark's fit questions (their golds are in the same store);
Flickr8k — the model's held-out calib photos and captions, indexed in a separate fit store
(the test store is never fitted on). Metrics: R@1/5/10, MRR and nDCG@10 per query kind
(ImageQ, TextQ, overall) and the multi-gold ones (both@10, per-modality R@10, image share).
``docs/results/hybrid/reproduce.sh`` regenerates the committed report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..types import MODALITIES, Hit, Modality
from .reports import md_table, write_json

PEERS = ["weighted", "rrf", "minmax", "dbsf"]
KS = (1, 5, 10)
DEPTH = 100


def _metrics(queries: Sequence[Any], hits: Sequence[Sequence[Hit]], rel: Sequence[Sequence[str]],
             pos: dict[str, Any]) -> dict[str, Any]:
    from .metrics import summarize
    from .runner import multi_gold_metrics

    ranks = []
    for q, hs in zip(queries, hits):
        at = {h.id: h.rank for h in hs}
        ranks.append([at.get(g) for g in q.gold_ids])
    out: dict[str, Any] = {}
    for name in ("ImageQ", "TextQ", "overall"):
        sel = [r for q, r in zip(queries, ranks) if name == "overall" or q.kind == name]
        out[name] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in summarize(sel, KS).items()}
    out["multi_gold"] = multi_gold_metrics(hits, rel, pos)
    return out


def _store_for(retr_cls: Any, uri: str, enc: str, items: list[Any], progress: bool) -> Any:
    retr = retr_cls(uri, encoder=enc)
    retr.index(items, progress=progress, total=len(items), source="benchmark")
    return retr


def evaluate_benchmark(bench: Any, store: str, *, encoder: str, fit_store: str | None = None,
                       progress: bool = False) -> dict[str, Any]:
    """Every method on one benchmark (see the module docstring); returns metrics, fusion weights, timings."""
    import time

    from ..hybrid import fit_fusion, fuse, gather, rank_hits
    from ..retriever import Retriever
    from .runner import EvalConfig, _embed_queries, build_fit_data, relevant_sets

    cfg = EvalConfig()
    retr = _store_for(Retriever, store, encoder, bench.corpus_items(), progress)
    t0 = time.perf_counter()
    retr.enable_lexical()
    build_s = time.perf_counter() - t0
    test = _embed_queries(retr, bench, bench.split("test"), progress)
    fit = _embed_queries(retr, bench, bench.split("fit"), progress)
    # the dense correctors of the test store: calibrated on the fit split's gold pairs, and the
    # out-of-the-box `auto` (calibrated on the store's own texts as pseudo queries, no labels)
    if fit_store is not None:
        fretr = _store_for(Retriever, fit_store, encoder, bench.corpus_items(fit_only=True), progress)
        fretr.enable_lexical()
    else:
        fretr = retr
    frel = relevant_sets(bench, fit.queries, fit=fit_store is not None)
    ftexts = [q.query or "" for q in fit.queries]
    rel = relevant_sets(bench, test.queries)
    pos: dict[str, Any] = {}
    for m in MODALITIES:
        ids, _ = retr.store.vectors(m)
        pos.update({i: (m, j) for j, i in enumerate(ids)})
    texts = [q.query or "" for q in test.queries]
    hits: dict[str, list[list[Hit]]] = {"dense naive": retr.search_vectors(test.vecs, Modality.TEXT, k=DEPTH,
                                                                           gap="naive", fetch=False)}
    models: dict[str, Any] = {}
    from ..hybrid import DEFAULT_FUSION, FusionModel

    default = FusionModel.from_dict(DEFAULT_FUSION)
    for dense, pairs in (("calibrated", "gold"), ("auto", "corpus")):
        name = f"hyb:{dense}"
        corr = retr.fit_gap("calibrated", build_fit_data(retr, bench, fit, cfg, pairs=pairs), save=False, name=name)
        fcorr = corr if fretr is retr else fretr.fit_gap("calibrated", build_fit_data(fretr, bench, fit, cfg,
                                                                                         pairs=pairs),
                                                         save=False, name=name)
        # the fusion weights: fitted on the fit queries' candidates in the store that holds their golds
        fc = gather(fretr, fit.vecs, Modality.TEXT, ftexts, gap_name=name, corr=fcorr, depth=DEPTH,
                    mods=list(MODALITIES))
        model = fit_fusion(fc, frel, fitted_on=f"{bench.name} fit split ({len(fit.queries)} queries, gold labels), "
                                               f"dense {dense}")
        models[dense] = model.to_dict()
        if dense == "auto":
            fit_cands = (fc, frel)  # for the default weights (run_hybrid pools both benchmarks)
        hits[f"dense {dense}"] = retr.search_vectors(test.vecs, Modality.TEXT, k=DEPTH, gap=name, fetch=False)
        tc = gather(retr, test.vecs, Modality.TEXT, texts, gap_name=name, corr=corr, depth=DEPTH,
                    mods=list(MODALITIES))
        cov, eps = float(getattr(corr, "coverage", 0.0)), float(getattr(corr, "eps", 0.01))
        tag = "" if dense == "calibrated" else " on auto"
        hits[f"hybrid calibrated{tag} (missing ≠ zero)"] = [
            rank_hits(c, fuse(c, "calibrated", model, coverage=cov, eps=eps)[0], DEPTH) for c in tc]
        if dense == "auto":
            hits["hybrid on auto, default weights (out of the box)"] = [
                rank_hits(c, fuse(c, "calibrated", default, coverage=cov, eps=eps)[0], DEPTH) for c in tc]
            continue
        # ablation: no linked evidence (BM25 and dense only, as before the second hop existed)
        fc0 = gather(fretr, fit.vecs, Modality.TEXT, ftexts, gap_name=name, corr=fcorr, depth=DEPTH,
                     mods=list(MODALITIES), link=False)
        model0 = fit_fusion(fc0, frel, fitted_on="ablation: no linked evidence")
        models["no_link"] = model0.to_dict()
        tc0 = gather(retr, test.vecs, Modality.TEXT, texts, gap_name=name, corr=corr, depth=DEPTH,
                     mods=list(MODALITIES), link=False)
        hits["ablation: no linked evidence (BM25 + dense)"] = [
            rank_hits(c, fuse(c, "calibrated", model0, coverage=cov, eps=eps)[0], DEPTH) for c in tc0]
        pooled = fit_fusion(fc, frel, fitted_on="ablation: one model, no text = BM25 zero", pooled=True)
        models["ablation"] = pooled.to_dict()
        zero = []
        for c in tc:
            cz = type(c)(**{**c.__dict__, "bm25": np.nan_to_num(c.bm25, nan=0.0)})
            zero.append(rank_hits(cz, fuse(cz, "calibrated", pooled, coverage=cov, eps=eps)[0], DEPTH))
        hits["ablation: one fusion model, no text = BM25 zero"] = zero
        hits["lexical (BM25)"] = [rank_hits(c, fuse(c, "lexical")[0], DEPTH) for c in tc]
        for rule in PEERS:
            hits[f"peer: {rule}"] = [rank_hits(c, fuse(c, rule)[0], DEPTH) for c in tc]
        tc_cal = tc
    tc = tc_cal
    # ImageQ whose gold image's own text matches the query (what lexical evidence can reach at all)
    reach = [qi for qi, (q, c) in enumerate(zip(test.queries, tc)) if q.kind == "ImageQ" and any(
        i in q.gold_ids and m == Modality.IMAGE and b > 0 for i, m, b in zip(c.ids, c.modality, np.nan_to_num(c.bm25)))]
    reachable = {"queries": len(reach), "of_ImageQ": sum(q.kind == "ImageQ" for q in test.queries),
                 "R@10": {name: round(float(np.mean([any(h.id in test.queries[qi].gold_ids for h in hs[qi][:10])
                                                      for qi in reach])), 4) if reach else None
                          for name, hs in hits.items()}}
    n_text = sum(1 for i in retr.lexical_index(sync=False).ids() if i not in retr.lexical_index(sync=False).no_text_ids())
    res = {"benchmark": bench.name, "store": retr.store.uri,
           "counts": {m.value: retr.store.count(m) for m in MODALITIES},
           "items_with_text": n_text,
           "queries": {k: sum(1 for q in test.queries if k == "overall" or q.kind == k) for k in
                       ("ImageQ", "TextQ", "overall")},
           "fit_queries": len(fit.queries), "fit_store": fretr.store.uri,
           "lexical_build_s": round(build_s, 3), "lexical_bytes": retr.lexical_index(sync=False).size_bytes(),
           "fusion": models["calibrated"], "fusion_auto": models["auto"], "fusion_ablation": models["ablation"],
           "fusion_no_link": models["no_link"],
           "imageq_gold_text_matches": reachable, "_fit_candidates": fit_cands,
           "methods": {name: _metrics(test.queries, hs, rel, pos) for name, hs in hits.items()}}
    if fretr is not retr:
        fretr.close()
    retr.close()
    return res


def targets(mmqa: dict[str, Any], flickr: dict[str, Any]) -> list[dict[str, Any]]:
    H = "hybrid calibrated (missing ≠ zero)"
    mm, fl = mmqa["methods"], flickr["methods"]
    dense_best_img = max(mm[d]["ImageQ"]["R@10"] for d in ("dense naive", "dense calibrated"))
    rows = [("MMQA ImageQ R@10: dense ≤ .06 → hybrid ≥ .50", mm[H]["ImageQ"]["R@10"] >= 0.5,
             f"dense naive {mm['dense naive']['ImageQ']['R@10']:.3f}, dense calibrated "
             f"{mm['dense calibrated']['ImageQ']['R@10']:.3f} (best {dense_best_img:.3f}) → hybrid "
             f"{mm[H]['ImageQ']['R@10']:.3f}"),
            ("MMQA TextQ R@10 ≥ dense naive", mm[H]["TextQ"]["R@10"] >= mm["dense naive"]["TextQ"]["R@10"],
             f"{mm[H]['TextQ']['R@10']:.3f} vs. {mm['dense naive']['TextQ']['R@10']:.3f}")]
    for key, lab in (("ImageQ", "ImageQ R@10"),):
        rows.append((f"Flickr8k {lab}: hybrid ≥ dense calibrated", fl[H][key]["R@10"] >= fl["dense calibrated"][key]["R@10"],
                     f"{fl[H][key]['R@10']:.3f} vs. {fl['dense calibrated'][key]['R@10']:.3f}"))
    rows.append(("Flickr8k both@10: hybrid ≥ dense calibrated",
                 fl[H]["multi_gold"]["both@10"] >= fl["dense calibrated"]["multi_gold"]["both@10"],
                 f"{fl[H]['multi_gold']['both@10']:.3f} vs. {fl['dense calibrated']['multi_gold']['both@10']:.3f}"))
    return [{"target": t, "met": bool(ok), "value": v} for t, ok, v in rows]


def _table(res: dict[str, Any]) -> str:
    heads = ["method", "ImageQ R@10", "TextQ R@10", "overall R@10", "overall MRR", "overall nDCG@10",
             "both@10", "nDCG@10 (all rel.)", "image share@10"]
    rows = []
    for name, m in res["methods"].items():
        mg = m["multi_gold"]
        rows.append([name, m["ImageQ"]["R@10"], m["TextQ"]["R@10"], m["overall"]["R@10"], m["overall"]["MRR"],
                     m["overall"]["nDCG@10"], mg["both@10"], mg["nDCG@10"], mg["image_share@10"]])
    return md_table(heads, rows)


def markdown(s: dict[str, Any]) -> str:
    L = [f"# Hybrid lexical + dense search (issue 15) — `{s['encoder']}`", "",
         "Generated by `docs/results/hybrid/reproduce.sh` (`mindgap.eval.hybrid.run_hybrid`). Exact stores; "
         "lexical side index: tantivy BM25 (choice: [lexical_choice.md](lexical_choice.md)). Dense correctors: "
         "`calibrated` fitted on the fit split's gold pairs, and `auto` — the out-of-the-box corrector `mindgap index` "
         "fits (calibrated on pseudo queries from the store's own texts, no labels). Hybrid fusion weights: fitted on the fit split's "
         "candidates (MMQA: the other half of the questions; Flickr8k: the model's held-out calib photos and "
         "captions in their own store). Lists are 100 deep (dense top 100 per modality ∪ the BM25 top 50 "
         "per modality for the fused rules, ∪ the items whose name the query's top 5 BM25 passages mention — the "
         "linked evidence, a fourth feature of the calibrated fusion; the live search path uses dense depth "
         "max(k, 20)). The *no linked evidence* ablation is the same fusion fitted and run without that step. R@k = any gold in the top k; MRR and nDCG@10 over the gold ids; "
         "both@10 / nDCG@10 (all rel.) count every relevant item (Flickr8k: the photo and its sibling caption).", ""]
    for key, title in (("mmqa", "MMQA dev slice (925 passages + 257 images titled with their Wikipedia entity)"),
                       ("flickr8k", "Flickr8k test mixed store (1,000 photos without text + 1,000 caption passages)")):
        r = s[key]
        L += [f"## {title}", "",
              f"Test queries: {r['queries']}; fit queries: {r['fit_queries']}; items carrying text: "
              f"{r['items_with_text']} of {sum(r['counts'].values())}; lexical index built from the store in "
              f"{r['lexical_build_s']:.2f} s, {r['lexical_bytes'] / 1e6:.2f} MB.", "", _table(r), "",
              f"ImageQ whose gold image's text matches the query (BM25 > 0): "
              f"{r['imageq_gold_text_matches']['queries']} of {r['imageq_gold_text_matches']['of_ImageQ']}; R@10 on them: "
              + ", ".join(f"{k} {v:.3f}" for k, v in r["imageq_gold_text_matches"]["R@10"].items() if v is not None)
              + ".", "",
              "Fusion weights (logistic on [logit P_dense, BM25/max, log(1+BM25), linked] for items with text; "
              "[a, b] of σ(a·logit P_dense + b) for items without): "
              + "; ".join(f"{m}: w = {r['fusion']['coef'][m]}, b = {r['fusion']['intercept'][m]}, no text "
                          f"{r['fusion']['no_text'][m]}" for m in r["fusion"]["coef"])
              + f" (positives: {r['fusion']['positives']}). With dense `auto`: "
              + "; ".join(f"{m}: w = {r['fusion_auto']['coef'][m]}, b = {r['fusion_auto']['intercept'][m]}, no text "
                          f"{r['fusion_auto']['no_text'][m]}" for m in r["fusion_auto"]["coef"]) + ".", ""]
    d = s["default_fusion"]
    L += ["## Out-of-the-box weights", "",
          "`mindgap.hybrid.DEFAULT_FUSION` (a store with no fitted fusion) = one fit over both benchmarks' fit "
          "candidates with the label-free dense corrector `auto`: "
          + "; ".join(f"{m}: w = {d['coef'][m]}, b = {d['intercept'][m]}, no text {d['no_text'][m]}"
                      for m in d["coef"]) + f" (positives: {d['positives']}). Rows *hybrid on auto, default weights* "
          "above measure it.", ""]
    L += ["## Targets", "", md_table(["target", "met", "value"],
                                    [[t["target"], "yes" if t["met"] else "**no**", t["value"]] for t in s["targets"]]),
          ""]
    return "\n".join(L) + "\n"


def run_hybrid(out_dir: str | Path, *, encoder: str | None = None, runs: str | Path = "runs/fusion",
               progress: bool = False) -> dict[str, Any]:
    """MMQA + Flickr8k; writes ``out_dir/results.json`` and ``out_dir/report.md``."""
    from ..encoders import DEFAULT_OFFLINE_SPEC
    from .benchmarks import build_caption_benchmark, build_mmqa_benchmark

    enc = encoder or DEFAULT_OFFLINE_SPEC
    out, runs = Path(out_dir), Path(runs)
    tag = enc.replace(":", "_").replace("/", "_")
    mres = evaluate_benchmark(build_mmqa_benchmark("mmqa"), f"exact:{runs / f'mmqa-{tag}.store'}", encoder=enc,
                              progress=progress)
    fres = evaluate_benchmark(build_caption_benchmark("flickr8k_224", encoder=enc),
                              f"exact:{runs / f'flickr8k-{tag}.store'}", encoder=enc,
                              fit_store=f"exact:{runs / f'flickr8k-fit-{tag}.store'}", progress=progress)
    # the out-of-the-box weights (mindgap.hybrid.DEFAULT_FUSION): one fit over both benchmarks' fit
    # candidates with the label-free dense corrector `auto` (what a store built by `mindgap index` uses)
    from ..hybrid import fit_fusion

    cands, rels = [], []
    for r in (mres, fres):
        c, rl = r.pop("_fit_candidates")
        cands += list(c)
        rels += list(rl)
    default = fit_fusion(cands, rels, fitted_on="default: MMQA fit split + Flickr8k calib fit (gold labels), dense auto")
    s = {"encoder": enc, "default_fusion": default.to_dict(), "mmqa": mres, "flickr8k": fres}
    s["targets"] = targets(mres, fres)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", s)
    (out / "report.md").write_text(markdown(s), encoding="utf-8")
    return s


__all__ = ["evaluate_benchmark", "run_hybrid", "targets"]
