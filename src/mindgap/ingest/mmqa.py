"""The MMQA layout (``../shared/data/mmqa``): texts and images of the 100-question dev slice.

Parsing reuses :mod:`mindgap.eval.benchmarks` (one reader of the MMQA files), and text
passages are formatted exactly as the benchmark corpus does (``"{title}. {text}"``, ids
= MMQA doc ids), so a store built by ``mindgap index mmqa`` holds the very items
``mindgap eval mmqa`` / ``eval-rag`` index — either can reuse the other's store.

Items:

* 925 **text** passages — metadata ``title``, ``url``, ``mmqa_part: "text"``,
  ``referenced_by_qids`` (questions whose ``text_doc_ids`` list it) and ``gold_for_qids``;
* 257 **images** (``images/<path>``) — the Wikipedia title is stored as the caption;
  metadata as above plus ``path``;
* with ``tables=True``, the 30 **tables** as text passages (off by default: METHODS §1's
  knowledge base is texts + images, and the benchmark corpus has no tables). A table is
  linearised as ``"{title}. {table_name}. Col: v; Col: v. Col: v; ..."`` — one sentence
  per row, so the sentence-mean embedding averages its rows — and flagged
  ``mmqa_part: "table"`` with its ``table_name``, ``rows`` and ``columns``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..eval.benchmarks import _gz_jsonl, _mmqa_dir, mmqa_gold
from ..types import Item, Modality

Skip = tuple[str, str]
N_TEXTS, N_IMAGES, N_TABLES = 925, 257, 30


def is_mmqa_dir(path: Path) -> bool:
    return (path / "subset_dev100").is_dir()


def count_mmqa(root: Path, *, tables: bool = False) -> int:
    sub = _mmqa_dir(root) / "subset_dev100"
    n = len(_gz_jsonl(sub / "MMQA_texts_n100.jsonl.gz")) + len(_gz_jsonl(sub / "MMQA_images_n100.jsonl.gz"))
    return n + (len(_gz_jsonl(sub / "MMQA_tables_n100.jsonl.gz")) if tables else 0)


def _refs(questions: list[dict[str, Any]]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """doc id → qids that reference it (question metadata) / for which it is gold."""
    ref: dict[str, list[str]] = {}
    gold: dict[str, list[str]] = {}
    for q in questions:
        md = q.get("metadata", {})
        docs = list(md.get("text_doc_ids", [])) + list(md.get("image_doc_ids", []))
        if md.get("table_id"):
            docs.append(md["table_id"])
        for d in dict.fromkeys(docs):
            ref.setdefault(d, []).append(q["qid"])
        tg, ig = mmqa_gold(q)
        tab = [s["doc_id"] for s in q.get("supporting_context", []) if s.get("doc_part") == "table"]
        for d in dict.fromkeys(tg + ig + tab):
            gold.setdefault(d, []).append(q["qid"])
    return ref, gold


def linearise_table(rec: dict[str, Any]) -> str:
    """A table as text: title, table name, then one ``Col: value; ...`` sentence per row."""
    t = rec.get("table", {})
    cols = [str(h.get("column_name", "")).strip() for h in t.get("header", [])]
    parts = [p for p in (str(rec.get("title", "")).strip(), str(t.get("table_name", "")).strip()) if p]
    out = [". ".join(parts) + "." if parts else ""]
    for row in t.get("table_rows", []):
        cells = [str(c.get("text", "")).strip() for c in row]
        kv = [f"{c}: {v}" if c else v for c, v in zip(cols, cells) if v]
        if kv:
            out.append("; ".join(kv) + ".")
    return " ".join(s for s in out if s).strip()


def iter_mmqa(root: str | Path, *, tables: bool = False) -> Iterator[Item | Skip]:
    """Items of the MMQA dev slice: texts, then images, then (optionally) tables."""
    root = _mmqa_dir(root).resolve()
    sub = root / "subset_dev100"
    ref, gold = _refs(_gz_jsonl(sub / "MMQA_dev_n100.jsonl.gz"))

    def meta(rec: dict[str, Any], part: str) -> dict[str, Any]:
        return {"title": rec.get("title"), "url": rec.get("url"), "mmqa_part": part,
                "referenced_by_qids": ref.get(rec["id"], []), "gold_for_qids": gold.get(rec["id"], [])}

    for t in _gz_jsonl(sub / "MMQA_texts_n100.jsonl.gz"):
        title, body = (t.get("title") or "").strip(), (t.get("text") or "").strip()
        if not body:
            yield f"text:{t['id']}", "empty text passage"
            continue
        yield Item(id=t["id"], modality=Modality.TEXT, text=f"{title}. {body}" if title else body,
                   metadata=meta(t, "text"))
    for im in _gz_jsonl(sub / "MMQA_images_n100.jsonl.gz"):
        p = root / "images" / str(im.get("path", ""))
        if not p.is_file():
            yield f"image:{im['id']}", f"image file not found ({p})"
            continue
        yield Item(id=im["id"], modality=Modality.IMAGE, uri=str(p), text=im.get("title"),
                   metadata={**meta(im, "image"), "path": f"images/{im['path']}"})
    if tables:
        for tb in _gz_jsonl(sub / "MMQA_tables_n100.jsonl.gz"):
            text = linearise_table(tb)
            t = tb.get("table", {})
            if not text:
                yield f"table:{tb['id']}", "empty table"
                continue
            yield Item(id=tb["id"], modality=Modality.TEXT, text=text,
                       metadata={**meta(tb, "table"), "table_name": t.get("table_name"),
                                 "rows": len(t.get("table_rows", [])), "columns": len(t.get("header", []))})
