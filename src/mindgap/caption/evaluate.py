"""Evaluate a caption model on a captioned split: retrieval across the gap + caption quality.

Two kinds of evidence:

* **Does the map cross the gap?** For every test image, rank the split's own reference
  captions (all ``5 × n`` of them, none seen in fitting) by raw cosine vs through the
  map; nDCG@10 with the image's own 5 references as relevant (gain 1), plus R@1/5/10
  (an own reference in the top k).
* **Captions.** Retrieval-only baselines on every image — the nearest *training* caption by
  raw cosine, and through the map — and, on a subset (the generator is slow on CPU), the
  mapped top-k + generator. BLEU-4 / ROUGE-L / CIDEr-D follow the COCO toolkit (CIDEr-D
  document frequencies over the references of the images scored, as the toolkit does);
  SPICE when Java + CoreNLP jars are there; CLIP-score with the model's own encoder (note:
  the raw-cosine nearest caption maximises this by construction).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..encoders.base import l2_normalize
from ..errors import InputError
from .generate import Captioner, Order
from .map import CaptionModel
from . import metrics as M
from .cache import encode_images, encode_texts


def gap_retrieval(model: CaptionModel, image_vectors: np.ndarray, caption_vectors: np.ndarray,
                  owner: np.ndarray, *, k: int = 10) -> dict[str, dict[str, float]]:
    """Image → own-reference-caption retrieval among a pool of captions: raw, mapped, centring only.

    Args:
        image_vectors: ``(n, d)`` raw image embeddings.
        caption_vectors: ``(m, d)`` raw caption embeddings (the pool).
        owner: ``(m,)`` index of the image each pool caption belongs to.
    """
    owner = np.asarray(owner)
    n_rel = np.bincount(owner, minlength=image_vectors.shape[0])
    out = {}
    spaces = {
        "raw": (l2_normalize(image_vectors), l2_normalize(caption_vectors)),
        "mapped": (model.map_images(image_vectors), model.store.mapped_vectors(caption_vectors)),
    }
    src_mean = getattr(model.lmap, "source_mean_", None)
    if src_mean is not None:  # ablation: the centring alone, W = identity
        spaces["centred_only"] = (l2_normalize(l2_normalize(image_vectors) - np.asarray(src_mean, np.float32)),
                                  model.store.mapped_vectors(caption_vectors))
    for name, (q, c) in spaces.items():
        sim = q @ c.T
        top = np.argsort(-sim, axis=1, kind="stable")[:, :max(k, 10)]
        rel = (owner[top] == np.arange(q.shape[0])[:, None]).astype(np.float64)
        own_best = np.where(owner[None, :] == np.arange(q.shape[0])[:, None], sim, -np.inf).max(axis=1)
        first_rank = (sim > own_best[:, None]).sum(axis=1) + 1
        out[name] = {
            f"ndcg@{k}": float(M.ndcg_at_k(rel, n_rel, k).mean()),
            "R@1": float((rel[:, :1].sum(1) > 0).mean()),
            "R@5": float((rel[:, :5].sum(1) > 0).mean()),
            "R@10": float((rel[:, :10].sum(1) > 0).mean()),
            "median_first_rank": float(np.median(first_rank)),
        }
    return out


def score_captions(hyps: Sequence[str], refs: Sequence[Sequence[str]], image_vectors: np.ndarray,
                   caption_vectors: np.ndarray, *, with_spice: bool = False) -> dict[str, float]:
    """BLEU-4, ROUGE-L, CIDEr-D (+ SPICE), CLIP-score for one caption per image."""
    s = M.caption_scores(hyps, refs)
    s["clip_score"] = float(M.clip_score(image_vectors, caption_vectors).mean())
    if with_spice:
        s["spice"] = M.spice(hyps, refs)
    return {k: round(float(v), 6) for k, v in s.items()}


def evaluate(model: CaptionModel, records: Sequence[Any], *, generator: Any = None, gen_limit: int = 100,
             k: int = 5, order: Order = "s2d", limit: int | None = None, spice: bool = True,
             n_examples: int = 8) -> dict[str, Any]:
    """Full evaluation of one model on ``records`` (see the module docstring).

    Args:
        records: test images with references (sorted; ``limit`` keeps the first N).
        generator: the generator for the "mapped + generator" row (``None``: skip it).
        gen_limit: how many images (the first N) get generated captions.
    """
    recs = list(records)[:limit] if limit else list(records)
    if not recs:
        raise InputError("no images to evaluate", item="records")
    fitted = set(model.image_ids)
    leak = sum(r.image_id in fitted for r in recs)
    enc = model.encoder()
    t0 = time.perf_counter()
    # timing is measured uncached on the first images; the full batches go through the cache
    enc.encode_image([r.path for r in recs[:50]], show_progress=False)
    t_img = (time.perf_counter() - t0) / min(50, len(recs))
    iv = encode_images(enc, [r.path for r in recs], show_progress=False)
    pool = [(i, c) for i, r in enumerate(recs) for c in r.captions]
    cv = encode_texts(enc, [c for _, c in pool], show_progress=False)
    refs = [r.captions for r in recs]

    res: dict[str, Any] = {
        "model": {key: model.meta.get(key) for key in ("encoder", "kind", "ridge", "center", "data", "split", "n_pairs")},
        "model_captions": len(model.store), "model_images": len(model.image_ids),
        "n_images": len(recs), "overlap_with_fitted_images": leak, "k": k, "order": order,
    }
    res["gap_retrieval"] = gap_retrieval(model, iv, cv, np.array([i for i, _ in pool]))

    # retrieval-only captioning on every image
    t1 = time.perf_counter()
    q = model.map_images(iv)
    t_map = (time.perf_counter() - t1) / len(recs)
    t1 = time.perf_counter()
    nn_mapped = [row[0][0] for row in model.store.search(q, 1, space="mapped")]
    t_search = (time.perf_counter() - t1) / len(recs)
    nn_raw = [row[0][0] for row in model.store.search(iv, 1, space="raw")]
    ok_spice, spice_msg = M.spice_available() if spice else (False, "SPICE not requested")
    res["spice"] = spice_msg
    rows_all = {}
    for name, idx in (("raw_nn", nn_raw), ("mapped_nn", nn_mapped)):
        hyps = model.store.texts(idx)
        rows_all[name] = score_captions(hyps, refs, iv, model.store.vectors[idx], with_spice=ok_spice)
    res["captioning_all"] = rows_all

    # generator on a subset
    n_gen = min(gen_limit, len(recs)) if generator is not None else 0
    sub: dict[str, Any] = {"n": n_gen}
    examples = []
    t_gen = None
    if n_gen:
        sl = slice(0, n_gen)
        cap = Captioner(model, generator, k=k, order=order)
        t1 = time.perf_counter()
        out = cap.describe_vectors(iv[sl], [r.image_id for r in recs[:n_gen]])
        t_gen = (time.perf_counter() - t1) / n_gen
        hyps = [r.caption or "" for r in out]
        gv = enc.encode_text(hyps, show_progress=False)
        rows = {}
        for name, idx in (("raw_nn", nn_raw[:n_gen]), ("mapped_nn", nn_mapped[:n_gen])):
            rows[name] = score_captions(model.store.texts(idx), refs[:n_gen], iv[sl], model.store.vectors[idx],
                                        with_spice=ok_spice)
        rows["mapped_gen"] = score_captions(hyps, refs[:n_gen], iv[sl], gv, with_spice=ok_spice)
        rows["mapped_gen"]["fallback_rate"] = round(sum(r.fallback for r in out) / n_gen, 4)
        sub["rows"] = rows
        sub["generator"] = getattr(generator, "name", str(generator))
        sub["generations"] = [{"image_id": r.image_id, "caption": o.caption, "fallback": o.fallback,
                               "retrieved": [x["text"] for x in o.retrieved]} for r, o in zip(recs, out)]
        for r, o, ir, im in list(zip(recs, out, nn_raw, nn_mapped))[:n_examples]:
            examples.append({"image_id": r.image_id, "generated": o.caption, "fallback": o.fallback, "raw": o.raw,
                             "raw_nn": model.store.entries[ir].text, "mapped_nn": model.store.entries[im].text,
                             "retrieved": [x["text"] for x in o.retrieved], "reference": r.captions[0]})
    res["captioning_subset"] = sub
    res["examples"] = examples
    res["seconds_per_image"] = {"encode_image": round(t_img, 5), "map": round(t_map, 6),
                                "search": round(t_search, 6),
                                "generate": None if t_gen is None else round(t_gen, 3)}
    return res


ROW_NAMES = {"raw_nn": "raw-cosine nearest caption", "mapped_nn": "mapped nearest caption",
             "mapped_gen": "mapped top-k + generator"}


def caption_table(rows: dict[str, dict[str, float]], label: str = "") -> list[str]:
    """Markdown rows ``| label | method | BLEU-4 | ROUGE-L | CIDEr-D | SPICE | CLIP-S |``."""
    out = []
    for key, s in rows.items():
        sp = f"{100 * s['spice']:.1f}" if "spice" in s else "–"
        fb = f" (fallback {100 * s['fallback_rate']:.0f} %)" if "fallback_rate" in s else ""
        out.append(f"| {label} | {ROW_NAMES.get(key, key)}{fb} | {100 * s['bleu4']:.1f} | {100 * s['rouge_l']:.1f} | "
                   f"{100 * s['cider_d']:.1f} | {sp} | {s['clip_score']:.3f} |")
    return out


def render_markdown(res: dict[str, Any], title: str = "Caption evaluation") -> str:
    """A markdown report for one :func:`evaluate` result."""
    m = res["model"]
    lines = [f"# {title}", "",
             f"Model: encoder `{m['encoder']}`, map `{m['kind']}` (ridge {m['ridge']}, centre {m['center']}), "
             f"fitted on `{m['split']}` ({res['model_images']} images, {res['model_captions']} captions). "
             f"Evaluated on {res['n_images']} images (overlap with fitted images: {res['overlap_with_fitted_images']}).",
             "", "## Image → own reference captions (is the gap crossed?)", "",
             "| space | nDCG@10 | R@1 | R@5 | R@10 | median rank |", "|---|---|---|---|---|---|"]
    for sp, g in res["gap_retrieval"].items():
        lines.append(f"| {sp} | {g['ndcg@10']:.4f} | {g['R@1']:.3f} | {g['R@5']:.3f} | {g['R@10']:.3f} | "
                     f"{g['median_first_rank']:.0f} |")
    head = ["| images | method | BLEU-4 | ROUGE-L | CIDEr-D | SPICE | CLIP-S |", "|---|---|---|---|---|---|---|"]
    lines += ["", f"## Captions (scores ×100 except CLIP-S; {res['spice']})", ""] + head
    lines += caption_table(res["captioning_all"], f"all {res['n_images']}")
    sub = res.get("captioning_subset") or {}
    if sub.get("n"):
        lines += caption_table(sub["rows"], f"first {sub['n']}")
        lines += ["", f"Generator: `{sub['generator']}`, k = {res['k']}, order {res['order']}."]
    t = res["seconds_per_image"]
    lines += ["", "Seconds per image: " + ", ".join(f"{k} {v}" for k, v in t.items() if v is not None) + "."]
    if res.get("examples"):
        lines += ["", "## Examples", ""]
        for e in res["examples"]:
            lines.append(f"- `{e['image_id']}`: **{e['generated']}**{' (fallback)' if e['fallback'] else ''} — "
                         f"mapped NN: {e['mapped_nn']} — raw NN: {e['raw_nn']} — a reference: {e['reference']}")
    return "\n".join(lines) + "\n"


def combine_reports(named: Sequence[tuple[str, Any]], *, extra: Sequence[tuple[str, Any]] = (),
                    notes: str = "", title: str = "mRAG-gim image description on Flickr8k") -> tuple[str, dict]:
    """Merge several :func:`evaluate` results (``(label, results.json path)``) into one report.

    Returns:
        ``(markdown, merged JSON)``; the JSON holds every input under its label.
    """
    import json
    from pathlib import Path

    runs = {label: json.loads(Path(p).read_text()) for label, p in named}
    merged: dict[str, Any] = {"evaluations": runs,
                              "extra": {lbl: json.loads(Path(p).read_text()) for lbl, p in extra}}
    head = ["| model | images | method | BLEU-4 | ROUGE-L | CIDEr-D | SPICE | CLIP-S |",
            "|---|---|---|---|---|---|---|---|"]
    lines = [f"# {title}", "", "## Does the map cross the gap? Image → its own reference captions", "",
             "Pool: all reference captions of the evaluated images (none used in fitting); relevant = the "
             "image's own 5.", "",
             "| model | images | space | nDCG@10 | R@1 | R@5 | R@10 | median rank |", "|---|---|---|---|---|---|---|---|"]
    for label, r in runs.items():
        for sp, g in r["gap_retrieval"].items():
            lines.append(f"| {label} | {r['n_images']} | {sp} | {g['ndcg@10']:.4f} | {g['R@1']:.3f} | "
                         f"{g['R@5']:.3f} | {g['R@10']:.3f} | {g['median_first_rank']:.0f} |")
    spice_msgs = sorted({r["spice"] for r in runs.values()})
    lines += ["", "## Captions (BLEU-4, ROUGE-L, CIDEr-D, SPICE ×100; CLIP-S = 2.5·max(cos, 0) with our encoder)", "",
              "; ".join(spice_msgs) + ".", ""] + head
    for label, r in runs.items():
        lines += [f"| {label} |" + row[1:] for row in caption_table(r["captioning_all"], f"all {r['n_images']}")]
    for label, r in runs.items():
        sub = r.get("captioning_subset") or {}
        if sub.get("n"):
            lines += [f"| {label} |" + row[1:] for row in caption_table(sub["rows"], f"first {sub['n']}")]
    lines += ["", "## Seconds per image (CPU)", "", "| model | encode image | map | search | generate |",
              "|---|---|---|---|---|"]
    for label, r in runs.items():
        t = r["seconds_per_image"]
        lines.append(f"| {label} | {t['encode_image']} | {t['map']} | {t['search']} | {t['generate'] or '–'} |")
    if notes:
        lines += ["", notes.strip()]
    return "\n".join(lines) + "\n", merged
