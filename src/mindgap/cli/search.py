"""``mindgap search`` (single or batched, gap-corrected), ``mindgap fit-hybrid`` and ``mindgap fit-gap``.

Query files and pairs files (formats, benchmark files included) are read by
:mod:`mindgap.gap.pairs`; this module parses arguments and prints.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from ..gap.pairs import benchmark_header, read_pairs, read_queries
from .common import console, err_console, print_json, table
from .index import STORE_HELP, make_retriever, open_existing_store

GAP_HELP = "Gap corrector (naive, zscore, center, ...; a fitted name). Default: the store's default."


# -- output ------------------------------------------------------------------------------
def _preview(h: Any, n: int, *, short_paths: bool = False) -> str:
    if h.modality.value == "image":
        s = h.uri or ""
        if short_paths and s:
            s = Path(s).name  # the file name, whole: a cut path names nothing (the full path: --json)
        if h.text:
            s = f"{s}  ({h.text[:n]})"
        return s
    t = " ".join((h.text or "").split())
    return t[:n] + ("…" if len(t) > n else "")


def short_id(s: str, width: int) -> str:
    """``s`` in at most ``width`` cells, cut in the middle (ids differ at both ends).

    Example:
        >>> short_id("img:1000268201_693b08cb0e", 16)
        'img:100…3b08cb0e'
    """
    if len(s) <= width:
        return s
    head = (width - 1) // 2
    return s[:head] + "…" + s[len(s) - (width - 1 - head):]


#: Below this many columns the table drops cosine and mod.rank (both stay in --json).
NARROW = 100


def hits_table(title: str, hits: list[Any], snippet: int, width: int | None = None) -> Any:
    """rank, id, modality, raw cosine, corrected score, rank within its modality, text or image.

    Every row stays one line at any terminal width: images show their file name (the full
    path is in ``--json``); in a narrow terminal (under :data:`NARROW` columns) ids are cut
    in the middle and the raw cosine and per-modality rank are left to ``--json``.
    """
    from rich.table import Table

    width = width or console.width
    narrow = width < NARROW
    idw = min(max((len(h.id) for h in hits), default=2), 20 if narrow else 32)
    from rich import box

    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD if narrow else box.HEAVY_HEAD)
    t.add_column("#" if narrow else "rank", justify="right", no_wrap=True)
    t.add_column("id", no_wrap=True, min_width=min(idw, 12), max_width=idw)
    t.add_column("mod" if narrow else "modality", no_wrap=True)
    if not narrow:
        t.add_column("cosine", justify="right", no_wrap=True)
    t.add_column("score", justify="right", no_wrap=True)
    if not narrow:
        t.add_column("mod.rank", justify="right", no_wrap=True)
    # the fixed columns' cells (borders and padding included) leave the rest to the preview
    fixed = (25 + idw) if narrow else (57 + idw)
    t.add_column("text / image", no_wrap=True, overflow="ellipsis", max_width=max(12, width - fixed))
    for h in hits:
        mod = ("img" if h.modality.value == "image" else "txt") if narrow else h.modality.value
        row = [str(h.rank), escape(short_id(h.id, idw)), mod]
        row += [f"{h.score:.3f}"] if narrow else [f"{h.cosine:.4f}", f"{h.score:.4f}", str(h.modality_rank)]
        t.add_row(*row, escape(_preview(h, snippet, short_paths=True)))
    return t


def _search_batched(retr: Any, queries: list[dict[str, str]], *, k: int, gap: str | None, modality: str | None,
                    batch_size: int, min_prob: float | None = None, hybrid: str | None = None) -> list[list[Any]]:
    """Text queries through ``Retriever.search_many``, image queries through ``search_many_images``."""
    res: list[list[Any] | None] = [None] * len(queries)
    ti = [i for i, q in enumerate(queries) if "text" in q]
    if ti:
        for i, hits in zip(ti, retr.search_many([queries[i]["text"] for i in ti], k=k, gap=gap, modality=modality,
                                                batch_size=batch_size, min_prob=min_prob, hybrid=hybrid)):
            res[i] = hits
    ii = [i for i, q in enumerate(queries) if "image" in q]
    if ii:
        for i, hits in zip(ii, retr.search_many_images([queries[i]["image"] for i in ii], k=k, gap=gap,
                                                       modality=modality, batch_size=batch_size, min_prob=min_prob)):
            res[i] = hits
    return [r or [] for r in res]


def register(app: typer.Typer) -> None:
    """Register ``search``, ``fit-hybrid`` and ``fit-gap`` on the app."""

    @app.command("search")
    def search_cmd(
        store: str = typer.Argument(..., help=STORE_HELP),
        query: str = typer.Argument(None, help="Query text (or use --image / --queries)."),
        image: Path = typer.Option(None, "--image", help="Query image file."),
        k: int = typer.Option(10, "-k", "--k", help="Results."),
        gap: str = typer.Option(None, "--gap", help=GAP_HELP),
        modality: str = typer.Option(None, "--modality", help="Search only text or only image items."),
        queries: Path = typer.Option(None, "--queries", help="Batched: a file of queries (one per line, or JSONL)."),
        encoder: str = typer.Option(None, "--encoder", help="Query encoder (must be the store's)."),
        batch_size: int = typer.Option(256, "--batch-size", help="--queries: queries per encoder/store batch."),
        out: Path = typer.Option(None, "--out", help="--queries: write one JSON line per query here."),
        snippet: int = typer.Option(60, "--snippet", help="Characters of passage text shown."),
        min_prob: float = typer.Option(None, "--min-prob", min=0.0, max=1.0,
                                       help="Drop results whose calibrated P(relevant) is below this (probability "
                                            "correctors: calibrated, the default 'auto'); none left = nothing in the "
                                            "store is likely relevant."),
        hybrid: bool = typer.Option(False, "--hybrid",
                                    help="Add BM25 evidence from the store's lexical side index (the stored "
                                         "texts, titles, captions, alt text and file names; in memory when the store "
                                         "was indexed without --lexical) to text queries, fused into one calibrated "
                                         "P(relevant); an item with no text keeps its dense probability."),
        fusion: str = typer.Option("calibrated", "--fusion",
                                   help="--hybrid fusion rule: calibrated (default), or a peer rule for comparison: "
                                        "weighted (0.7 dense / 0.3 BM25), rrf, minmax, dbsf, lexical (BM25 only)."),
        json_out: bool = typer.Option(False, "--json", help="Print results as JSON."),
    ) -> None:
        """Gap-corrected exact top-k over a mixed text + image store.

        Each modality is searched for its own top-k by cosine, rescored by the corrector
        (e.g. zscore) and merged — no full scan of the other modality. Columns: merged rank,
        id, modality, raw cosine, corrected score, rank within its modality, text or image.
        """
        from ..errors import InputError

        given = [x for x in (query, image, queries) if x is not None]
        if len(given) != 1:
            raise InputError("give exactly one of: a query text, --image FILE, --queries FILE", item="query")
        from ..hybrid import parse_rule

        rule = parse_rule(fusion) if hybrid else None
        if hybrid and rule is None:
            raise InputError("--fusion must name a hybrid rule (calibrated, weighted, rrf, minmax, dbsf, lexical)",
                             item="fusion")
        st = open_existing_store(store)
        try:
            retr = make_retriever(st, encoder)
            gap_name = retr.gap_name(gap)
            if queries is None:
                hits = retr.search(query, image=str(image) if image is not None else None, k=k, gap=gap,
                                   modality=modality, min_prob=min_prob, hybrid=rule)
                if json_out:
                    print_json({"query": query, "image": str(image) if image else None, "gap": gap_name, "k": k,
                                "hybrid": rule, "hits": [h.to_dict() for h in hits]})
                else:
                    console.print(hits_table(f"{escape(query or str(image))!s} — gap {gap_name}"
                                             + (f", hybrid {rule}" if rule else ""), hits, snippet))
                return
            qs = read_queries(queries)
            res = _search_batched(retr, qs, k=k, gap=gap, modality=modality, batch_size=batch_size, min_prob=min_prob,
                                  hybrid=rule)
        finally:
            st.close()
        recs = [{**q, "gap": gap_name, "k": k, "hits": [h.to_dict() for h in hits]} for q, hits in zip(qs, res)]
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            with out.open("w", encoding="utf-8") as fh:
                for r in recs:
                    fh.write(json.dumps(r, ensure_ascii=False) + "\n")
            err_console.print(f"wrote {len(recs)} result(s) to {out}")
        if json_out:
            print_json(recs)
        elif out is None:
            if len(qs) <= 5:
                for q, hits in zip(qs, res):
                    label = escape(q.get("text") or q.get("image", ""))
                    console.print(hits_table(f"{q['id']}: {label}", hits, snippet))
            else:
                rows = [[q["id"], escape((q.get("text") or q.get("image", ""))[:40]),
                         escape(h[0].id) if h else "–", h[0].modality.value if h else "–",
                         round(h[0].score, 4) if h else "–"] for q, h in zip(qs, res)]
                console.print(table(f"{len(qs)} queries — top hit each (gap {gap_name}; all hits: --json / --out)",
                                    ["query id", "query", "top id", "modality", "score"], rows))

    @app.command("fit-hybrid")
    def fit_hybrid_cmd(
        store: str = typer.Argument(..., help=STORE_HELP),
        pairs: Path = typer.Option(None, "--pairs", help="Labelled pairs JSONL ({query, gold_id}: text queries and "
                                                          "items of the store), or a benchmark file (its fit split)."),
        gap: str = typer.Option(None, "--gap", help="The probability corrector whose dense evidence is fused "
                                                    "(default: the store's, 'auto')."),
        reset: bool = typer.Option(False, "--reset", help="Drop the store's fitted weights (back to the built-in "
                                                          "defaults)."),
        json_out: bool = typer.Option(False, "--json", help="Print the fitted weights as JSON."),
    ) -> None:
        """Fit the store's hybrid fusion weights (BM25 + dense + linked evidence) on labelled queries.

        Without it a store uses the built-in weights (fitted on MMQA and Flickr8k fit splits). The
        weights go into the store's manifest; `mindgap search --hybrid` and the server use them.
        Fitting turns the store's on-disk lexical side index on (as `mindgap index --lexical`).
        """
        from ..errors import InputError
        from ..gap.pairs import read_query_golds
        from ..hybrid import FEATURES, fit_store_fusion

        if reset == (pairs is not None):
            raise InputError("give --pairs FILE (fit) or --reset (drop the fitted weights)", item="--pairs")
        st = open_existing_store(store)
        try:
            retr = make_retriever(st)
            if reset:
                had = retr.save_fusion_model(None)
                console.print("dropped the fitted hybrid weights; the built-in ones apply" if had
                              else "no fitted hybrid weights (the built-in ones apply)", highlight=False)
                return
            queries = read_query_golds(pairs, st)
            model = fit_store_fusion(retr, queries, gap=gap, fitted_on=f"{len(queries)} labelled queries from "
                                                                       f"{pairs.name}, dense {retr.gap_name(gap)}")
        finally:
            st.close()
        d = model.to_dict()
        if json_out:
            print_json({"queries": len(queries), "features": list(FEATURES), "fusion": d})
            return
        mods = list(d["coef"])
        rows = [[f"w · {f} (items with text)"] + [f"{d['coef'][m][i]:+.3f}" for m in mods] for i, f in enumerate(FEATURES)]
        rows.append(["intercept (items with text)"] + [f"{d['intercept'][m]:+.3f}" for m in mods])
        rows.append(["a · logit P_dense + b (items without text)"]
                    + [f"{d['no_text'][m][0]:+.3f}, {d['no_text'][m][1]:+.3f}" for m in mods])
        rows.append(["gold candidates (with / without text)"]
                    + [f"{d['positives'].get(m, 0)} / {d['positives'].get(f'{m} (no text)', 0)}" for m in mods])
        console.print(table(f"hybrid weights fitted on {len(queries)} queries (item modality →)", ["", *mods], rows))
        thin = [m for m in d["coef"] if d["positives"].get(m, 0) + d["positives"].get(f"{m} (no text)", 0) < 3]
        if thin:
            err_console.print(f"[yellow]warning:[/] fewer than 3 gold candidates for {', '.join(thin)} items: "
                              "they keep their dense probability", highlight=False)

    @app.command("fit-gap")
    def fit_gap_cmd(
        store: str = typer.Argument(..., help=STORE_HELP),
        gap: str = typer.Option("zscore", "--gap", help="Corrector spec: zscore, center, standardize, distnorm, "
                                                        "linear[:procrustes], modal-clf, linear+zscore, ..."),
        pairs: Path = typer.Option(None, "--pairs", help="Labelled pairs JSONL ({query|query_image, "
                                                          "gold_id|gold_text|gold_image})."),
        pseudo: Path = typer.Option(None, "--pseudo", help="Label-free: a file of text queries (pseudo pairs = "
                                                           "each query's top-1 text and top-1 image)."),
        name: str = typer.Option(None, "--name", help="Save under this name (default: the spec)."),
        default: bool = typer.Option(False, "--default", help="Make it the store's default corrector."),
        corpus_sample: int = typer.Option(5000, "--corpus-sample", help="Items per modality for corpus statistics."),
        allow_training_overlap: bool = typer.Option(False, "--allow-training-overlap",
                                                    help="Fit even on images the encoder was trained on (warns)."),
        json_out: bool = typer.Option(False, "--json", help="Print the fitted corrector as JSON."),
        out_file: Path = typer.Option(None, "--out", help="Also write the fitted corrector to this standalone JSON "
                                                          "file (docs/corrector-format.md; `mindgap fuse` reads it)."),
    ) -> None:
        """Fit a gap corrector on labelled (--pairs) or pseudo (--pseudo) pairs and store it with the index.

        Corpus-statistics correctors (center, standardize, distnorm) need neither. The fitted
        state goes into the store's manifest; `mindgap search --gap NAME` uses it. `--out FILE`
        also writes it as a standalone file for fusing another search's results (`mindgap fuse`).
        """
        from ..errors import InputError
        from ..gap import make_corrector

        if pairs is not None and pseudo is not None:
            raise InputError("give --pairs or --pseudo, not both", item="--pairs")
        needs = make_corrector(gap).needs_pairs
        if out_file is not None:  # a corrector that moves embeddings cannot travel: refuse before fitting
            from ..gap.portable import _check_portable

            _check_portable(make_corrector(gap))
        if needs and pairs is None and pseudo is None:
            raise InputError(f"{gap!r} is fitted on (query, gold) pairs: give --pairs FILE or --pseudo QUERIES",
                             item="--pairs")
        st = open_existing_store(store)
        caught: list[Any] = []
        try:
            retr = make_retriever(st)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if pairs is not None:
                    data, image_ids = read_pairs(pairs, retr)
                    retr.check_training_overlap(image_ids, allow=allow_training_overlap)
                    n_pairs, kind = len(data.queries), "gold"
                    corr = retr.fit_gap(gap, data, corpus_sample=corpus_sample, name=name, make_default=default)
                elif pseudo is not None:
                    qs = read_queries(pseudo, split="fit") if benchmark_header(pseudo) else read_queries(pseudo)
                    if any("image" in q for q in qs):
                        raise InputError("--pseudo takes text queries only", item=str(pseudo))
                    n_pairs, kind = len(qs), "pseudo"
                    corr = retr.fit_gap(gap, pseudo_queries=[q["text"] for q in qs], corpus_sample=corpus_sample,
                                        name=name, make_default=default)
                else:
                    n_pairs, kind = 0, "corpus statistics"
                    corr = retr.fit_gap(gap, corpus_sample=corpus_sample, name=name, make_default=default)
            key = name or gap
            default_now = retr.manifest.default_gap
            if out_file is not None:
                from ..gap.portable import save_corrector
                from ..types import MODALITIES

                save_corrector(corr, out_file, encoder=retr.manifest.encoder_spec, dim=retr.manifest.dim, name=key,
                               fitted_on={"pairs": kind, "queries": n_pairs, "source": st.uri,
                                          "counts": {m.value: st.count(m) for m in MODALITIES}})
                err_console.print(f"wrote {out_file}")
        finally:
            st.close()
        for w in caught:
            if issubclass(w.category, UserWarning):
                err_console.print(f"[yellow]warning:[/] {escape(str(w.message))}", highlight=False)
        from .index import _summary

        summary = _summary(corr.to_dict())
        if json_out:
            print_json({"name": key, "spec": gap, "fitted_on": kind, "queries": n_pairs, "default": default_now == key,
                        "corrector": corr.to_dict()})
            return
        console.print(table(f"fitted {key}", ["field", "value"], [
            ["spec", gap], ["fitted on", f"{n_pairs} {kind} quer{'y' if n_pairs == 1 else 'ies'}" if n_pairs else kind],
            ["store default", "yes" if default_now == key else f"no ({default_now})"], ["summary", escape(summary)]]))
        console.print(f"use it: mindgap search {store} \"...\" --gap {key}", highlight=False, markup=False)
