"""``mindgap diagnose`` (modality-gap diagnostics) and ``mindgap lab`` (information-imbalance experiment)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..encoders import DEFAULT_OFFLINE_SPEC

from .common import console, print_json, table


def register(app: typer.Typer) -> None:
    """Register ``diagnose`` and ``lab`` on the app."""

    @app.command("diagnose")
    def diagnose(
        encoder: str = typer.Option(DEFAULT_OFFLINE_SPEC, "--encoder", help="Encoder spec."),
        data: str = typer.Option("flickr8k_224", "--data", help="Image–caption folder or shared data name."),
        split: str = typer.Option("test", "--split", help="Split to measure."),
        out: Path = typer.Option(None, "--out", help="Report folder (default runs/diagnose/<split>)."),
        limit: int = typer.Option(None, "--limit", help="Seeded subset of N images."),
        fit_split: str = typer.Option(None, "--fit-split",
                                      help="Split the center/linear fixes are fitted on (default: the encoder's "
                                           "calib images, else a 30% hold-out)."),
        fit_limit: int = typer.Option(None, "--fit-limit", help="At most N fitting images."),
        fixes: str = typer.Option("center,linear", "--fixes", help="Fixes to apply, comma-separated ('' for none)."),
        captions_per_image: int = typer.Option(None, "--captions-per-image", help="Use only the first N captions."),
        seed: int = typer.Option(0, "--seed"),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Measure the modality gap of an encoder and the effect of the center / linear fixes.

        Centroid gap (norm, cosine), how many dimensions carry 50 % / 90 % of it, linear
        separability (held-out probe), matched vs. unmatched cosines, image → text logit
        entropy. Writes report.md, diagnose.json and PNGs.
        """
        from ..eval.diagnose import DiagnoseConfig, run_diagnose

        cfg = DiagnoseConfig(data=data, split=split, limit=limit, fit_split=fit_split, fit_limit=fit_limit,
                             fixes=tuple(f.strip() for f in fixes.split(",") if f.strip()), seed=seed,
                             captions_per_image=captions_per_image)
        out_dir = out or Path("runs") / "diagnose" / split
        res = run_diagnose(encoder, cfg, out_dir=out_dir, progress=not json_out)
        if json_out:
            print_json(res)
            return
        v = res["variants"]
        names = list(v)
        rows = [
            ["centroid gap norm"] + [v[n]["centroid"]["gap_norm"] for n in names],
            ["dims for 50% / 90% of gap"] + [f"{v[n]['centroid']['dims_50']} / {v[n]['centroid']['dims_90']}" for n in names],
            ["probe accuracy"] + [v[n]["separability"]["probe_accuracy"] for n in names],
            ["matched / unmatched cos"] + [f"{v[n]['cosines']['matched_mean']:.3f} / {v[n]['cosines']['unmatched_mean']:.3f}"
                                           for n in names],
            ["logit entropy (norm.)"] + [v[n]["logit_entropy"]["entropy_normalised"] for n in names],
        ]
        console.print(table(f"{res['encoder']} on {data}/{split} ({res['images']} images)", ["measure"] + names, rows))
        console.print(f"report: [bold]{out_dir / 'report.md'}[/]")

    @app.command("lab")
    def lab(
        quick: bool = typer.Option(False, "--quick", help="Tiny run (~1–2 min) for smoke tests."),
        out: Path = typer.Option(None, "--out", help="Report folder (default runs/lab)."),
        levels: str = typer.Option(None, "--levels", help="Caption-richness levels, comma-separated (default: all)."),
        seed: int = typer.Option(0, "--seed"),
        json_out: bool = typer.Option(False, "--json"),
        replot: bool = typer.Option(False, "--replot", help="Only re-render report.md and the PNGs from OUT/lab.json."),
    ) -> None:
        """Information-imbalance experiment: does richer captioning shrink the modality gap?

        Trains one small dual encoder per caption-richness level on synthetic scenes (same
        images, captions from object names only to attributes and relations) and measures
        the gap and object- vs. attribute zero-shot accuracy. Default ≈ 20 CPU-minutes;
        --quick is a smoke test; --replot re-renders OUT/report.md and the PNGs from lab.json.
        """
        from ..eval.lab import LabConfig, replot as replot_lab, run_lab

        cfg = LabConfig.quick(seed=seed) if quick else LabConfig(seed=seed)
        if levels:
            cfg.levels = [lv.strip() for lv in levels.split(",") if lv.strip()]
        out_dir = out or Path("runs") / "lab"
        res = replot_lab(out_dir) if replot else run_lab(cfg, out_dir=out_dir, progress=not json_out)
        if json_out:
            print_json(res)
            return
        rows = [[r["level"], r["gap_norm"], r["probe_accuracy"], r["object_accuracy"], r["attribute_accuracy"],
                 r["logit_entropy_normalised"]] for r in res["levels"]]
        console.print(table("information imbalance: caption richness vs. gap", [
            "richness", "gap norm", "probe acc", "object zero-shot", "attribute zero-shot", "logit entropy"], rows))
        console.print(f"report: [bold]{out_dir / 'report.md'}[/]")
