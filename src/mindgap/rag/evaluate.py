"""``mindgap eval-rag``: answer the MMQA dev slice per retrieval setting, score with ROUGE-1.

Settings (``--gaps``): ``w/o-rag`` (question only, METHODS §1's baseline), any gap corrector
spec (``naive``, ``zscore``, ``modal-clf``, ...), and ``extractive:<gap>`` (the no-LM span
baseline over that retrieval). One generator (``--generator``) answers every LM setting.

Fitting, honestly: the slice has no training questions. By default (``fit_pairs="gold"``)
:func:`~mindgap.eval.benchmarks.build_mmqa_benchmark`'s seeded half of the TextQ/ImageQ
questions (shared golds kept together) is the *fit* split: its (question, gold) pairs fit
the correctors, and those questions are **left out of the evaluation** — every setting is
scored on the remaining questions (the other TextQ/ImageQ half plus the table-only and
mixed-gold questions, which carry no retrieval label). With ``fit_pairs="pseudo"`` the
correctors are fitted label-free on pseudo pairs (each question's top-1 text and top-1
image) and all 100 questions are evaluated.

ROUGE-1: our own implementation, token-for-token the ``rouge-score`` package's default
(lower-case, every run of characters outside ``[a-z0-9]`` is a separator, no stemming),
F1 of clipped unigram overlap. A question with several gold answers (list questions) is
scored against all of them joined into one reference. Beside it, ``contains_gold`` (a gold
answer occurs in the answer as a token sequence) and ``gold_in_prompt`` (a gold text/image is
among the sources placed in the prompt — whether retrieval did its part), overall and per
gold kind. ``gold_kinds`` restricts the evaluation (e.g. to the questions whose gold is in the
store: tables are not indexed).

Outputs (``out_dir``): ``results.json``, ``report.md``, ``answers.jsonl`` and
``human_sheet.csv`` — rows in a seeded random order with an empty ``judgement`` column for
0 / 0.5 / 1 grading; pass it back with ``--judgements`` for Pearson/Spearman vs ROUGE-1.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, MindgapError

log = logging.getLogger(__name__)

DEFAULT_SETTINGS = ["w/o-rag", "naive", "zscore", "modal-clf", "extractive:naive", "extractive:zscore",
                    "extractive:modal-clf"]
NO_RAG = {"w/o-rag", "wo-rag", "no-rag", "norag"}
SHEET_FIELDS = ["row", "question", "gold", "answer", "judgement", "comment", "qid", "setting"]
_TOK = re.compile(r"[a-z0-9]+")


# -- metric -------------------------------------------------------------------------------
def rouge_tokens(text: str) -> list[str]:
    """rouge-score's default tokenizer: lower-case, split on anything outside ``[a-z0-9]``."""
    return _TOK.findall((text or "").lower())


def rouge1(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1 precision / recall / F1 (clipped unigram overlap); empty sides score 0."""
    p, r = Counter(rouge_tokens(prediction)), Counter(rouge_tokens(reference))
    overlap = sum((p & r).values())
    if not overlap:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    prec, rec = overlap / sum(p.values()), overlap / sum(r.values())
    return {"precision": prec, "recall": rec, "f1": 2 * prec * rec / (prec + rec)}


def answer_contains_gold(answer: str, golds: Sequence[str]) -> bool:
    """Whether one gold answer occurs in the answer as a whole-token sequence (rouge tokens).

    A lenient companion to ROUGE-1 F1, which punishes a correct answer wrapped in a
    sentence: "The film was Mask (1985)." contains the gold "Mask".
    """
    a = " " + " ".join(rouge_tokens(answer)) + " "
    return any((t := " ".join(rouge_tokens(g))) and f" {t} " in a for g in golds)


def gold_answers(q: dict[str, Any]) -> list[str]:
    """The gold answers of an MMQA question, one string each."""
    return [str(a.get("answer", "")).strip() for a in q.get("answers", []) if str(a.get("answer", "")).strip()]


def gold_answer(q: dict[str, Any]) -> str:
    """All gold answers of an MMQA question joined with ``, ``."""
    return ", ".join(str(a.get("answer", "")).strip() for a in q.get("answers", []) if str(a.get("answer", "")).strip())


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation; ``None`` when undefined (fewer than 2 points or a constant side)."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(len(v), float)
    sv = v[order]
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and sv[j + 1] == sv[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0  # ties share their average rank
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties)."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    if len(a) < 2:
        return None
    return pearson(_ranks(a), _ranks(b))


# -- settings -----------------------------------------------------------------------------
@dataclass
class Setting:
    """One evaluated configuration: retrieval (or none) + which generator."""

    name: str
    gap: str | None
    extractive: bool = False
    hybrid: bool = False  # ``hybrid:<gap>``: BM25 evidence fused in (mindgap.hybrid, the store's lexical index)

    @classmethod
    def parse(cls, spec: str) -> "Setting":
        s = spec.strip()
        if not s:
            raise InputError("empty setting in --gaps", item="gaps")
        if s.lower() in NO_RAG:
            return cls("w/o-rag", None)
        rest, extractive = (s.split(":", 1)[1].strip(), True) if s.startswith("extractive:") else (s, False)
        hybrid = rest.startswith("hybrid:")
        gap = rest.split(":", 1)[1].strip() if hybrid else rest
        if not gap or gap.lower() in NO_RAG:
            raise InputError("extractive / hybrid need retrieval: extractive:<gap>, hybrid:<gap>", item="gaps")
        return cls(s, gap, extractive=extractive, hybrid=hybrid)


def mmqa_questions(data: str | Path = "mmqa") -> list[dict[str, Any]]:
    """The 100 MMQA dev-slice questions with answers (shared data)."""
    from ..eval.benchmarks import _gz_jsonl, _mmqa_dir

    return _gz_jsonl(_mmqa_dir(data) / "subset_dev100" / "MMQA_dev_n100.jsonl.gz")


def question_groups(q: dict[str, Any]) -> dict[str, str]:
    """Grouping keys: MMQA ``type``, the ``modalities`` set, and the retrieval gold kind
    (``TextQ`` / ``ImageQ`` / ``mixed`` / ``table-only``, as :func:`~mindgap.eval.benchmarks.mmqa_gold` sees it)."""
    from ..eval.benchmarks import mmqa_gold

    md = q.get("metadata", {})
    tg, ig = mmqa_gold(q)
    gold = "mixed" if tg and ig else "TextQ" if tg else "ImageQ" if ig else "table-only"
    return {"type": str(md.get("type", "?")), "modalities": "+".join(sorted(set(md.get("modalities") or ["?"]))),
            "gold_kind": gold}


# -- the run ------------------------------------------------------------------------------
def gold_fit_data(retr: Any, fit_queries: Sequence[Any], *, seed: int = 0) -> Any:
    """(question, gold item) pairs of the fit split — one row per gold found in the store — plus
    a seeded corpus sample (:class:`~mindgap.gap.FitData`)."""
    from ..gap import FitData
    from ..types import MODALITIES

    corpus = retr.corpus_sample(5000, seed=seed)
    if not fit_queries:
        return FitData(corpus=corpus)
    qv = retr.encoder.encode_text([q.query for q in fit_queries], show_progress=False)
    vec: dict[str, np.ndarray] = {}
    for m in MODALITIES:
        got, mat = retr.store.vectors(m, sorted({g for q in fit_queries for g in q.gold_ids}))
        vec.update(zip(got, mat))
    rows = [(i, vec[g], q.gold_modality) for i, q in enumerate(fit_queries) for g in q.gold_ids if g in vec]
    if not rows:
        return FitData(corpus=corpus)
    return FitData(queries=np.stack([qv[i] for i, _, _ in rows]), gold=np.stack([v for _, v, _ in rows]),
                   gold_modality=np.array([m for _, _, m in rows]), query_modality="text", corpus=corpus, pairs="gold")


def run_eval_rag(store: Any, *, data: str | Path = "mmqa", settings: Sequence[str] = DEFAULT_SETTINGS,
                 generator: Any = "local:smollm2", template: Any = "paper", k: int = 10, limit: int | None = None,
                 max_tokens: int = 32, fit_pairs: str = "gold", encoder: str | None = None, seed: int = 0,
                 out_dir: str | Path | None = None, progress: bool = True, index: bool = True,
                 gold_kinds: Sequence[str] | None = None) -> dict[str, Any]:
    """Generate answers per setting on the MMQA slice and score them (see the module docstring).

    Args:
        store: store URI or open store; the slice's 925 texts + 257 images are indexed into it
            (ids already present are skipped) unless ``index=False``.
        settings: ``w/o-rag``, gap specs, ``extractive:<gap>``.
        generator: generator (or spec) for the LM settings.
        template: ``paper``, ``short`` or a template file.
        k / max_tokens: sources retrieved, answer cap.
        limit: evaluate only the first ``limit`` eligible questions.
        fit_pairs: ``gold`` (held-out fit half, left out of the evaluation) or ``pseudo``.
        out_dir: write results.json, report.md, answers.jsonl, human_sheet.csv there.
        gold_kinds: evaluate only these question kinds (``TextQ``, ``ImageQ``, ``mixed``,
            ``table-only``; default all). ``TextQ,ImageQ,mixed`` keeps the questions whose
            gold knowledge is in the store (tables are not indexed).
    """
    from ..eval.benchmarks import build_mmqa_benchmark, mmqa_gold
    from ..retriever import Retriever
    from .generators import load_generator
    from .pipeline import RagPipeline

    if fit_pairs not in {"gold", "pseudo"}:
        raise InputError("fit_pairs must be 'gold' or 'pseudo'", item="fit_pairs")
    kinds = {"TextQ", "ImageQ", "mixed", "table-only"}
    if gold_kinds is not None and not set(gold_kinds) <= kinds:
        raise InputError(f"unknown gold kind(s) {sorted(set(gold_kinds) - kinds)}; expected {sorted(kinds)}",
                         item="gold_kinds")
    sets = [Setting.parse(s) for s in settings]
    if not sets:
        raise InputError("no settings to evaluate", item="gaps")
    bench = build_mmqa_benchmark(data, seed=seed)
    retr = Retriever(store, encoder=encoder)
    if index:
        items = bench.corpus_items()
        retr.index(items, progress=progress, total=len(items), source="mmqa:subset_dev100")
    allq = mmqa_questions(data)
    fit_ids = {q.qid for q in bench.split("fit")} if fit_pairs == "gold" else set()
    evalq = [q for q in allq if q["qid"] not in fit_ids
             and (gold_kinds is None or question_groups(q)["gold_kind"] in set(gold_kinds))][: limit or None]
    if not evalq:
        raise InputError("no questions left to evaluate", item="limit")
    if fit_pairs == "gold":
        fdata = gold_fit_data(retr, bench.split("fit"), seed=seed)
    else:
        qv = retr.encoder.encode_text([q["question"] for q in allq], show_progress=False)  # label-free: all 100
        fdata = retr.pseudo_pairs(qv, "text")
        fdata.corpus = retr.corpus_sample(5000, seed=seed)
    skipped: dict[str, str] = {}
    fitted: dict[str, str] = {}
    for gap in sorted({s.gap for s in sets if s.gap}):
        try:
            retr.fit_gap(gap, data=fdata, save=False, name=f"rag:{gap}")
            fitted[gap] = f"rag:{gap}"
        except (ImportError, MindgapError, ValueError) as exc:
            skipped[gap] = f"{type(exc).__name__}: {exc}"
            log.warning("gap %s skipped: %s", gap, exc)
    lm = load_generator(generator) if isinstance(generator, str) else generator
    t_load = time.perf_counter()
    if hasattr(lm, "load"):
        lm.load()
    load_seconds = float(getattr(lm, "load_seconds", 0.0) or (time.perf_counter() - t_load))
    pipes = {False: RagPipeline(retr, lm, template=template, k=k, max_tokens=max_tokens),
             True: RagPipeline(retr, load_generator("extractive"), template=template, k=k, max_tokens=max_tokens)}
    groups = {q["qid"]: question_groups(q) for q in evalq}
    rows: list[dict[str, Any]] = []
    for s in sets:
        if s.gap and s.gap not in fitted:
            continue
        hits = [None] * len(evalq) if s.gap is None else retr.search_many([q["question"] for q in evalq], k=k,
                                                                          gap=fitted[s.gap], hybrid=s.hybrid or None)
        it = zip(evalq, hits)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(list(it), desc=s.name, unit="q")
        for q, hs in it:
            ans = pipes[s.extractive].ask(q["question"], hits=hs, no_rag=s.gap is None, gap=s.gap)
            gold = gold_answer(q)
            tg, ig = mmqa_gold(q)
            in_prompt = {src.id for src in ans.sources}
            g = ans.generation
            rows.append({"qid": q["qid"], "setting": s.name, "question": q["question"], "gold": gold,
                         "answer": ans.answer, "rouge1": rouge1(ans.answer, gold)["f1"],
                         "contains_gold": answer_contains_gold(ans.answer, gold_answers(q)), **groups[q["qid"]],
                         "gold_in_prompt": bool(in_prompt & set(tg + ig)) if (tg or ig) else None,
                         "images_in_prompt": sum(1 for src in ans.sources if src.modality == "image"),
                         "dropped": len(ans.dropped), "prompt_tokens": ans.prompt_tokens, "tokens": g.tokens,
                         "seconds": round(g.seconds, 4), "sources": [src.id for src in ans.sources]})
    results = summarize(rows, sets, skipped)
    results.update({
        "config": {"store": retr.store.uri, "encoder": retr.encoder_spec, "generator": getattr(lm, "name", str(lm)),
                   "template": pipes[False].template.name, "k": k, "max_tokens": max_tokens, "temperature": 0.0,
                   "fit_pairs": fit_pairs, "seed": seed, "limit": limit,
                   "gold_kinds": sorted(gold_kinds) if gold_kinds is not None else "all",
                   "rouge": "ROUGE-1 F1, own implementation = rouge-score default tokenizer, no stemming"},
        "questions": {"evaluated": len(evalq), "fit_split_left_out": len(fit_ids),
                      "fit_pairs_used": 0 if fdata.queries is None else int(len(fdata.queries)),
                      "by_gold_kind": dict(Counter(groups[q["qid"]]["gold_kind"] for q in evalq))},
        "generator_info": {**(lm.info() if hasattr(lm, "info") else {}), "load_seconds": round(load_seconds, 3)},
    })
    if out_dir is not None:
        results["files"] = write_outputs(results, rows, Path(out_dir), seed=seed)
    return results


def summarize(rows: list[dict[str, Any]], sets: Sequence[Setting], skipped: dict[str, str]) -> dict[str, Any]:
    """Mean ROUGE-1 per setting, overall and per group; generation speed; gold-in-prompt rate."""
    out: dict[str, Any] = {"settings": {}, "skipped": {}}
    for s in sets:
        rs = [r for r in rows if r["setting"] == s.name]
        if not rs:
            out["skipped"][s.name] = skipped.get(s.gap or "", "not run")
            continue
        res: dict[str, Any] = {"n": len(rs), "rouge1": round(float(np.mean([r["rouge1"] for r in rs])), 4)}
        res["contains_gold"] = round(float(np.mean([bool(r.get("contains_gold")) for r in rs])), 4)
        for key in ("gold_kind", "modalities", "type"):
            by = defaultdict(list)
            for r in rs:
                by[r[key]].append(r)
            res[f"by_{key}"] = {g: _group(v, s) for g, v in sorted(by.items())}
        gp = [r["gold_in_prompt"] for r in rs if r["gold_in_prompt"] is not None]
        secs = sum(r["seconds"] for r in rs)
        toks = sum(r["tokens"] for r in rs)
        res.update(gold_in_prompt=round(float(np.mean(gp)), 4) if gp and s.gap else None,
                   images_in_prompt=round(float(np.mean([r["images_in_prompt"] for r in rs])), 3),
                   dropped_sources=int(sum(r["dropped"] for r in rs)),
                   mean_prompt_tokens=round(float(np.mean([r["prompt_tokens"] for r in rs])), 1),
                   mean_answer_tokens=round(toks / len(rs), 2), generation_seconds=round(secs, 2),
                   seconds_per_answer=round(secs / len(rs), 3),
                   tokens_per_s=round(toks / secs, 2) if secs > 0 and not s.extractive else None)
        out["settings"][s.name] = res
    return out


def _group(rs: list[dict[str, Any]], s: Setting) -> dict[str, Any]:
    gp = [r["gold_in_prompt"] for r in rs if r["gold_in_prompt"] is not None]
    return {"n": len(rs), "rouge1": round(float(np.mean([r["rouge1"] for r in rs])), 4),
            "contains_gold": round(float(np.mean([bool(r.get("contains_gold")) for r in rs])), 4),
            "gold_in_prompt": round(float(np.mean(gp)), 4) if gp and s.gap else None}


def resummarize(out_dir: str | Path, data: str | Path = "mmqa") -> dict[str, Any]:
    """Recompute the summary of a finished run from its ``answers.jsonl`` (no generation).

    For runs written before a summary field existed (``contains_gold``, per-kind gold-in-prompt):
    the per-answer facts are recomputed from the saved answers and the MMQA gold answers, and
    ``results.json`` / ``report.md`` are rewritten (config, generator info kept).
    """
    out = Path(out_dir)
    old = json.loads((out / "results.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (out / "answers.jsonl").read_text(encoding="utf-8").splitlines() if line]
    golds = {q["qid"]: gold_answers(q) for q in mmqa_questions(data)}
    for r in rows:
        r["contains_gold"] = answer_contains_gold(r["answer"], golds.get(r["qid"], [r["gold"]]))
    names = list(old["settings"]) + [n for n in old.get("skipped", {}) if n not in old["settings"]]
    res = summarize(rows, [Setting.parse(n) for n in names], {})
    res["skipped"] = old.get("skipped", {})
    for key in ("config", "questions", "generator_info"):
        res[key] = old[key]
    res["files"] = write_outputs(res, rows, out, seed=int(old["config"].get("seed", 0)))
    return res


# -- files ----------------------------------------------------------------------------------
def write_outputs(results: dict[str, Any], rows: list[dict[str, Any]], out: Path, *, seed: int = 0) -> dict[str, str]:
    """results.json, report.md, answers.jsonl, human_sheet.csv."""
    from ..eval.reports import write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    with (out / "answers.jsonl").open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    order = np.random.default_rng(seed).permutation(len(rows))
    with (out / "human_sheet.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=SHEET_FIELDS)
        w.writeheader()
        for n, i in enumerate(order, 1):
            r = rows[i]
            w.writerow({"row": n, "question": r["question"], "gold": r["gold"], "answer": r["answer"], "judgement": "",
                        "comment": "", "qid": r["qid"], "setting": r["setting"]})
    (out / "report.md").write_text(report_markdown(results), encoding="utf-8")
    return {k: str(out / k) for k in ("results.json", "report.md", "answers.jsonl", "human_sheet.csv")}


def report_markdown(res: dict[str, Any]) -> str:
    """The eval-rag report: ROUGE-1 per setting and group, speed, what was fitted how."""
    from ..eval.reports import md_table

    c, qn, st = res["config"], res["questions"], res["settings"]
    lines = [f"# RAG on the MMQA dev slice — ROUGE-1 ({c['generator']}, template `{c['template']}`)", "",
             f"Store `{c['store']}`, encoder `{c['encoder']}`, k = {c['k']}, max_tokens = {c['max_tokens']}, "
             f"temperature 0 (greedy). {qn['evaluated']} questions evaluated "
             f"({', '.join(f'{k}: {v}' for k, v in sorted(qn['by_gold_kind'].items()))}); "
             + (f"{qn['fit_split_left_out']} fit-split questions left out (their gold pairs fitted the correctors: "
                f"{qn['fit_pairs_used']} pairs)." if c["fit_pairs"] == "gold" else
                f"correctors fitted on {qn['fit_pairs_used']} label-free pseudo pairs."), "",
             f"Metric: {c['rouge']}.", ""]
    if c.get("gold_kinds", "all") != "all":
        lines[-2:-2] = [f"Only questions of kind {', '.join(c['gold_kinds'])} were evaluated (--gold-kinds).", ""]
    golds = sorted({g for s in st.values() for g in s["by_gold_kind"]})
    mods = sorted({g for s in st.values() for g in s["by_modalities"]})
    rows = [[name, s["n"], s["rouge1"], *[s["by_gold_kind"].get(g, {}).get("rouge1") for g in golds],
             s.get("contains_gold"), s["gold_in_prompt"], s["images_in_prompt"], s["mean_prompt_tokens"],
             s["seconds_per_answer"], s["tokens_per_s"]]
            for name, s in st.items()]
    lines += ["## ROUGE-1 F1 by setting and gold kind", "",
              md_table(["setting", "n", "all", *golds, "answer contains gold", "gold in prompt", "images in prompt",
                        "prompt tok", "s/answer", "tok/s"], rows), "",
              "*answer contains gold*: a gold answer occurs in the answer as a token sequence (lenient; ROUGE-1 "
              "F1 punishes a right answer inside a sentence). *gold in prompt*: a gold text/image of the question "
              "is among the sources actually in the prompt (retrieval did its part). *tok/s*: completion tokens "
              "over generation wall time, prompt processing included.", ""]
    rows = [[name, *[s["by_gold_kind"].get(g, {}).get("gold_in_prompt") for g in golds]]
            for name, s in st.items() if s["gold_in_prompt"] is not None]
    if rows:
        lines += ["## Gold in prompt by gold kind", "", md_table(["setting", *golds], rows), ""]
    rows = [[name, *[s["by_modalities"].get(m, {}).get("rouge1") for m in mods]] for name, s in st.items()]
    any_s = next(iter(st.values()), None)
    ns = [any_s["by_modalities"].get(m, {}).get("n", 0) for m in mods] if any_s else []
    heads = ["setting", *[f"{m} ({n})" for m, n in zip(mods, ns)]]
    lines += ["## By MMQA modalities (n)", "", md_table(heads, rows), ""]
    types = sorted({t for s in st.values() for t in s["by_type"]})
    rows = [[t, any_s["by_type"].get(t, {}).get("n") if any_s else None,
             *[s["by_type"].get(t, {}).get("rouge1") for s in st.values()]] for t in types]
    lines += ["## By MMQA question type", "", md_table(["type", "n", *st.keys()], rows), ""]
    if res.get("skipped"):
        lines += ["## Skipped", ""] + [f"- `{k}`: {v}" for k, v in res["skipped"].items()] + [""]
    gi = res.get("generator_info") or {}
    if gi:
        lines += ["## Generator", "", ", ".join(f"{k}: {v}" for k, v in gi.items()), ""]
    lines += ["Human judgement: fill `judgement` (0 / 0.5 / 1) in `human_sheet.csv`, then "
              "`mindgap eval-rag --judgements human_sheet.csv` reports Pearson/Spearman with ROUGE-1.", ""]
    return "\n".join(lines)


def correlate_judgements(path: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Pearson/Spearman between filled 0/0.5/1 judgements and ROUGE-1 (recomputed from the sheet)."""
    p = Path(path)
    if not p.is_file():
        raise InputError("judgement sheet not found", item=str(p))
    with p.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    need = {"gold", "answer", "judgement"}
    if not rows or not need <= set(rows[0]):
        raise InputError(f"the sheet needs columns {sorted(need)}", item=str(p))
    judged, empty = [], 0
    for i, r in enumerate(rows, 2):
        v = (r.get("judgement") or "").strip()
        if not v:
            empty += 1
            continue
        try:
            j = float(v)
        except ValueError:
            raise InputError(f"line {i}: judgement {v!r} is not 0, 0.5 or 1", item="judgement") from None
        if j not in (0.0, 0.5, 1.0):
            raise InputError(f"line {i}: judgement {v!r} is not 0, 0.5 or 1", item="judgement")
        judged.append((r.get("setting", ""), j, rouge1(r["answer"], r["gold"])["f1"]))
    if not judged:
        raise InputError("no row has a judgement yet", item="judgement")
    js, rs = [j for _, j, _ in judged], [x for _, _, x in judged]
    res: dict[str, Any] = {"sheet": str(p), "judged": len(judged), "unjudged": empty,
                           "pearson": pearson(js, rs), "spearman": spearman(js, rs), "by_setting": {}}
    for s in sorted({s for s, _, _ in judged}):
        sel = [(j, x) for ss, j, x in judged if ss == s]
        res["by_setting"][s] = {"n": len(sel), "human": round(float(np.mean([j for j, _ in sel])), 4),
                                "rouge1": round(float(np.mean([x for _, x in sel])), 4)}
    if out_dir is not None:
        from ..eval.reports import write_json

        write_json(Path(out_dir) / "judgements.json", res)
    return res
