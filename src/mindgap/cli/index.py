"""``mindgap index`` (knowledge in), ``mindgap rm`` and ``mindgap info`` / ``stats``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from .common import console, err_console, print_json, table

STORE_HELP = "Store URI: exact:/dir, lancedb:/dir, milvus:/file.db, faiss:/dir (a bare path = LanceDB)."
#: ``--ann`` values; each backend validates its own (milvus also has ``ivfsq8``; ``flat`` = exact).
ANN_KINDS = ("hnsw", "ivf", "ivfpq", "flat")


def open_existing_store(uri: str) -> Any:
    """Open a store that must already exist (search, rm, info, fit-gap): a clear error otherwise.

    Opening some backends at a new path would create an empty store there: ``create=False``
    refuses a missing path, and a URI naming another backend than the store's is refused.
    """
    from ..errors import StoreError
    from ..stores import open_store

    st = open_store(uri, create=False)
    if st.manifest is None:
        st.close()
        raise StoreError("not a mindgap store (no manifest: nothing was indexed here)", item=uri)
    return st


def open_store_for_index(uri: str, ann: str | None) -> Any:
    """Open (or create) a store, passing ``--ann`` through as the backend's ``index`` option.

    ``--ann hnsw`` on ``lancedb:/kb`` is ``lancedb:/kb?index=hnsw``; further parameters (``M``,
    ``nlist``, ``nprobe``, ...) go in the URI. The exact store ignores it (with a warning).
    """
    from ..errors import InputError
    from ..stores import open_store

    if ann is None:
        return open_store(uri)
    ann = ann.strip().lower()
    if not ann:
        raise InputError(f"--ann needs an index kind ({', '.join(ANN_KINDS)})", item="--ann")
    if uri.split(":", 1)[0] == "exact":
        err_console.print("[yellow]warning:[/] the exact store always scans exactly; --ann is ignored")
        return open_store(uri)
    try:
        return open_store(uri, index=ann)
    except TypeError:
        raise InputError(f"this store backend takes no ANN index option (--ann {ann})", item=uri) from None


def _new_local_path(uri: str) -> Path | None:
    """The local path a store URI would create, when nothing is there yet (else ``None``)."""
    from ..stores import local_path

    p = local_path(uri)
    return p if p is not None and not p.exists() and not p.is_symlink() else None


def _remove_new_store(p: Path) -> None:
    """Remove what opening a new store created at ``p`` (a folder, or a milvus-lite file and its manifest).

    Only called for a path that did not exist when the command began.
    """
    import shutil

    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists():
        p.unlink(missing_ok=True)


#: Encoders loaded by this process, one per spec (in-process callers such as tests run many commands).
_ENCODERS: dict[str, Any] = {}


def make_retriever(st: Any, encoder: str | None = None, *, text_mode: str = "sentences") -> Any:
    """A :class:`~mindgap.Retriever` on an open store; a query/index encoder other than the
    store's is refused *before* any model is loaded."""
    from ..encoders import load_encoder
    from ..retriever import Retriever, resolve_encoder_spec

    spec = resolve_encoder_spec(st.manifest, encoder)  # another encoder than the store's: refused here
    if spec not in _ENCODERS:
        _ENCODERS[spec] = load_encoder(spec)
    return Retriever(st, encoder=_ENCODERS[spec], text_mode=text_mode)


def _reason_kind(reason: str) -> str:
    """A skip reason without its file-specific details, to count reasons."""
    r = reason.split(": ", 1)[-1] if reason.startswith(("/", "line ")) else reason
    return r.split(" (", 1)[0][:60]


def print_report(rep: Any, source: str, show_skipped: int) -> None:
    """The end-of-run summary: counts per modality, throughput, skipped items with reasons."""
    rows = []
    for m in ("text", "image"):
        rows.append([m, rep.added[m], rep.present[m]])
    rows.append(["total", sum(rep.added.values()), rep.already_present])
    console.print(table(f"indexed {source}", ["modality", "added", "already present"], rows))
    console.print(f"{rep.handled} item(s) in {rep.seconds:.1f} s ({rep.items_per_second:.1f} items/s); "
                  f"{len(rep.skipped)} skipped", highlight=False)
    if rep.skipped and show_skipped > 0:
        shown = rep.skipped[:show_skipped]
        console.print(table(f"skipped ({len(rep.skipped)})", ["item", "reason"],
                            [[escape(i), escape(r)] for i, r in shown]))
        if len(rep.skipped) > len(shown):
            kinds = Counter(_reason_kind(r) for _, r in rep.skipped)
            console.print(f"… {len(rep.skipped) - len(shown)} more (all in --json); by reason: "
                          + "; ".join(f"{escape(k)} ×{v}" for k, v in kinds.most_common(5)), highlight=False)


def register(app: typer.Typer) -> None:
    """Register ``index``, ``rm``, ``info`` and ``stats`` on the app."""

    @app.command("index")
    def index_cmd(
        source: str = typer.Argument(..., help="A folder (images + .txt/.md), a .jsonl file ({id, text|image, ...}), "
                                               "an MMQA folder, an image–caption folder (captions.jsonl), or a "
                                               "shared data set name (mmqa, flickr8k_224)."),
        store: str = typer.Option(..., "--store", "-s", help=STORE_HELP),
        encoder: str = typer.Option(None, "--encoder", help="Encoder spec (default: the store's; new stores: "
                                                            "the bundled offline model, DEFAULT_OFFLINE_SPEC)."),
        text_mode: str = typer.Option(None, "--text-mode",
                                      help="sentences (mean of sentence embeddings, default) or truncate (first "
                                           "tokens only; the ablation). New stores."),
        append: bool = typer.Option(False, "--append", help="Add a different source to a non-empty store."),
        ann: str = typer.Option(None, "--ann",
                                help="ANN index for lancedb / faiss / milvus stores: hnsw, ivf, ivfpq (= URI option "
                                     "index=...; tune with URI options M, nlist, nprobe)."),
        kind: str = typer.Option("auto", "--kind", help="Source kind: auto, folder, jsonl, mmqa, captions."),
        split: str = typer.Option(None, "--split", help="Image–caption folders: only this split (val, test, ...)."),
        limit: int = typer.Option(None, "--limit", help="Only the first N entries of the source."),
        tables: bool = typer.Option(False, "--mmqa-tables", help="MMQA: also index the tables as text passages."),
        captions_as_text: bool = typer.Option(False, "--captions-as-text",
                                              help="Image–caption folders: also index caption #0 as a text passage."),
        batch_size: int = typer.Option(64, "--batch-size", help="Items per committed batch."),
        workers: int = typer.Option(None, "--workers", help="Image decode threads (default: one per core, max 4)."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
        auto_gap: bool = typer.Option(True, "--auto-gap/--no-auto-gap",
                                      help="Fit the label-free gap corrector 'auto' (calibrated, pseudo queries from "
                                           "the store's own texts) and make it the default, so searches return both "
                                           "modalities (`--gap naive`: raw cosine)."),
        lexical: bool = typer.Option(False, "--lexical",
                                     help="Keep a lexical (BM25) side index for `search --hybrid` on disk, in step "
                                          "with this ingestion (without it, a hybrid search builds a transient one "
                                          "in memory and writes nothing)."),
        lexical_fields: str = typer.Option(None, "--lexical-fields",
                                           help="Comma-separated metadata fields the lexical index also covers "
                                                "(besides text, title, caption(s), alt(_text), name, filename, "
                                                "description and file-name words)."),
        show_skipped: int = typer.Option(20, "--show-skipped", help="Skipped items listed in the summary."),
        json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    ) -> None:
        """Ingest a source into a store: embed, commit batch by batch, report what was skipped and why.

        Ids are stable (relative paths, JSONL ids, MMQA doc ids): re-running the same source
        adds only what is missing — also how an interrupted run resumes. A different source
        into a non-empty store needs --append. The store records its encoder and refuses
        another one. Exit code 0 (even with skipped items), 2 if nothing could be indexed.
        """
        from ..errors import InputError
        from ..ingest import check_append, plan_source

        if text_mode is not None and text_mode not in ("sentences", "truncate"):
            raise InputError(f"--text-mode must be 'sentences' or 'truncate', got {text_mode!r}", item="--text-mode")
        _, _, key = plan_source(source, kind=kind, split=split, tables=tables, captions_as_text=captions_as_text)
        new_path = _new_local_path(store)
        st = open_store_for_index(store, ann)
        rep = None
        try:
            check_append(st, key, append)  # refusals come before any model is loaded
            m = st.manifest
            if m is not None and text_mode is not None and text_mode != m.text_mode:
                raise InputError(f"this store embeds passages with text mode {m.text_mode!r}; it cannot take "
                                 f"{text_mode!r} (build a new store for the ablation)", item="--text-mode")
            retr = make_retriever(st, encoder, text_mode=text_mode or "sentences")
            if lexical or lexical_fields is not None:
                fields = [f.strip() for f in (lexical_fields or "").split(",") if f.strip()]
                retr.enable_lexical(fields if lexical_fields is not None else None)
            rep = retr.index_source(source, append=append, kind=kind, split=split, limit=limit, tables=tables,
                                    captions_as_text=captions_as_text, batch_size=batch_size,
                                    progress=not no_progress, workers=workers)
            auto = None
            if auto_gap and sum(rep.added.values()) > 0:
                from ..gap.auto import fit_auto

                auto = fit_auto(retr)
        finally:
            st.close()
            if new_path is not None and (rep is None or sum(rep.added.values()) == 0):
                _remove_new_store(new_path)  # a store this command created but filled with nothing
        if json_out:
            print_json({"source": source, "store": store, **rep.to_dict(), "auto_gap": auto is not None})
        else:
            print_report(rep, source, show_skipped)
            if auto is not None:
                console.print("fitted gap corrector 'auto' (calibrated, label-free) — the store's default; "
                              "raw cosine: --gap naive", highlight=False)
        if sum(rep.added.values()) == 0 and rep.already_present == 0:
            first = f" (first: {rep.skipped[0][0]}: {rep.skipped[0][1]})" if rep.skipped else ""
            raise InputError(f"nothing could be indexed: {len(rep.skipped)} item(s) skipped{first}", item=source)

    @app.command("rm")
    def rm_cmd(
        store: str = typer.Argument(..., help=STORE_HELP),
        ids: list[str] = typer.Argument(None, help="Item ids to delete."),
        ids_file: Path = typer.Option(None, "--ids-file", help="A file with one id per line."),
        json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Delete items from a store by id (ids not in the store are reported; none found = exit 2)."""
        from ..errors import InputError
        from ..retriever import Retriever

        want = list(ids or [])
        if ids_file is not None:
            if not ids_file.is_file():
                raise InputError("file not found", item=str(ids_file))
            want += [ln.strip() for ln in ids_file.read_text(encoding="utf-8").splitlines() if ln.strip()]
        want = list(dict.fromkeys(want))
        if not want:
            raise InputError("give item ids to delete (arguments or --ids-file)", item="ids")
        st = open_existing_store(store)
        try:
            retr = Retriever(st)
            present = st.has(want)
            n = retr.delete([i for i in want if i in present], log=True)  # recorded in the manifest's sources
        finally:
            st.close()
        missing = [i for i in want if i not in present]
        if json_out:
            print_json({"deleted": n, "not_found": missing})
        else:
            console.print(f"deleted {n} item(s)", highlight=False)
            if missing:
                err_console.print(f"[yellow]not in the store ({len(missing)}):[/] " + escape(", ".join(missing[:20]))
                                  + (" …" if len(missing) > 20 else ""), highlight=False)
        if n == 0:
            raise InputError(f"none of the {len(want)} id(s) is in the store", item=store)

    def info(store: str = typer.Argument(..., help=STORE_HELP),
             json_out: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
        """Show what built a store (encoder, text mode, index, sources), its counts and fitted gap correctors."""
        st = open_existing_store(store)
        try:
            d = store_info(st)
        finally:
            st.close()
        if json_out:
            print_json(d)
            return
        m = d["manifest"]
        rows = [["store", d["store"]], ["encoder", f"{m['encoder_spec']} (dim {m['dim']})"],
                ["text mode", m["text_mode"]], ["index", json.dumps(m["index"])],
                ["items", f"{d['counts']['text']} text + {d['counts']['image']} image"],
                ["sources", "\n".join(m["sources"]) or "–"], ["default gap", m["default_gap"]],
                ["created / updated", f"{d['created']} / {d['updated']}"]]
        console.print(table("store", ["field", "value"], [[k, escape(str(v))] for k, v in rows]))
        if d["gap_correctors"]:
            console.print(table("fitted gap correctors", ["name", "summary"],
                                [[escape(k), escape(v)] for k, v in d["gap_correctors"].items()]))
        else:
            console.print("no fitted gap correctors (only 'naive'); fit one with `mindgap fit-gap`")

    app.command("info")(info)
    app.command("stats", help="Alias of `mindgap info`.")(info)


def _summary(entry: dict[str, Any]) -> str:
    """One line describing a fitted corrector from its manifest entry."""
    try:
        from ..gap import corrector_from_dict

        c = corrector_from_dict(entry)
        s = c.summary() if hasattr(c, "summary") else entry.get("state", {})
    except Exception as exc:  # noqa: BLE001 - a summary must never break `info`
        return f"(cannot load: {exc})"

    def short(v: Any) -> Any:
        if isinstance(v, dict) and "__ndarray__" in v:
            import numpy as np

            return f"array{tuple(np.asarray(v['__ndarray__']).shape)}"
        if isinstance(v, dict):
            return {k: short(x) for k, x in v.items()}
        if isinstance(v, float):
            return round(v, 4)
        if isinstance(v, list):
            return [short(x) for x in v] if len(v) <= 8 else f"list[{len(v)}]"
        if hasattr(v, "shape"):
            return f"array{tuple(v.shape)}"
        return v

    text = json.dumps(short(s), default=str)
    return text if len(text) <= 300 else text[:297] + "…"


def store_info(st: Any) -> dict[str, Any]:
    """Manifest, counts and corrector summaries of an open store (``mindgap info``)."""
    import time

    from ..types import MODALITIES

    m = st.manifest
    md = m.to_dict()

    def ts(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))

    return {"store": st.uri, "manifest": {k: v for k, v in md.items() if k != "gap" and k != "encoder_training"},
            "encoder_training": {k: (len(v) if isinstance(v, list) else v)
                                 for k, v in (m.encoder_training or {}).items()},
            "counts": {mm.value: st.count(mm) for mm in MODALITIES},
            "gap_correctors": {k: _summary(v) for k, v in m.gap.items()},
            "created": ts(m.created), "updated": ts(m.updated)}
