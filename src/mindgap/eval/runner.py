"""``mindgap eval``: fit every gap corrector on a benchmark's fit split, evaluate on its test split.

One run = one store (built from the benchmark corpus if needed), one encoder, several
correctors. For each corrector:

1. fit on the fit split's (query, gold) pairs plus a seeded per-modality corpus sample
   (:class:`~mindgap.gap.FitData`);
2. search every test query through :meth:`~mindgap.retriever.Retriever.search_vectors`
   (the product path) to depth ``max(ks)`` → Recall@k, MRR (@depth), nDCG@10 for TextQ,
   ImageQ and overall;
3. recompute, with the corrector's hooks over *all* items, each gold's score, its rank
   within its own modality and its rank in the merged list (the paper's error analysis —
   ranks far beyond the search depth), and cross-check those ranks with step 2.

Then, once per run, the exact ImageQ-vs-TextQ frontier of a uniform image-score shift
(:mod:`.tradeoff`) from the raw cosines, with every corrector placed against it.

Correctors that cannot be imported (not written yet) or fail to fit are skipped with a
warning and recorded in the results. The outputs contain no timings, so the same inputs and
seed give byte-identical ``results.json`` and ``report.md``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, MindgapError, SpecError
from ..gap import FitData, GapCorrector
from ..types import MODALITIES, Modality
from .benchmarks import Benchmark, Query, load_benchmark
from .metrics import DEFAULT_KS, first_rank, recall_curve, summarize

log = logging.getLogger(__name__)

DEFAULT_GAPS = ["naive", "zscore", "zscore@pseudo", "center", "standardize", "distnorm", "linear", "modal-clf",
                "linear+zscore"]
SPLIT_NAMES = ("TextQ", "ImageQ", "overall")


@dataclass
class EvalConfig:
    """Options of one evaluation run.

    Attributes:
        gaps: corrector specs to evaluate (``naive`` first is customary); ``SPEC@pseudo`` /
            ``SPEC@gold`` fits that entry on pseudo / gold pairs whatever ``fit_pairs`` says,
            so one report can compare both.
        ks: Recall@k cut-offs; the search depth is ``max(ks)``.
        seed: seeds the corpus sample the correctors are fitted with.
        corpus_sample: items per modality in that sample.
        worst: how many worst queries to list per corrector.
        fit_pairs: ``"gold"`` (the fit split's labels) or ``"pseudo"`` (its queries' top-1 items).
        allow_training_overlap: fit even if fit images are in the encoder's training set.
        batch_size: queries per search batch.
        frontier_k: cut-off of the ImageQ-vs-TextQ shift frontier (:mod:`.tradeoff`).
    """

    gaps: list[str] = field(default_factory=lambda: list(DEFAULT_GAPS))
    ks: tuple[int, ...] = DEFAULT_KS
    seed: int = 0
    corpus_sample: int = 5000
    worst: int = 10
    fit_pairs: str = "gold"
    allow_training_overlap: bool = False
    batch_size: int = 256
    frontier_k: int = 10


@dataclass
class _Embedded:
    queries: list[Query]
    vecs: np.ndarray
    mods: np.ndarray  # query modality per row


def _bar(it: Any, progress: bool, **kw: Any) -> Any:
    if not progress:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, **kw)


def _embed_queries(retr: Any, bench: Benchmark, queries: Sequence[Query], progress: bool) -> _Embedded:
    dim = retr.encoder.dim
    vecs = np.zeros((len(queries), dim), np.float32)
    mods = np.array([q.query_modality for q in queries])
    t = [i for i, q in enumerate(queries) if q.query_modality == "text"]
    im = [i for i, q in enumerate(queries) if q.query_modality == "image"]
    from ..caption.cache import encode_images, encode_texts

    # through the on-disk embedding cache: re-running an evaluation does not re-encode its queries
    if t:
        vecs[t] = encode_texts(retr.encoder, [queries[i].query or "" for i in t], show_progress=progress)
    if im:
        vecs[im] = encode_images(retr.encoder, [bench.resolve(queries[i].query_image or "") for i in im],
                                 show_progress=progress)
    return _Embedded(list(queries), vecs, mods)


def benchmark_retriever(bench: Benchmark, store: str, *, encoder: str, progress: bool = False) -> tuple[Any, Any]:
    """A :class:`~mindgap.retriever.Retriever` on ``store`` holding the benchmark's corpus (items
    already there are skipped, so a re-run does not re-embed) → ``(retriever, ingest report)``."""
    from ..retriever import Retriever

    retr = Retriever(store, encoder=encoder)
    items = bench.corpus_items()
    return retr, retr.index(items, progress=progress, total=len(items), source=f"benchmark:{bench.name}")


def build_fit_data(retr: Any, bench: Benchmark, fit: _Embedded, cfg: EvalConfig, pairs: str | None = None) -> FitData:
    """(query, gold) pairs of the fit split (one row per gold) + a seeded corpus sample.

    ``pairs`` (default ``cfg.fit_pairs``): ``"gold"`` uses the fit split's labels;
    ``"pseudo"`` pairs each fit query with its top-1 stored item of each modality (no labels).
    """
    kind = pairs or cfg.fit_pairs
    corpus = retr.corpus_sample(cfg.corpus_sample, seed=cfg.seed)
    if kind == "corpus":  # the out-of-the-box fit: pseudo pairs from the store's own texts (mindgap.gap.auto)
        from ..gap.auto import corpus_fit_data

        data = corpus_fit_data(retr, seed=cfg.seed) or FitData()
        data.corpus = corpus
        return data
    if not fit.queries:
        return FitData(corpus=corpus)
    sources = {s for q in fit.queries for s in q.source_ids}
    fit_items = {it.id: it for it in bench.corpus_items(fit_only=True)}
    sources |= {str(it.metadata.get("source_id")) for it in fit_items.values() if it.metadata.get("source_id")}
    retr.check_training_overlap(sources, allow=cfg.allow_training_overlap)
    if kind == "pseudo":
        data = FitData(corpus=corpus)
        for qm in ("text", "image"):
            sel = fit.mods == qm
            if sel.any():
                p = retr.pseudo_pairs(fit.vecs[sel], qm)
                data = _concat_fit(data, p)
        data.corpus = corpus
        return data
    if kind != "gold":
        raise InputError(f"fit pairs must be 'gold' or 'pseudo', got {kind!r}", item="fit_pairs")
    gold_ids = sorted({g for q in fit.queries for g in q.gold_ids})
    vec: dict[str, np.ndarray] = {}
    need = [fit_items[g] for g in gold_ids if g in fit_items]
    if need:
        ok, mat, skipped = retr.embed_items(need)
        vec.update(zip([it.id for it in ok], mat))
        if skipped:
            warnings.warn(f"{len(skipped)} fit item(s) skipped (e.g. {skipped[0][0]}: {skipped[0][1]})", stacklevel=2)
    for m in MODALITIES:
        rest = [g for g in gold_ids if g not in vec]
        if rest:
            got, mat = retr.store.vectors(m, rest)
            vec.update(zip(got, mat))
    qs, gs, gm, qm = [], [], [], []
    for i, q in enumerate(fit.queries):
        for g in q.gold_ids:
            if g in vec:
                qs.append(fit.vecs[i])
                gs.append(vec[g])
                gm.append(q.gold_modality)
                qm.append(fit.mods[i])
    if not qs:
        return FitData(corpus=corpus)
    return FitData(queries=np.stack(qs), gold=np.stack(gs), gold_modality=np.array(gm),
                   query_modality=np.array(qm), corpus=corpus, pairs="gold")


def _concat_fit(a: FitData, b: FitData) -> FitData:
    if a.queries is None:
        return b
    qm = np.concatenate([a.qmod(), b.qmod()])
    return FitData(queries=np.concatenate([a.queries, b.queries]), gold=np.concatenate([a.gold, b.gold]),
                   gold_modality=np.concatenate([a.gold_modality, b.gold_modality]), query_modality=qm,
                   corpus=a.corpus, pairs=b.pairs)


class _ItemVectors:
    """Raw item vectors per modality, loaded once per run."""

    def __init__(self, store: Any) -> None:
        self.ids: dict[Modality, list[str]] = {}
        self.mat: dict[Modality, np.ndarray] = {}
        self.pos: dict[str, tuple[Modality, int]] = {}
        for m in MODALITIES:
            ids, mat = store.vectors(m) if store.count(m) else ([], np.zeros((0, 0), np.float32))
            self.ids[m], self.mat[m] = list(ids), np.asarray(mat, np.float32)
            self.pos.update({iid: (m, j) for j, iid in enumerate(ids)})


def deep_ranks(corr: GapCorrector, items: _ItemVectors, emb: _Embedded, chunk: int = 512,
               k: int = 100) -> list[list[dict[str, Any]]]:
    """Every gold's raw cosine, corrected score, rank in its modality and in the merged list.

    Uses the corrector's hooks over all items (same semantics as ``search_vectors``); ranks
    count items scoring strictly higher (ties not broken). ``merged_rank`` is ``None`` when
    the corrector routes the query away from the gold's modality; a gold missing from the
    store has all fields ``None``.
    """
    out: list[list[dict[str, Any]]] = [[] for _ in emb.queries]
    tx = {m: (corr.transform_items(items.mat[m], m) if corr.transforms_items and len(items.ids[m]) else items.mat[m])
          for m in MODALITIES}
    # a per-item term (calibrated:hub): the corrector ranks cosine − offset, within a modality too
    off = {m: np.asarray(corr.item_offsets(items.mat[m], m), np.float64)
           for m in MODALITIES if getattr(corr, "adjusts_items", False) and len(items.ids[m])}
    for qmod in np.unique(emb.mods):
        qm = Modality.parse(str(qmod))
        rows = np.flatnonzero(emb.mods == qmod)
        for s in range(0, len(rows), chunk):
            r = rows[s : s + chunk]
            q = emb.vecs[r]
            routes = corr.route(q, qm)
            sims: dict[Modality, np.ndarray] = {}
            scores: dict[Modality, np.ndarray] = {}
            for m in MODALITIES:
                if not len(items.ids[m]):
                    continue
                sims[m] = corr.prepare_query(q, qm, m) @ tx[m].T
                if m in off:  # the search ranks a modality by cosine − term (the exact store: all items)
                    sims[m] = sims[m] - off[m][None, :]
                scores[m] = full_scores(corr, sims[m], q, qm, m, k=k)
            for li, qi in enumerate(r):
                allowed = set(MODALITIES) if routes is None else set(routes[li])
                for g in emb.queries[qi].gold_ids:
                    if g not in items.pos:
                        out[qi].append({"id": g, "cosine": None, "score": None, "modality_rank": None,
                                        "merged_rank": None})
                        continue
                    m, j = items.pos[g]
                    gsim, gsc = sims[m][li, j], scores[m][li, j]
                    mrank = 1 + int((sims[m][li] > gsim).sum())
                    merged = None
                    if m in allowed:
                        merged = 1 + sum(int((scores[mm][li] > gsc).sum()) for mm in scores if mm in allowed)
                    raw = float(emb.vecs[qi] @ items.mat[m][j])
                    out[qi].append({"id": g, "cosine": raw, "score": float(gsc), "modality_rank": mrank,
                                    "merged_rank": merged})
    return out


def full_scores(corr: GapCorrector, sims: np.ndarray, q: np.ndarray, qm: Modality, m: Modality,
                k: int = 100) -> np.ndarray:
    """The corrector's score of every item (rows = queries), as a search for ``k`` results gives it.

    List-level correctors (``list_depth``) score each query's top ``max(k, list_depth)``
    candidates as one list (the retriever fetches that many); items below get ``-inf``. For a
    corrector with a per-item term, ``sims`` are cosine − term (the exact store ranks by them).
    """
    depth = getattr(corr, "list_depth", None)
    if not depth:
        return np.asarray(corr.score_query(sims, q, qm, m), np.float64)
    d = min(max(int(depth), int(k)), sims.shape[1])
    order = np.argsort(-sims, axis=1, kind="stable")[:, :d]
    top = np.take_along_axis(sims, order, 1)
    out = np.full(sims.shape, -np.inf)
    np.put_along_axis(out, order, np.asarray(corr.score_query(top, q, qm, m), np.float64), 1)
    return out


def relevant_sets(bench: Benchmark, queries: Sequence[Query], *, fit: bool = False) -> list[list[str]]:
    """Multi-gold relevance: a query's gold ids plus every searchable corpus item from the same
    source (Flickr8k: a caption query's photo *and* its sibling caption passage); ``fit``: the
    items of the fit split instead (for queries searched against a store of fit items)."""
    by_src: dict[str, list[str]] = {}
    for r in bench.corpus:
        if (r.get("split") == "fit") == fit and r.get("source_id"):
            by_src.setdefault(str(r["source_id"]), []).append(str(r["id"]))
    out = []
    for q in queries:
        rel = list(q.gold_ids)
        for s in q.source_ids:
            rel += [i for i in by_src.get(s, []) if i not in rel]
        out.append(rel)
    return out


def multi_gold_metrics(hits: Sequence[Sequence[Any]], rel: Sequence[Sequence[str]], pos: dict[str, Any],
                       k: int = 10) -> dict[str, Any]:
    """nDCG@k (all relevant items), both@k (every relevant item in the top k), per-modality R@k
    (the query's relevant item of that modality in the top k; queries that have one) and the
    image share of the top k."""
    from .metrics import ndcg_at_k

    nd, both, share = [], [], []
    per_mod: dict[str, list[float]] = {"text": [], "image": []}
    for hs, r in zip(hits, rel):
        top = hs[:k]
        rank = {h.id: i + 1 for i, h in enumerate(top)}
        nd.append(ndcg_at_k([rank.get(g) for g in r], k))
        both.append(float(all(g in rank for g in r)))
        share.append(float(np.mean([h.modality == Modality.IMAGE for h in top])) if top else 0.0)
        for m in per_mod:
            golds = [g for g in r if g in pos and pos[g][0].value == m]
            if golds:
                per_mod[m].append(float(any(g in rank for g in golds)))
    n = len(rel)
    return {"n": n, f"nDCG@{k}": round(float(np.mean(nd)), 4) if n else None,
            f"both@{k}": round(float(np.mean(both)), 4) if n else None,
            f"image_R@{k}": round(float(np.mean(per_mod["image"])), 4) if per_mod["image"] else None,
            f"text_R@{k}": round(float(np.mean(per_mod["text"])), 4) if per_mod["text"] else None,
            f"image_share@{k}": round(float(np.mean(share)), 4) if n else None}


def _split_of(q: Query) -> str:
    return q.kind


def _metrics(test: _Embedded, ranks: list[list[int | None]], ks: Sequence[int]) -> dict[str, Any]:
    out = {}
    for name in SPLIT_NAMES:
        sel = [r for q, r in zip(test.queries, ranks) if name == "overall" or _split_of(q) == name]
        out[name] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in summarize(sel, ks).items()}
    return out


def _score_stats(test: _Embedded, deep: list[list[dict[str, Any]]]) -> dict[str, Any]:
    st: dict[str, Any] = {}
    for m in ("text", "image"):
        cos = [d["cosine"] for q, ds in zip(test.queries, deep) if q.gold_modality == m for d in ds if d["cosine"] is not None]
        sc = [d["score"] for q, ds in zip(test.queries, deep) if q.gold_modality == m for d in ds
              if d["score"] is not None and np.isfinite(d["score"])]  # list-level correctors: -inf below the list
        if cos:
            st[m] = {"n": len(cos), "cos_mean": round(float(np.mean(cos)), 4), "cos_std": round(float(np.std(cos)), 4),
                     "score_mean": round(float(np.mean(sc)), 4) if sc else None,
                     "score_std": round(float(np.std(sc)), 4) if sc else None}
    return st


def _rank_analysis(test: _Embedded, deep: list[list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("TextQ", "ImageQ"):
        mr, gr = [], []
        for q, ds in zip(test.queries, deep):
            if _split_of(q) != name or not ds or ds[0]["modality_rank"] is None:
                continue
            best = min(ds, key=lambda d: d["merged_rank"] if d["merged_rank"] is not None else 10**12)
            mr.append(best["modality_rank"])
            gr.append(best["merged_rank"] if best["merged_rank"] is not None else np.nan)
        if mr:
            g = np.asarray(gr, float)
            out[name] = {"n": len(mr), "median_modality_rank": float(np.median(mr)),
                         "median_merged_rank": float(np.nanmedian(g)) if np.isfinite(g).any() else None,
                         "mean_modality_rank": round(float(np.mean(mr)), 2),
                         "mean_merged_rank": round(float(np.nanmean(g)), 2) if np.isfinite(g).any() else None,
                         "routed_away": int(np.isnan(g).sum()),
                         "modality_top10_but_merged_gt10": int(sum(1 for a, b in zip(mr, g) if a <= 10 and not b <= 10))}
    return out


def _worst(test: _Embedded, deep: list[list[dict[str, Any]]], naive: list[list[dict[str, Any]]] | None,
           n: int) -> list[dict[str, Any]]:
    rows = []
    for i, (q, ds) in enumerate(zip(test.queries, deep)):
        ranks = [d["merged_rank"] for d in ds]
        best = first_rank(ranks)
        d0 = next((d for d in ds if d["merged_rank"] == best), ds[0] if ds else {})
        row = {"qid": q.qid, "kind": q.kind, "query": (q.query or q.query_image or "")[:120],
               "gold": d0.get("id"), "modality_rank": d0.get("modality_rank"), "merged_rank": best,
               "cosine": None if d0.get("cosine") is None else round(d0["cosine"], 4)}
        if naive is not None:
            row["naive_merged_rank"] = first_rank([d["merged_rank"] for d in naive[i]])
        rows.append(row)
    rows.sort(key=lambda r: (-(r["merged_rank"] if r["merged_rank"] is not None else 10**12), r["qid"]))
    return rows[:n]


def run_eval(bench: Benchmark | str | Path, store: Any = "exact:", *, encoder: Any = None,
             cfg: EvalConfig | None = None, out_dir: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Evaluate gap correctors on a benchmark; optionally write report.md, results.json, PNGs.

    Args:
        bench: a :class:`Benchmark` or a benchmark JSONL path.
        store: store URI (or open store); the benchmark corpus is indexed into it
            (ids already present are skipped).
        encoder: encoder spec or instance (default: the store's, else the offline model).
        cfg: evaluation options.
        out_dir: where to write the report; nothing is written when ``None``.
        progress: show progress bars.

    Returns:
        The results dictionary (also ``results.json``): metrics per corrector and split,
        gold-score statistics, the error analysis, the worst queries and the ImageQ-vs-TextQ
        shift frontier (``tradeoff``; ``None`` without both query kinds).
    """
    from .tradeoff import shift_frontier, summarize_frontier

    cfg = cfg or EvalConfig()
    if isinstance(bench, (str, Path)):
        bench = load_benchmark(bench)
    if not cfg.gaps:
        raise InputError("no gap correctors to evaluate", item="gaps")
    entries, seen_entries = [], set()
    for g in cfg.gaps:  # "zscore@pseudo" under --fit-pairs pseudo is just "zscore": evaluate it once
        e = _parse_entry(g, cfg.fit_pairs)
        if (e[1], e[2]) not in seen_entries:
            seen_entries.add((e[1], e[2]))
            entries.append(e)
    retr, rep = benchmark_retriever(bench, store, encoder=encoder, progress=progress)
    test = _embed_queries(retr, bench, bench.split("test"), progress)
    fit = _embed_queries(retr, bench, bench.split("fit"), progress) if bench.split("fit") else _Embedded([], np.zeros((0, 1)), np.array([]))
    fit_data: dict[str, FitData] = {}
    for _, _, kind in entries:
        if kind not in fit_data:
            fit_data[kind] = build_fit_data(retr, bench, fit, cfg, pairs=kind)
    trained = set((retr.manifest.encoder_training or {}).get("image_ids") or [])
    seen = sorted(trained & {s for q in test.queries for s in q.source_ids})
    if seen:
        warnings.warn(f"{len(seen)} test queries come from images the encoder was trained on (e.g. {seen[0]}); "
                      "their results are optimistic", stacklevel=2)
    ivec = _ItemVectors(retr.store)
    missing = sorted({g for q in test.queries for g in q.gold_ids} - set(ivec.pos))
    if missing:
        warnings.warn(f"{len(missing)} test gold item(s) are not in the store (e.g. {missing[0]})", stacklevel=2)
    depth = max(cfg.ks)
    rel_sets = relevant_sets(bench, test.queries)
    results: dict[str, Any] = {
        "benchmark": {k: bench.header.get(k) for k in ("name", "description", "corpus_description", "fit_split",
                                                       "test_split", "skipped_questions") if k in bench.header},
        "store": {"uri": retr.store.uri, "counts": {m.value: retr.store.count(m) for m in MODALITIES},
                  "skipped_items": len(rep.skipped), "missing_test_golds": len(missing)},
        "encoder": retr.encoder_spec,
        "config": {"gaps": list(cfg.gaps), "ks": list(cfg.ks), "seed": cfg.seed, "corpus_sample": cfg.corpus_sample,
                   "fit_pairs": cfg.fit_pairs, "search_depth": depth, "recall": "hit rate (any gold in top k)",
                   "mrr": f"MRR@{depth}", "frontier_k": cfg.frontier_k},
        "queries": {name: sum(1 for q in test.queries if name == "overall" or q.kind == name) for name in SPLIT_NAMES},
        "fit": {kind: {"pairs": 0 if d.queries is None else int(len(d.queries)),
                       "by_gold_modality": {} if d.gold_modality is None else
                       {m: int((np.asarray(d.gold_modality) == m).sum()) for m in ("text", "image")}}
                for kind, d in fit_data.items()},
        "gaps": {}, "skipped": {},
    }
    results["benchmark"]["digest"] = bench_digest(bench)
    curves: dict[str, dict[str, np.ndarray]] = {}
    hists: dict[str, dict[str, np.ndarray]] = {}
    naive_deep = None
    for label, spec, kind in _bar(entries, progress, desc="correctors", unit="gap"):
        try:
            corr = retr.fit_gap(spec, data=_fresh(fit_data[kind]), save=False, name=f"eval:{label}")
        except (ImportError, ModuleNotFoundError) as exc:
            _skip(results, label, f"not available ({exc})")
            continue
        except SpecError as exc:
            _skip(results, label, f"unknown corrector ({exc})")
            continue
        except MindgapError as exc:
            _skip(results, label, f"fit failed: {exc}")
            continue
        ranks: list[tuple[int, list[int | None]]] = []
        top_image_share = []
        all_hits: list[Any] = [None] * len(test.queries)
        for s in range(0, len(test.queries), cfg.batch_size):
            for qm in ("text", "image"):
                rows = [i for i in range(s, min(s + cfg.batch_size, len(test.queries))) if test.mods[i] == qm]
                if not rows:
                    continue
                hits = retr.search_vectors(test.vecs[rows], qm, k=depth, gap=f"eval:{label}", fetch=False)
                for i, hs in zip(rows, hits):
                    all_hits[i] = hs
                    pos = {h.id: h.rank for h in hs}
                    ranks.append((i, [pos.get(g) for g in test.queries[i].gold_ids]))
                    top_image_share.append(np.mean([h.modality == Modality.IMAGE for h in hs[:10]]) if hs else 0.0)
        ranks_sorted = [r for _, r in sorted(ranks, key=lambda x: x[0])]
        deep = deep_ranks(corr, ivec, test, k=depth)
        checked = mismatch = 0
        for r_search, ds in zip(ranks_sorted, deep):
            for rs, d in zip(r_search, ds):
                if d["merged_rank"] is not None and d["merged_rank"] <= depth:
                    checked += 1
                    mismatch += int(rs != d["merged_rank"])
        if label == "naive":
            naive_deep = deep
        res = {"status": "ok", "spec": spec, "fit_pairs": kind if corr.needs_pairs or "+" in spec else None,
               "metrics": _metrics(test, ranks_sorted, cfg.ks),
               "multi_gold": multi_gold_metrics(all_hits, rel_sets, ivec.pos),
               "image_share_top10": round(float(np.mean(top_image_share)), 4) if top_image_share else None,
               "gold_scores": _score_stats(test, deep), "rank_analysis": _rank_analysis(test, deep),
               "rank_check": {"checked": checked, "mismatch": mismatch},
               "worst": _worst(test, deep, naive_deep if label != "naive" else None, cfg.worst)}
        if hasattr(corr, "summary"):
            try:
                res["fitted"] = _round(corr.summary())
            except Exception:  # noqa: BLE001 - a summary is optional decoration
                pass
        if checked and mismatch > max(1, 0.01 * checked):
            log.warning("%s: %d of %d search ranks differ from the full-scan ranks", label, mismatch, checked)
        results["gaps"][label] = res
        curves[label] = {name: recall_curve([r for q, r in zip(test.queries, ranks_sorted)
                                             if name == "overall" or q.kind == name], depth) for name in SPLIT_NAMES}
        hists[label] = {m: np.array([d["score"] for q, ds in zip(test.queries, deep) if q.gold_modality == m
                                     for d in ds if d["score"] is not None]) for m in ("text", "image")}
        if "raw" not in hists:
            hists["raw"] = {m: np.array([d["cosine"] for q, ds in zip(test.queries, deep) if q.gold_modality == m
                                         for d in ds if d["cosine"] is not None]) for m in ("text", "image")}
    if not results["gaps"]:
        raise InputError("no gap corrector could be evaluated: " + "; ".join(f"{k}: {v}" for k, v in results["skipped"].items()),
                         item="gaps")
    fk = cfg.frontier_k
    frontier = shift_frontier(ivec.mat, ivec.pos, test.vecs, [q.gold_ids for q in test.queries],
                              [q.gold_modality for q in test.queries], k=fk)
    results["tradeoff"] = None
    if frontier is not None:
        points = {lab: {s: g["metrics"][s].get(f"R@{fk}") for s in SPLIT_NAMES} for lab, g in results["gaps"].items()}
        if all(p["ImageQ"] is not None and p["TextQ"] is not None for p in points.values()):
            results["tradeoff"] = summarize_frontier(frontier, points)
    if out_dir is not None:
        from .reports import write_eval_outputs

        results["files"] = write_eval_outputs(results, curves, hists, Path(out_dir), frontier=frontier)
    return results


def _parse_entry(entry: str, default_pairs: str) -> tuple[str, str, str]:
    """``"zscore@pseudo"`` → ``("zscore@pseudo", "zscore", "pseudo")``; label, spec, fit pairs."""
    entry = entry.strip()
    spec, at, kind = entry.partition("@")
    kind = kind.strip() if at else default_pairs
    if kind not in ("gold", "pseudo", "corpus"):
        raise InputError(f"{entry!r}: fit pairs must be 'gold', 'pseudo' or 'corpus', got {kind!r}",
                         item="gaps" if at else "fit_pairs")
    if not spec.strip():
        raise InputError(f"{entry!r}: empty corrector spec", item="gaps")
    return entry, spec.strip(), kind


def _fresh(d: FitData) -> FitData:
    """A shallow copy, so a corrector that adds to its fitting data leaves the shared one alone."""
    return FitData(**vars(d))


def bench_digest(bench: Benchmark) -> str:
    """A short sha256 of the benchmark's queries and corpus (identifies the exact data evaluated)."""
    import hashlib
    import json

    h = hashlib.sha256()
    for q in bench.queries:
        h.update(json.dumps(q.to_dict(), sort_keys=True, ensure_ascii=False).encode())
    for r in bench.corpus:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def _skip(results: dict[str, Any], spec: str, why: str) -> None:
    results["skipped"][spec] = why
    msg = f"gap corrector {spec!r} skipped: {why}"
    warnings.warn(msg, stacklevel=3)
    log.warning(msg)


def _round(obj: Any) -> Any:
    if isinstance(obj, float):
        return round(obj, 5)
    if isinstance(obj, dict):
        return {str(k): _round(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_round(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _round(obj.tolist()) if obj.size <= 64 else f"<array {obj.shape}>"
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


__all__ = ["EvalConfig", "DEFAULT_GAPS", "run_eval", "build_fit_data", "deep_ranks", "bench_digest", "full_scores",
           "relevant_sets", "multi_gold_metrics"]
