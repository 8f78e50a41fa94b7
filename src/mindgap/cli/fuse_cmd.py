"""``mindgap fuse``: merge another search's per-modality candidate lists through a fitted corrector.

No store: the corrector comes from a standalone file (``mindgap fit-gap --out``) or a
store's manifest, the candidates from a JSON file (``docs/corrector-format.md``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from .common import console, print_json, table


def _npz_keys(path: Path) -> list[str]:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return list(getattr(z, "files", []))
    except (OSError, ValueError, AttributeError):
        return []


def read_fuse_requests(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The request(s) in a candidates file (``-``: stdin): one object, or a list of them.
    Returns the requests and whether the file held a list."""
    from ..errors import InputError

    try:
        raw = sys.stdin.read() if str(path) == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("candidates file not found", item=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the candidates file: {exc}", item=str(path)) from None
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"the candidates file is not JSON: {exc}", item=str(path)) from None
    many = isinstance(obj, list)
    reqs = obj if many else [obj]
    for i, r in enumerate(reqs):
        where = f"{path}[{i}]" if many else str(path)
        if not isinstance(r, dict) or "candidates" not in r:
            raise InputError("each request is an object with 'candidates' ({\"text\": [...], \"image\": [...]})",
                             item=where)
        extra = sorted(set(r) - {"candidates", "query", "query_modality", "k", "min_prob", "id"})
        if extra:
            raise InputError(f"unknown field(s) {', '.join(extra)}; accepted: candidates, query, query_modality, k, "
                             "min_prob, id", item=where)
    return reqs, many


def _counts(spec: str | None) -> dict[str, int] | None:
    from ..errors import InputError

    if not spec:
        return None
    out: dict[str, int] = {}
    for part in spec.split(","):
        key, eq, val = part.partition("=")
        if not eq or key.strip() not in ("text", "image") or not val.strip().isdigit():
            raise InputError(f"--counts takes text=N,image=M, got {spec!r}", item="--counts")
        out[key.strip()] = int(val)
    return out


def register(app: typer.Typer) -> None:
    """Register ``fuse`` and ``fit-corrector`` on the app."""

    @app.command("fit-corrector")
    def fit_corrector_cmd(
        data: Path = typer.Argument(..., help="A .npz with queries, gold, gold_modality (pairs) and text, image "
                                              "(a corpus sample of the searched collection), as float arrays."),
        out: Path = typer.Option(..., "--out", help="Write the standalone corrector file here."),
        gap: str = typer.Option("calibrated", "--gap", help="Corrector spec (score-level: calibrated, zscore, "
                                                            "qnorm, ...)."),
        counts: str = typer.Option(None, "--counts", help="Collection sizes the corrector serves, text=N,image=M "
                                                          "(default: the sample sizes)."),
        pseudo: bool = typer.Option(False, "--pseudo", help="The pairs are pseudo (label-free) pairs."),
        encoder: str = typer.Option(None, "--encoder", help="Record the encoder spec that made the embeddings."),
    ) -> None:
        """Fit a corrector from embeddings in a .npz file — no mindgap store — and write it to a file.

        Keys: `queries` (n, d), `gold` (n, d), `gold_modality` (n strings), `text` / `image`
        (corpus samples, (m, d)); optional `query_modality` (n strings). Format of the output:
        docs/corrector-format.md; `mindgap fuse` reads it.
        """
        from ..gap.portable import fit_corrector, load_array, save_corrector

        qmod: Any = "text"
        if "query_modality" in _npz_keys(data):
            qmod = [str(x) for x in load_array(data, "query_modality", key="query_modality")]
        pc = fit_corrector(gap, queries=data, corpus=data, counts=_counts(counts), query_modality=qmod,
                           pairs="pseudo" if pseudo else "gold", encoder=encoder)
        pc.meta["fitted_on"]["source"] = str(data)
        save_corrector(pc, out)
        console.print(f"wrote {out} ({pc.corrector.name}, {pc.meta['fitted_on']['queries']} pairs, dim {pc.dim})",
                      highlight=False, markup=False)

    @app.command("fuse")
    def fuse_cmd(
        corrector: Path = typer.Argument(..., help="A corrector file (`mindgap fit-gap --out`), a store's "
                                                   "manifest.json or a store folder."),
        candidates: Path = typer.Argument(..., help="JSON: {\"candidates\": {\"text\": [{\"id\", \"cosine\"}, ...], "
                                                    "\"image\": [...]}, \"query\"?: [floats], \"query_modality\"?, "
                                                    "\"k\"?, \"min_prob\"?} or a list of them; - reads stdin."),
        name: str = typer.Option(None, "--name", help="With a manifest: which fitted corrector (default: the "
                                                      "store's default)."),
        k: int = typer.Option(None, "-k", "--k", help="Results (overrides the file's 'k'; default 10)."),
        min_prob: float = typer.Option(None, "--min-prob", min=0.0, max=1.0,
                                       help="Drop candidates whose P(relevant) is below this (calibrated)."),
        json_out: bool = typer.Option(False, "--json", help="Print the merged list(s) as JSON."),
    ) -> None:
        """Merge per-modality candidate lists from any search into one gap-corrected list.

        The lists are ids with raw cosines, e.g. from Qdrant, LanceDB or a LlamaIndex index;
        the corrector was fitted elsewhere (`mindgap fit-gap STORE --out corrector.json`, or
        `mindgap.gap.portable.fit_corrector` on arrays). Format: docs/corrector-format.md.
        """
        from ..gap.portable import fuse, load_corrector

        pc = load_corrector(corrector, name=name)
        reqs, many = read_fuse_requests(candidates)
        outs = []
        for r in reqs:
            hits = fuse(r["candidates"], pc, k=k if k is not None else r.get("k", 10), query=r.get("query"),
                        query_modality=r.get("query_modality", "text"),
                        min_prob=min_prob if min_prob is not None else r.get("min_prob"))
            rec = {"corrector": pc.meta.get("name") or pc.corrector.name, "hits": [h.to_dict() for h in hits]}
            if "id" in r:
                rec = {"id": r["id"], **rec}
            outs.append(rec)
        if json_out:
            print_json(outs if many else outs[0])
            return
        for i, rec in enumerate(outs):
            title = f"{rec.get('id', i + 1) if many else 'fused'} — corrector {rec['corrector']}"
            rows = [[h["rank"], h["id"], h["modality"], round(h["cosine"], 4), round(h["score"], 4),
                     "–" if h.get("probability") is None else round(h["probability"], 4), h["modality_rank"]]
                    for h in rec["hits"]]
            console.print(table(title, ["#", "id", "modality", "cosine", "score", "P(rel)", "mod. rank"], rows))
