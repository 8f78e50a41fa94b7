"""Fitting data from files: query files and labelled pairs files (``mindgap fit-gap``, ``search --queries``).

Query files (``search --queries``, ``fit-gap --pseudo``): one text query per line, or
JSONL (``.jsonl`` suffix, or a first line starting with ``{``) with records
``{"query": "..."}`` / ``{"text": "..."}`` or ``{"image": "path"}`` (relative to the
file's folder) and an optional ``"id"``. A benchmark file (``mindgap make-benchmark``,
format in ``docs/benchmark-format.md``) is a query file too: its queries (``split`` chooses
``fit`` or ``test`` ones).

Pairs files (``fit-gap --pairs``, labelled fitting data), JSONL, one pair per line::

    {"query": "a dog runs on the beach", "gold_id": "<id of an item in the store>"}
    {"query": "who painted it?", "gold_text": "A passage that answers it ..."}
    {"query": "a red car", "gold_image": "images/car.jpg"}
    {"query_image": "q/photo.jpg", "gold_id": "doc-17"}

exactly one of ``query`` (text) / ``query_image`` (path) and exactly one of ``gold_id`` /
``gold_text`` / ``gold_image`` (paths relative to the pairs file's folder); other fields
are ignored. ``gold_text`` is embedded like the store's passages (its text mode). Any bad
line is an error naming the line: fitting on silently dropped pairs would be wrong.

A benchmark file is also a pairs file: each query of its ``fit`` split paired with each of
its ``gold_ids`` — the store's item when the store holds it, else the benchmark corpus's
item (a fit-only calib image, say), embedded here.

The retriever argument is anything with ``encoder``, ``store`` and ``embed_items`` (a
:class:`~mindgap.Retriever`); this module does not import it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .base import FitData

BENCHMARK_FORMAT = "mindgap-benchmark"


# -- lines ---------------------------------------------------------------------------------
def _lines(path: Path) -> list[tuple[int, str]]:
    from ..text import decode_text

    if not path.is_file():
        raise InputError("file not found", item=str(path))
    text = decode_text(path.read_bytes(), name=str(path))
    return [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]


def _json_line(path: Path, ln: int, raw: str) -> dict[str, Any]:
    from ..text import unicode_problem

    try:
        rec = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"line {ln}: not valid JSON ({getattr(exc, 'msg', exc)})", item=str(path)) from None
    if not isinstance(rec, dict):
        raise InputError(f"line {ln}: expected a JSON object", item=str(path))
    bad = unicode_problem(rec, "field")
    if bad:
        raise InputError(f"line {ln}: {bad.removeprefix('field.')}", item=str(path))
    return rec


def _resolve(base: Path, v: str) -> Path:
    p = Path(v).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def _path_field(path: Path, ln: int, rec: dict[str, Any], key: str, base: Path | None = None) -> str:
    v = rec[key]
    if not isinstance(v, str) or not v.strip():
        raise InputError(f"line {ln}: {key!r} must be a path string", item=str(path))
    p = _resolve(base or path.parent, v)
    if not p.is_file():
        raise InputError(f"line {ln}: {key} file not found ({p})", item=str(path))
    return str(p)


def _one_of(path: Path, ln: int, rec: dict[str, Any], keys: tuple[str, ...]) -> str:
    have = [k for k in keys if rec.get(k) is not None]
    if len(have) != 1:
        raise InputError(f"line {ln}: needs exactly one of {', '.join(map(repr, keys))}"
                         + (f" (has {', '.join(have)})" if have else ""), item=str(path))
    return have[0]


# -- benchmark files -----------------------------------------------------------------------
def benchmark_header(path: Path, lines: list[tuple[int, str]] | None = None) -> dict[str, Any] | None:
    """The header of a benchmark file (``format: mindgap-benchmark``), else ``None``."""
    lines = _lines(path) if lines is None else lines
    if not lines or not lines[0][1].lstrip().startswith("{"):
        return None
    try:
        rec = json.loads(lines[0][1])
    except ValueError:
        return None
    return rec if isinstance(rec, dict) and rec.get("format") == BENCHMARK_FORMAT else None


def _image_root(path: Path, header: dict[str, Any]) -> Path:
    """A benchmark's ``image_root``: absolute, relative to the file, or a shared data-set name."""
    root = str(header.get("image_root") or ".")
    p = _resolve(path.parent, root)
    if p.is_dir():
        return p
    from ..datasets import shared_data_dir

    cand = shared_data_dir() / root
    if cand.is_dir():
        return cand.resolve()
    raise InputError(f"the benchmark's image_root {root!r} is neither a folder nor a shared data set", item=str(path))


def _benchmark_queries(path: Path, lines: list[tuple[int, str]], split: str | None) -> list[tuple[int, dict]]:
    out = []
    for ln, raw in lines[1:]:
        rec = _json_line(path, ln, raw)
        if rec.get("type", "query") == "query" and (split is None or rec.get("split") == split):
            out.append((ln, rec))
    if not out:
        raise InputError(f"no {split + ' ' if split else ''}queries in the benchmark", item=str(path))
    return out


# -- query files ---------------------------------------------------------------------------
def read_queries(path: str | Path, *, split: str | None = None) -> list[dict[str, str]]:
    """Queries of a file → ``[{"id", "text"} | {"id", "image"}]`` (format in the module docstring).

    Args:
        path: a text, JSONL or benchmark file.
        split: benchmark files only: just the queries of this split (``fit`` / ``test``).
    """
    path = Path(path)
    lines = _lines(path)
    if not lines:
        raise InputError("no queries in the file", item=str(path))
    out: list[dict[str, str]] = []
    header = benchmark_header(path, lines)
    if header is not None:
        root = None
        for ln, rec in _benchmark_queries(path, lines, split):
            key = _one_of(path, ln, rec, ("query", "query_image"))
            if key == "query_image":
                root = root or _image_root(path, header)
                out.append({"id": str(rec.get("qid", f"q{ln}")), "image": _path_field(path, ln, rec, key, root)})
            else:
                out.append({"id": str(rec.get("qid", f"q{ln}")), "text": str(rec[key]).strip()})
        return out
    if path.suffix == ".jsonl" or lines[0][1].lstrip().startswith("{"):
        for ln, raw in lines:
            rec = _json_line(path, ln, raw)
            key = _one_of(path, ln, rec, ("query", "text", "image"))
            qid = str(rec.get("id", rec.get("qid", f"q{len(out) + 1}")))
            if key == "image":
                out.append({"id": qid, "image": _path_field(path, ln, rec, "image")})
            else:
                if not isinstance(rec[key], str) or not rec[key].strip():
                    raise InputError(f"line {ln}: empty query text", item=str(path))
                out.append({"id": qid, "text": rec[key].strip()})
    else:
        from ..text import check_unicode

        for i, (ln, raw) in enumerate(lines):
            check_unicode(raw, f"{path}:{ln}")
            out.append({"id": f"q{i + 1}", "text": raw.strip()})
    return out


# -- pairs files ---------------------------------------------------------------------------
Row = tuple[int, str, str, str, str]  # (line, query key, query, gold key, gold)


def _pair_rows(path: Path, lines: list[tuple[int, str]]) -> list[Row]:
    rows: list[Row] = []
    for ln, raw in lines:
        rec = _json_line(path, ln, raw)
        qk = _one_of(path, ln, rec, ("query", "query_image"))
        gk = _one_of(path, ln, rec, ("gold_id", "gold_text", "gold_image"))
        q = _path_field(path, ln, rec, qk) if qk == "query_image" else rec[qk]
        g = _path_field(path, ln, rec, gk) if gk == "gold_image" else rec[gk]
        if gk == "gold_id" and isinstance(g, int) and not isinstance(g, bool):
            g = str(g)  # integer ids, as the JSONL ingester stores them
        for key, v in ((qk, q), (gk, g)):
            if not isinstance(v, str) or not v.strip():
                raise InputError(f"line {ln}: {key!r} must be a non-empty string", item=str(path))
        rows.append((ln, qk, q, gk, g))
    return rows


def _benchmark_rows(path: Path, lines: list[tuple[int, str]], header: dict[str, Any], store: Any) -> list[Row]:
    """Fit-split queries × their gold ids; golds the store lacks come from the benchmark corpus."""
    root: Path | None = None
    rows: list[Row] = []
    for ln, rec in _benchmark_queries(path, lines, "fit"):
        qk = _one_of(path, ln, rec, ("query", "query_image"))
        if qk == "query_image":
            root = root or _image_root(path, header)
            q = _path_field(path, ln, rec, qk, root)
        else:
            q = str(rec[qk])
        golds = rec.get("gold_ids")
        if not isinstance(golds, list) or not golds:
            raise InputError(f"line {ln}: a benchmark query needs 'gold_ids'", item=str(path))
        rows += [(ln, qk, q, "gold_id", str(g)) for g in golds]
    missing = {r[4] for r in rows} - set(store.has(sorted({r[4] for r in rows})))
    if not missing:
        return rows
    corpus = _resolve(path.parent, str(header.get("corpus") or ""))
    found: dict[str, tuple[str, str]] = {}
    for ln, raw in _lines(corpus):
        rec = _json_line(corpus, ln, raw)
        iid = str(rec.get("id"))
        if iid in missing:
            if rec.get("modality") == "image":
                root = root or _image_root(path, header)
                found[iid] = ("gold_image", _path_field(corpus, ln, rec, "image", root))
            else:
                found[iid] = ("gold_text", str(rec.get("text") or ""))
    absent = sorted(missing - set(found))
    if absent:
        raise InputError(f"gold id {absent[0]!r} is neither in the store nor in the benchmark corpus", item=str(path))
    return [(ln, qk, q, *found[g]) if g in found else (ln, qk, q, gk, g) for ln, qk, q, gk, g in rows]


def read_pairs(path: str | Path, retr: Any) -> tuple[FitData, set[str]]:
    """A pairs (or benchmark) file → ``(FitData, image ids used)`` for the training-overlap check."""
    from ..images import load_image
    from ..types import MODALITIES, Item, Modality

    path = Path(path)
    lines = _lines(path)
    header = benchmark_header(path, lines)
    rows = _benchmark_rows(path, lines, header, retr.store) if header is not None else _pair_rows(path, lines)
    if not rows:
        raise InputError("no pairs in the file", item=str(path))
    enc = retr.encoder
    n = len(rows)
    qv = np.zeros((n, enc.dim), np.float32)
    gv = np.zeros((n, enc.dim), np.float32)
    gmod = [""] * n
    qmod = ["text" if r[1] == "query" else "image" for r in rows]
    image_ids: set[str] = set()
    ti = [i for i, r in enumerate(rows) if r[1] == "query"]
    if ti:
        qv[ti] = enc.encode_text([rows[i][2] for i in ti], show_progress=False)
    ii = [i for i, r in enumerate(rows) if r[1] == "query_image"]
    if ii:
        pil = [load_image(rows[i][2], name=f"{path.name}:{rows[i][0]} query_image") for i in ii]
        qv[ii] = enc.encode_image(pil, show_progress=False)
        image_ids |= {Path(rows[i][2]).stem for i in ii}
    by_id = [i for i, r in enumerate(rows) if r[3] == "gold_id"]
    if by_id:
        ids = sorted({rows[i][4] for i in by_id})
        items = dict(zip(ids, retr.store.get(ids)))
        vec: dict[str, np.ndarray] = {}
        for m in MODALITIES:
            got, mat = retr.store.vectors(m, [i for i in ids if items[i] is not None and items[i].modality == m])
            vec.update(zip(got, mat))
        for i in by_id:
            ln, gid = rows[i][0], rows[i][4]
            it = items.get(gid)
            if it is None or gid not in vec:
                raise InputError(f"line {ln}: gold_id {gid!r} is not in the store", item=str(path))
            gv[i], gmod[i] = vec[gid], it.modality.value
            if it.modality == Modality.IMAGE:
                image_ids |= {gid, Path(gid).stem} | ({Path(it.uri).stem} if it.uri else set())
                if it.metadata.get("image_id"):
                    image_ids.add(str(it.metadata["image_id"]))
    fresh = [i for i, r in enumerate(rows) if r[3] != "gold_id"]
    if fresh:
        items_new = [Item(id=f"{path.name}:{rows[i][0]}:{j}", modality=Modality.TEXT if rows[i][3] == "gold_text"
                          else Modality.IMAGE, text=rows[i][4] if rows[i][3] == "gold_text" else None,
                          uri=rows[i][4] if rows[i][3] == "gold_image" else None) for j, i in enumerate(fresh)]
        ok, mat, skipped = retr.embed_items(items_new)
        if skipped:
            raise InputError(f"gold of {skipped[0][0]} cannot be embedded: {skipped[0][1]}", item=str(path))
        pos = {it.id: j for j, it in enumerate(ok)}
        for i, it in zip(fresh, items_new):
            gv[i], gmod[i] = mat[pos[it.id]], it.modality.value
            if it.uri:
                image_ids.add(Path(it.uri).stem)
    return FitData(queries=qv, gold=gv, gold_modality=np.array(gmod), query_modality=np.array(qmod),
                   pairs="gold"), image_ids


def read_query_golds(path: str | Path, store: Any) -> list[tuple[str, list[str]]]:
    """A pairs (or benchmark) file → ``[(query text, [gold ids])]`` for fitting hybrid fusion weights
    (``mindgap fit-hybrid``): text queries whose golds are items of the store (``gold_id``). Lines of
    one query are grouped (a query may have several golds). Anything else is an error naming the line:
    hybrid evidence is words, and a gold outside the store has no candidates to learn from.
    """
    path = Path(path)
    lines = _lines(path)
    header = benchmark_header(path, lines)
    rows = _benchmark_rows(path, lines, header, store) if header is not None else _pair_rows(path, lines)
    if not rows:
        raise InputError("no pairs in the file", item=str(path))
    out: dict[str, list[str]] = {}
    for ln, qk, q, gk, g in rows:
        if qk != "query":
            raise InputError(f"line {ln}: hybrid weights are fitted on text queries ('query'), not {qk!r}",
                             item=str(path))
        if gk != "gold_id":
            raise InputError(f"line {ln}: hybrid weights need golds that are items of the store ('gold_id'), "
                             f"not {gk!r}", item=str(path))
        out.setdefault(q, [])
        if g not in out[q]:
            out[q].append(g)
    ids = sorted({g for gs in out.values() for g in gs})
    absent = sorted(set(ids) - set(store.has(ids)))
    if absent:
        ln = next(r[0] for r in rows if r[4] == absent[0])
        raise InputError(f"line {ln}: gold_id {absent[0]!r} is not in the store", item=str(path))
    return list(out.items())


__all__ = ["BENCHMARK_FORMAT", "benchmark_header", "read_pairs", "read_queries", "read_query_golds"]
