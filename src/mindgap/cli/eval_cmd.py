"""``mindgap eval`` (gap correctors on a retrieval benchmark) and ``mindgap make-benchmark``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..encoders import DEFAULT_OFFLINE_SPEC

from .common import console, err_console, print_json, table

BUILTIN_HELP = "'flickr8k' (Flickr8k test mixed captions, fit on the encoder's calib images) or 'mmqa' (MMQA dev slice)"


def _build(name: str, *, encoder: str, limit: int | None, fit_limit: int | None, seed: int, data: str | None) -> Any:
    from ..errors import InputError
    from ..eval.benchmarks import build_caption_benchmark, build_mmqa_benchmark

    if name == "flickr8k":
        return build_caption_benchmark(data or "flickr8k_224", encoder=encoder, limit=limit, fit_limit=fit_limit,
                                       seed=seed)
    if name == "mmqa":
        return build_mmqa_benchmark(data or "mmqa", seed=seed)
    raise InputError(f"unknown built-in benchmark {name!r}; use {BUILTIN_HELP} or a benchmark .jsonl file",
                     item="BENCH")


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def register(app: typer.Typer) -> None:
    """Register ``eval`` and ``make-benchmark`` on the app."""
    _register_eval(app)
    _register_make_benchmark(app)


def _register_eval(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        bench: str = typer.Argument(..., help=f"Benchmark JSONL file, or a built-in: {BUILTIN_HELP}."),
        store: str = typer.Option("exact:", "--store", help="Store URI; the benchmark corpus is indexed into it."),
        gaps: str = typer.Option("naive,zscore,zscore@pseudo,center,standardize,distnorm,linear,modal-clf,"
                                 "linear+zscore", "--gaps",
                                 help="Comma-separated corrector specs; SPEC@pseudo / SPEC@gold overrides --fit-pairs "
                                      "for one entry; unavailable ones are skipped with a warning."),
        out: Path = typer.Option(None, "--out", help="Report folder (default runs/eval/<benchmark name>)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the corpus sample (and of built-in subsets)."),
        encoder: str = typer.Option(None, "--encoder", help="Encoder spec (default: the store's, else the offline model)."),
        limit: int = typer.Option(None, "--limit", help="Built-in flickr8k: a seeded subset of N test images."),
        fit_limit: int = typer.Option(None, "--fit-limit", help="Built-in flickr8k: at most N fit (calib) images."),
        data: str = typer.Option(None, "--data", help="Built-ins: the data folder (default: the shared one)."),
        fit_pairs: str = typer.Option("gold", "--fit-pairs",
                                      help="'gold' (the fit split's labelled pairs) or 'pseudo' (each fit query's "
                                           "top-1 text and image, no labels)."),
        frontier_k: int = typer.Option(10, "--frontier-k", help="Recall cut-off of the ImageQ-vs-TextQ trade-off."),
        save_benchmark: bool = typer.Option(True, "--save-benchmark/--no-save-benchmark",
                                            help="Built-ins: write the benchmark JSONL under OUT/benchmark/."),
        corpus_sample: int = typer.Option(5000, "--corpus-sample", help="Items per modality for corpus statistics."),
        worst: int = typer.Option(10, "--worst", help="Worst queries listed per corrector."),
        allow_training_overlap: bool = typer.Option(False, "--allow-training-overlap",
                                                    help="Fit even on images the encoder was trained on."),
        json_out: bool = typer.Option(False, "--json", help="Print results.json to stdout."),
    ) -> None:
        """Fit gap correctors on a benchmark's fit split and compare them on its test split.

        Reports Recall@{1,3,5,10,50,100}, MRR and nDCG@10 for TextQ / ImageQ / overall,
        the gold rank within its modality vs. in the merged list, and writes report.md,
        results.json, cosine_hist.png, recall_curves.png and tradeoff.png (ImageQ vs. TextQ
        Recall@10: the exact sweep of a uniform image-score shift, every corrector a point).
        """
        import logging
        import warnings

        from ..eval.benchmarks import write_benchmark
        from ..eval.runner import EvalConfig, run_eval

        logging.getLogger("mindgap").setLevel(logging.ERROR)
        enc_spec = encoder
        if enc_spec is None:
            from ..stores import local_path, open_store

            p = local_path(store)
            if p is None or p.exists():  # an existing store says which encoder built it; a new one gets the default
                st = open_store(store, create=False)
                enc_spec = st.manifest.encoder_spec if st.manifest is not None else None
                st.close()
        if Path(bench).suffix == ".jsonl" or Path(bench).exists():
            b: Any = bench
            name = Path(bench).stem
        else:
            from ..encoders import DEFAULT_OFFLINE_SPEC

            b = _build(bench, encoder=enc_spec or DEFAULT_OFFLINE_SPEC, limit=limit, fit_limit=fit_limit, seed=seed,
                       data=data)
            name = b.name
        out_dir = out or Path("runs") / "eval" / name
        if not isinstance(b, str) and save_benchmark:
            write_benchmark(b, out_dir / "benchmark" / f"{name}.jsonl")
        cfg = EvalConfig(gaps=[g.strip() for g in gaps.split(",") if g.strip()], seed=seed,
                         corpus_sample=corpus_sample, worst=worst, fit_pairs=fit_pairs,
                         allow_training_overlap=allow_training_overlap, frontier_k=frontier_k)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = run_eval(b, store, encoder=enc_spec, cfg=cfg, out_dir=out_dir, progress=not json_out)
        for w in caught:
            if issubclass(w.category, UserWarning):
                err_console.print(f"[yellow]warning:[/] {w.message}", highlight=False)
        if json_out:
            print_json(res)
            return
        ks = cfg.ks
        for split in ("TextQ", "ImageQ", "overall"):
            m = {spec: g["metrics"][split] for spec, g in res["gaps"].items()}
            rows = [[spec] + [_f(v[f"R@{k}"]) for k in ks] + [_f(v["MRR"]), _f(v["nDCG@10"])] for spec, v in m.items()]
            console.print(table(f"{split} (n = {res['queries'][split]})",
                                ["gap"] + [f"R@{k}" for k in ks] + ["MRR", "nDCG"], rows))
        t = res.get("tradeoff")
        if t:
            best = t["best_overall_oracle"]
            console.print(f"trade-off (R@{t['k']}): a uniform image shift b reaches ImageQ ≤ {t['ceilings']['ImageQ']:.3f}"
                          f", TextQ ≤ {t['ceilings']['TextQ']:.3f}; best overall {best['overall']:.3f} at "
                          f"b = {best['b']:+.3f} (oracle) — see tradeoff.png", highlight=False)
        console.print(f"report: [bold]{out_dir / 'report.md'}[/]")


def _register_make_benchmark(app: typer.Typer) -> None:
    @app.command("make-benchmark")
    def make_benchmark(
        name: str = typer.Argument(..., help=BUILTIN_HELP),
        out: Path = typer.Argument(..., help="Benchmark file to write (its corpus file goes beside it)."),
        encoder: str = typer.Option(DEFAULT_OFFLINE_SPEC, help="flickr8k: model whose calib images are the fit split."),
        limit: int = typer.Option(None, help="flickr8k: seeded subset of N test images."),
        fit_limit: int = typer.Option(None, help="flickr8k: at most N fit images."),
        seed: int = typer.Option(0),
        data: str = typer.Option(None, help="Data folder (default: the shared one)."),
    ) -> None:
        """Write a built-in retrieval benchmark as JSONL (format: docs/benchmark-format.md)."""
        from ..eval.benchmarks import write_benchmark

        b = _build(name, encoder=encoder, limit=limit, fit_limit=fit_limit, seed=seed, data=data)
        p = write_benchmark(b, out)
        n = {s: sum(1 for q in b.queries if q.split == s) for s in ("fit", "test")}
        console.print(f"wrote [bold]{p}[/] ({n['fit']} fit / {n['test']} test queries, {len(b.corpus)} corpus items)")
