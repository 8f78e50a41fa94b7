"""Retrieval benchmarks: the JSONL format, its loader/validator and two builders.

Format (full description in ``docs/benchmark-format.md``): a benchmark file is JSONL with

* one **header** record first: ``{"type": "header", "format": "mindgap-benchmark",
  "version": 1, "name", "description", "corpus": "<file>.corpus.jsonl", "image_root",
  "fit_split": {...}, "test_split": {...}}``;
* **query** records: ``{"type": "query", "qid", "query" (text) | "query_image" (path),
  "gold_ids": [...], "gold_modality": "text"|"image", "split": "fit"|"test",
  "source_ids": [...]}`` — ``source_ids`` name the underlying data (image ids, question
  ids) the query and its golds come from, for the leakage check;

plus a **corpus** JSONL referenced by the header, one item per line:
``{"id", "modality": "text"|"image", "text" | "image", "split"?, "source_id"?}``. Items
with ``"split": "fit"`` exist only to give fitting queries their gold embeddings and are
never indexed; all other items form the searchable knowledge base.

Fit and test must not overlap: a shared source id (image id, question id), a shared gold
item or an identical query text across the two splits is refused with
:class:`BenchmarkLeakage`.

Builders: :func:`build_caption_benchmark` (mixed-modality retrieval from an image–caption
set, e.g. Flickr8k test, fitted on the offline model's held-out calib images from val) and
:func:`build_mmqa_benchmark` (the MMQA dev slice, TextQ / ImageQ as in METHODS §1).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets import CaptionedImage, load_caption_set, shared_data_dir
from ..errors import InputError
from ..types import Item, Modality

FORMAT = "mindgap-benchmark"
VERSION = 1
SPLITS = ("fit", "test")


class BenchmarkLeakage(InputError):
    """Fit and test splits of a benchmark share data (images, golds or query texts)."""

    code = "benchmark_leakage"


@dataclass
class Query:
    """One benchmark query (text or image) with its gold item ids."""

    qid: str
    gold_ids: list[str]
    gold_modality: str
    split: str
    query: str | None = None
    query_image: str | None = None
    source_ids: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def query_modality(self) -> str:
        return "image" if self.query_image else "text"

    @property
    def kind(self) -> str:
        """``TextQ`` (gold is text) or ``ImageQ`` (gold is an image)."""
        return "ImageQ" if self.gold_modality == "image" else "TextQ"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "query", "qid": self.qid}
        if self.query_image:
            d["query_image"] = self.query_image
        else:
            d["query"] = self.query
        d.update(gold_ids=self.gold_ids, gold_modality=self.gold_modality, split=self.split,
                 source_ids=self.source_ids)
        d.update(self.extra)
        return d


@dataclass
class Benchmark:
    """A loaded benchmark: header, queries and corpus items (image paths resolved)."""

    header: dict[str, Any]
    queries: list[Query]
    corpus: list[dict[str, Any]]
    path: Path | None = None

    @property
    def name(self) -> str:
        return str(self.header.get("name", "benchmark"))

    def split(self, split: str) -> list[Query]:
        return [q for q in self.queries if q.split == split]

    def resolve(self, rel: str) -> str:
        """An image path of the benchmark, resolved against the header's ``image_root``."""
        p = Path(rel)
        if p.is_absolute():
            return str(p)
        base = self.path.parent if self.path is not None else Path.cwd()
        return str(_resolve_root(self.header.get("image_root"), base) / p)

    def corpus_items(self, *, fit_only: bool = False) -> list[Item]:
        """Searchable items (default) or the fit-only items, as :class:`~mindgap.types.Item`."""
        out = []
        for r in self.corpus:
            if (r.get("split") == "fit") != fit_only:
                continue
            m = Modality.parse(r["modality"])
            meta = {"source_id": r["source_id"]} if r.get("source_id") else {}
            if m == Modality.IMAGE:
                out.append(Item(id=r["id"], modality=m, uri=self.resolve(r["image"]), text=r.get("text"), metadata=meta))
            else:
                out.append(Item(id=r["id"], modality=m, text=r["text"], metadata=meta))
        return out


# -- reading / writing -------------------------------------------------------------------
def _norm_text(t: str) -> str:
    return re.sub(r"[^a-z0-9 ]+", "", re.sub(r"\s+", " ", t.lower())).strip()


def check_leakage(queries: Sequence[Query], corpus: Sequence[dict[str, Any]] = ()) -> None:
    """Refuse overlap between the fit and test splits.

    Raises:
        BenchmarkLeakage: a source id (image id, question id), a gold item, a query image
            or a (normalised) query text occurs in both splits.
    """
    src = {s: set() for s in SPLITS}
    gold = {s: set() for s in SPLITS}
    text = {s: {} for s in SPLITS}
    for q in queries:
        if q.split not in SPLITS:
            raise InputError(f"split must be 'fit' or 'test', got {q.split!r}", item=q.qid)
        src[q.split].update(q.source_ids)
        gold[q.split].update(q.gold_ids)
        key = ("img:" + q.query_image) if q.query_image else _norm_text(q.query or "")
        text[q.split].setdefault(key, q.qid)
    both = sorted(src["fit"] & src["test"])
    if both:
        raise BenchmarkLeakage(f"{len(both)} source id(s) are in both the fit and the test split "
                               f"(e.g. {both[0]!r}); fit on data disjoint from the test queries", item="split")
    both = sorted(gold["fit"] & gold["test"])
    if both:
        raise BenchmarkLeakage(f"{len(both)} gold item(s) serve both fit and test queries (e.g. {both[0]!r})",
                               item="split")
    both = sorted(set(text["fit"]) & set(text["test"]))
    if both:
        k = both[0]
        raise BenchmarkLeakage(f"{len(both)} identical query text(s)/image(s) in fit and test "
                               f"(e.g. fit {text['fit'][k]!r} = test {text['test'][k]!r})", item="split")
    fit_items = {r["id"] for r in corpus if r.get("split") == "fit"}
    used = fit_items & gold["test"]
    if used:
        raise BenchmarkLeakage(f"test queries use fit-only corpus items as gold (e.g. {sorted(used)[0]!r})",
                               item="split")


def write_benchmark(bench: Benchmark, path: str | Path) -> Path:
    """Write ``path`` (queries) and its corpus file beside it; returns the benchmark path."""
    check_leakage(bench.queries, bench.corpus)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    corpus_name = p.name.removesuffix(".jsonl") + ".corpus.jsonl"
    header = dict(bench.header)
    header.update(type="header", format=FORMAT, version=VERSION, corpus=corpus_name)
    with p.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps(header, ensure_ascii=False) + "\n")
        for q in bench.queries:
            fh.write(json.dumps(q.to_dict(), ensure_ascii=False) + "\n")
    with (p.parent / corpus_name).open("w", encoding="utf-8") as fh:
        for r in bench.corpus:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    bench.header, bench.path = header, p
    return p


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InputError("file not found", item=str(path))
    out = []
    with path.open("rb") as fh:
        for ln, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise InputError(f"line {ln}: not JSON ({exc})", item=str(path)) from None
            if not isinstance(rec, dict):
                raise InputError(f"line {ln}: expected a JSON object", item=str(path))
            out.append(rec)
    return out


def _resolve_root(root: str | None, base: Path) -> Path:
    if not root:
        return base
    p = Path(root)
    if p.is_absolute():
        return p
    if (base / p).exists():
        return base / p
    try:
        return shared_data_dir() / p
    except InputError:
        return base / p


def load_benchmark(path: str | Path) -> Benchmark:
    """Load and validate a benchmark file and its corpus (leakage is refused).

    Image paths (``query_image``, corpus ``image``) are resolved against the header's
    ``image_root`` (absolute, relative to the benchmark's folder, or a data-set name under
    the shared data folder).
    """
    p = Path(path)
    recs = _read_jsonl(p)
    if not recs or recs[0].get("type") != "header" or recs[0].get("format") != FORMAT:
        raise InputError(f"first record must be a header with format {FORMAT!r}", item=str(p))
    header = recs[0]
    if int(header.get("version", 0)) > VERSION:
        raise InputError(f"benchmark format version {header['version']} is newer than supported ({VERSION})",
                         item=str(p))
    queries: list[Query] = []
    seen: set[str] = set()
    known = {"type", "qid", "query", "query_image", "gold_ids", "gold_modality", "split", "source_ids"}
    for i, r in enumerate(recs[1:], 2):
        where = f"{p.name}:{i}"
        try:
            qid = str(r["qid"])
            gold = [str(g) for g in r["gold_ids"]]
            gm = Modality.parse(r["gold_modality"]).value
            split = str(r["split"])
        except KeyError as exc:
            raise InputError(f"query record misses field {exc}", item=where) from None
        if qid in seen:
            raise InputError(f"duplicate qid {qid!r}", item=where)
        seen.add(qid)
        if not gold:
            raise InputError("empty gold_ids", item=where)
        if bool(r.get("query")) == bool(r.get("query_image")):
            raise InputError("a query record needs exactly one of 'query' (text) or 'query_image'", item=where)
        img = r.get("query_image") or None
        queries.append(Query(qid=qid, gold_ids=gold, gold_modality=gm, split=split, query=r.get("query"),
                             query_image=img, source_ids=[str(s) for s in r.get("source_ids", [])],
                             extra={k: v for k, v in r.items() if k not in known}))
    corpus_file = p.parent / str(header.get("corpus", ""))
    corpus = _read_jsonl(corpus_file) if header.get("corpus") else []
    ids: dict[str, str] = {}
    for r in corpus:
        if "id" not in r or "modality" not in r:
            raise InputError("corpus records need 'id' and 'modality'", item=str(corpus_file))
        r["id"] = str(r["id"])
        m = Modality.parse(r["modality"]).value
        r["modality"] = m
        if r["id"] in ids:
            raise InputError(f"duplicate corpus id {r['id']!r}", item=str(corpus_file))
        ids[r["id"]] = m
        if m == "image":
            if not r.get("image"):
                raise InputError(f"image item {r['id']!r} has no 'image' path", item=str(corpus_file))
        elif not r.get("text"):
            raise InputError(f"text item {r['id']!r} has no 'text'", item=str(corpus_file))
    for q in queries:
        for g in q.gold_ids:
            if g not in ids:
                raise InputError(f"gold id {g!r} is not in the corpus", item=q.qid)
            if ids[g] != q.gold_modality:
                raise InputError(f"gold id {g!r} is a {ids[g]} item but gold_modality is {q.gold_modality}",
                                 item=q.qid)
    check_leakage(queries, corpus)
    if not any(q.split == "test" for q in queries):
        raise InputError("the benchmark has no test queries", item=str(p))
    return Benchmark(header=header, queries=queries, corpus=corpus, path=p)


# -- builders ----------------------------------------------------------------------------
def calib_image_ids(encoder_spec: str) -> list[str]:
    """The held-out calib image ids a mindgap model records in its ``mindgap_model.json``."""
    from ..encoders.dual import resolve_model_dir
    from ..encoders.dual_model import DualEncoderModel

    name = encoder_spec.split(":", 1)[1] if encoder_spec.startswith("mindgap:") else encoder_spec
    cfg = DualEncoderModel.read_config(resolve_model_dir(name))
    ids = list(((cfg.get("training") or {}).get("data") or {}).get("calib_images") or [])
    if not ids:
        raise InputError("this model records no calib images; pass fit image ids explicitly", item=encoder_spec)
    return ids


def _data_root(data: str | Path) -> tuple[Path, str]:
    """(resolved folder, what to record as ``image_root``: the shared data-set name or an absolute path)."""
    p = Path(data)
    if p.exists():
        return p.resolve(), str(p.resolve())
    if p.is_absolute():
        raise InputError("data folder not found", item=str(p))
    return (shared_data_dir() / p).resolve(), str(p)


def _caption_queries(recs: Sequence[CaptionedImage], root: Path, split: str, taken: set[str], fit_only: bool,
                     prefix: str) -> tuple[list[Query], list[dict[str, Any]]]:
    """Per image: caption #0 is a text passage; the next two unused captions are an ImageQ
    (gold = the image) and a TextQ (gold = the passage)."""
    queries: list[Query] = []
    corpus: list[dict[str, Any]] = []
    for r in recs:
        caps = [c.strip() for c in r.captions if c.strip()]
        if len(caps) < 3:
            continue
        img_id, txt_id = r.image_id, f"{r.image_id}#0"
        rel = os.path.relpath(Path(r.path).resolve(), root)
        extra = {"split": "fit"} if fit_only else {}
        corpus.append({"id": img_id, "modality": "image", "image": rel, "source_id": img_id, **extra})
        corpus.append({"id": txt_id, "modality": "text", "text": caps[0], "source_id": img_id, **extra})
        picks = [c for c in caps[1:] if _norm_text(c) not in taken and _norm_text(c) != _norm_text(caps[0])]
        for kind, gold, gm, cap in (("i", img_id, "image", picks[0] if picks else None),
                                    ("t", txt_id, "text", picks[1] if len(picks) > 1 else None)):
            if cap is None:
                continue
            taken.add(_norm_text(cap))
            queries.append(Query(qid=f"{prefix}{img_id}:{kind}", query=cap, gold_ids=[gold], gold_modality=gm,
                                 split=split, source_ids=[img_id]))
    return queries, corpus


def build_caption_benchmark(data: str | Path = "flickr8k_224", *, test_split: str = "test", fit_split: str = "val",
                            fit_images: Iterable[str] | None = None, encoder: str | None = None,
                            test_images: Iterable[str] | None = None, limit: int | None = None, fit_limit: int | None = None, seed: int = 0,
                            name: str | None = None) -> Benchmark:
    """Mixed-modality caption benchmark from an image–caption set.

    Corpus: every test image plus one text passage per image (its caption #0). Queries, per
    test image: an **ImageQ** (another caption; gold = the image) and a **TextQ** (a third
    caption; gold = the passage). Fit queries are built the same way from ``fit_images`` of
    ``fit_split`` (default: the ``encoder``'s held-out calib images), whose items are
    fit-only (not indexed).

    Args:
        data: image–caption folder or shared data-set name.
        test_split / fit_split: splits of ``data``.
        fit_images: image ids for fitting (default: calib ids recorded by ``encoder``).
        encoder: mindgap model whose calib ids are the default fitting images (default: the bundled one).
        test_images: keep only these image ids of ``test_split`` (e.g. one half of the calib
            images when a knob is chosen by cross-validation on calib; default: all).
        limit / fit_limit: keep a seeded random subset of test / fit images (small runs).
        seed: subset seed.

    Raises:
        BenchmarkLeakage: fit and test share images or query texts.
    """
    test = load_caption_set(data, split=test_split)
    fit_all = load_caption_set(data, split=fit_split)
    if fit_images is None:
        from ..encoders import DEFAULT_OFFLINE_SPEC

        fit_images = calib_image_ids(encoder or DEFAULT_OFFLINE_SPEC)
    want = set(fit_images)
    fit = [r for r in fit_all if r.image_id in want]
    if not fit:
        raise InputError(f"none of the fit image ids are in split {fit_split!r}", item="fit_images")
    if test_images is not None:
        keep = set(test_images)
        test = [r for r in test if r.image_id in keep]
        if not test:
            raise InputError(f"none of the test image ids are in split {test_split!r}", item="test_images")
    rng = np.random.default_rng(seed)
    if limit is not None and limit < len(test):
        test = [test[i] for i in sorted(rng.choice(len(test), limit, replace=False))]
    if fit_limit is not None and fit_limit < len(fit):
        fit = [fit[i] for i in sorted(rng.choice(len(fit), fit_limit, replace=False))]
    overlap = sorted({r.image_id for r in fit} & {r.image_id for r in test})
    if overlap:
        raise BenchmarkLeakage(f"{len(overlap)} image(s) are in both fit and test (e.g. {overlap[0]!r})",
                               item="fit_images")
    taken: set[str] = set()
    root, root_rec = _data_root(data)
    fq, fc = _caption_queries(fit, root, "fit", taken, True, "fit:")
    tq, tc = _caption_queries(test, root, "test", taken, False, "")
    dname = Path(str(data)).name
    header = {
        "name": name or f"{dname}-{test_split}-mixed",
        "description": (f"Mixed-modality retrieval on {dname} {test_split}: corpus = {len(test)} images + "
                        f"{len(test)} caption passages (caption #0); ImageQ = another caption → its image, "
                        "TextQ = a third caption → the passage of the same image."),
        "image_root": root_rec,
        "corpus_description": {"images": len(test), "texts": len(test), "source": dname, "split": test_split},
        "fit_split": {"data": dname, "split": fit_split, "images": len(fit),
                      "selection": "encoder calib images" if want else "given", "encoder": encoder,
                      "queries": len(fq)},
        "test_split": {"data": dname, "split": test_split, "images": len(test), "queries": len(tq),
                       "limit": limit, "seed": seed},
    }
    bench = Benchmark(header=header, queries=fq + tq, corpus=fc + tc)
    check_leakage(bench.queries, bench.corpus)
    return bench


def _mmqa_dir(data: str | Path) -> Path:
    p = Path(data)
    if not p.exists() and not p.is_absolute():
        p = shared_data_dir() / p
    if not (p / "subset_dev100").is_dir():
        raise InputError("not an MMQA folder (no subset_dev100/)", item=str(p))
    return p


def _gz_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InputError("file not found", item=str(path))
    with gzip.open(path, "rb") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def mmqa_gold(q: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Gold text and image doc ids of an MMQA question (supporting context + answer instances)."""
    texts: list[str] = []
    images: list[str] = []
    for s in q.get("supporting_context", []):
        (texts if s.get("doc_part") == "text" else images if s.get("doc_part") == "image" else []).append(s["doc_id"])
    for a in q.get("answers", []):
        images.extend(i["doc_id"] for i in a.get("image_instances", []) if i.get("doc_part", "image") == "image")
        texts.extend(i["doc_id"] for i in a.get("text_instances", []) if i.get("doc_part", "text") == "text")
    return list(dict.fromkeys(texts)), list(dict.fromkeys(images))


def build_mmqa_benchmark(data: str | Path = "mmqa", *, fit_fraction: float = 0.5, seed: int = 0,
                         name: str = "mmqa-dev100") -> Benchmark:
    """The MMQA dev slice as a TextQ / ImageQ benchmark (METHODS §1).

    Corpus: the slice's 925 text passages (``"{title}. {text}"``) and 257 images, ids = the
    MMQA doc ids. Queries: questions whose gold knowledge (supporting context and answer
    image instances) is all text (**TextQ**) or all image (**ImageQ**); table-only and
    mixed-gold questions are left out. The slice has no training questions, so a seeded
    ``fit_fraction`` of the questions is the fit split; questions sharing a gold item are
    kept on the same side so fit and test golds never overlap.
    """
    root = _mmqa_dir(data)
    _, root_rec = _data_root(data)
    sub = root / "subset_dev100"
    qs = _gz_jsonl(sub / "MMQA_dev_n100.jsonl.gz")
    texts = _gz_jsonl(sub / "MMQA_texts_n100.jsonl.gz")
    imgs = _gz_jsonl(sub / "MMQA_images_n100.jsonl.gz")
    corpus: list[dict[str, Any]] = []
    for t in texts:
        title, body = (t.get("title") or "").strip(), (t.get("text") or "").strip()
        corpus.append({"id": t["id"], "modality": "text", "text": f"{title}. {body}" if title else body,
                       "title": title, "source_id": t["id"]})
    for im in imgs:
        corpus.append({"id": im["id"], "modality": "image", "image": f"images/{im['path']}",
                       "text": im.get("title"), "source_id": im["id"]})
    cand: list[tuple[dict[str, Any], list[str], str]] = []
    skipped = {"table_only": 0, "mixed": 0}
    for q in qs:
        tg, ig = mmqa_gold(q)
        if tg and ig:
            skipped["mixed"] += 1
        elif tg:
            cand.append((q, tg, "text"))
        elif ig:
            cand.append((q, ig, "image"))
        else:
            skipped["table_only"] += 1
    # union-find over shared gold ids → groups that go wholly to fit or to test
    parent = list(range(len(cand)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, (_, gold, _) in enumerate(cand):
        for g in gold:
            if g in owner:
                parent[find(i)] = find(owner[g])
            else:
                owner[g] = i
    groups: dict[int, list[int]] = {}
    for i in range(len(cand)):
        groups.setdefault(find(i), []).append(i)
    rng = np.random.default_rng(seed)
    split_of: dict[int, str] = {}
    for mod in ("text", "image"):  # stratify by gold modality
        gs = sorted((g for g in groups.values() if cand[g[0]][2] == mod), key=lambda g: cand[g[0]][0]["qid"])
        order = rng.permutation(len(gs))
        n_fit = int(round(fit_fraction * len(gs)))
        for rank, gi in enumerate(order):
            for i in gs[gi]:
                split_of[i] = "fit" if rank < n_fit else "test"
    queries = []
    for i, (q, gold, mod) in enumerate(cand):
        queries.append(Query(qid=q["qid"], query=q["question"], gold_ids=gold, gold_modality=mod,
                             split=split_of[i], source_ids=[q["qid"]],
                             extra={"mmqa_type": q.get("metadata", {}).get("type")}))
    queries.sort(key=lambda x: (x.split != "fit", x.qid))
    n = {s: {m: sum(1 for x in queries if x.split == s and x.gold_modality == m) for m in ("text", "image")}
         for s in SPLITS}
    header = {
        "name": name,
        "description": ("MultiModalQA dev slice (first 100 dev questions): TextQ = questions whose gold knowledge is "
                        "text, ImageQ = gold is an image (supporting_context + answers' image_instances); "
                        "table-only and mixed-gold questions left out."),
        "image_root": root_rec,
        "corpus_description": {"texts": len(texts), "images": len(imgs), "source": "mmqa subset_dev100",
                               "text_format": "{title}. {text}"},
        "fit_split": {"questions": sum(n["fit"].values()), "by_gold_modality": n["fit"],
                      "selection": f"seeded {fit_fraction:.0%} of question groups (shared golds kept together)",
                      "seed": seed},
        "test_split": {"questions": sum(n["test"].values()), "by_gold_modality": n["test"]},
        "skipped_questions": skipped,
    }
    bench = Benchmark(header=header, queries=queries, corpus=corpus)
    check_leakage(bench.queries, bench.corpus)
    return bench


BUILTIN = {"flickr8k": build_caption_benchmark, "mmqa": build_mmqa_benchmark}

__all__ = ["Benchmark", "Query", "BenchmarkLeakage", "check_leakage", "load_benchmark", "write_benchmark",
           "build_caption_benchmark", "build_mmqa_benchmark", "calib_image_ids", "mmqa_gold", "BUILTIN"]
