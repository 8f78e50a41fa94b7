"""``mindgap caption``: mRAG-gim image description (fit, describe, refine, eval, report).

``mindgap caption IMAGE... --model DIR`` describes images (the default sub-command,
``describe``); ``fit``, ``refine``, ``eval`` and ``report`` are sub-commands. An image file
literally named like a sub-command needs the explicit form ``mindgap caption describe fit``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import typer
from typer.core import TyperGroup

from .common import console, err_console, print_json, table

GEN_HELP = "Generator spec: local:smollm2 (offline default), extractive, openai:MODEL or openai:MODEL@BASE_URL, or none (retrieval only)."
DEFAULT_DATA = "flickr8k_224"


class _DefaultDescribe(TyperGroup):
    """A group whose unknown first argument means ``describe`` (``mindgap caption a.jpg``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["describe", *args]
        return super().parse_args(ctx, args)


def _generator(spec: str | None) -> Any:
    if spec is None or spec.strip().lower() in {"", "none", "retrieval"}:
        return None
    from ..rag.generators import load_generator

    return load_generator(spec)


def _records(data: str, split: str) -> list[Any]:
    from ..datasets import load_caption_set

    return load_caption_set(data, split=split)


def _select_images(records: list[Any], images: str, encoder_spec: str) -> list[Any]:
    """``all``, ``calib`` / ``train`` (the offline encoder's own split of its data) or a file of ids."""
    from ..errors import InputError

    if images == "all":
        return records
    if images in {"calib", "train"}:
        from ..encoders.dual import resolve_model_dir
        from ..encoders.dual_model import DualEncoderModel

        if not encoder_spec.startswith("mindgap:"):
            raise InputError("--images calib/train needs a mindgap: encoder (its config lists them)", item="--images")
        cfg = DualEncoderModel.read_config(resolve_model_dir(encoder_spec.split(":", 1)[1]))
        keep = set(cfg["training"]["data"][f"{images}_images"])
    else:
        p = Path(images)
        if not p.is_file():
            raise InputError("expected all, calib, train or a file with one image id per line", item=images)
        keep = {ln.strip() for ln in p.read_text().splitlines() if ln.strip()}
    out = [r for r in records if r.image_id in keep]
    if not out:
        raise InputError(f"none of the selected images are in this split ({len(keep)} ids)", item="--images")
    return out


def register(app: typer.Typer) -> None:
    """Register the ``caption`` sub-app on ``app``."""
    cap = typer.Typer(cls=_DefaultDescribe, no_args_is_help=True, add_completion=False,
                      help="mRAG-gim: describe images by mapping them across the modality gap to training captions. "
                           "`mindgap caption IMAGE... --model DIR` runs `describe`.")
    app.add_typer(cap, name="caption")

    @cap.command("describe")
    def describe_cmd(
        images: list[Path] = typer.Argument(..., help="Image files."),
        model: Path = typer.Option(..., "--model", "-m", help="Caption model directory (from `caption fit`)."),
        k: int = typer.Option(5, "-k", "--k", help="Training captions retrieved per image."),
        order: str = typer.Option("s2d", "--order", help="s2d: most similar first (best in the paper); d2s: last."),
        generator: str = typer.Option("local:smollm2", "--generator", "-g", help=GEN_HELP),
        max_tokens: int = typer.Option(32, "--max-tokens"),
        json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Describe images: map, retrieve top-k training captions, let the generator write a new one.

        A corrupt or unreadable image is reported and skipped; the others are described
        (exit code 1 when some were skipped, 2 when all were).
        """
        from ..caption.generate import Captioner
        from ..caption.map import CaptionModel
        from ..errors import InputError

        cm = CaptionModel.load(model)
        results = Captioner(cm, _generator(generator), k=k, order=order, max_tokens=max_tokens).describe(images)
        bad = [r for r in results if r.error]
        if json_out:
            print_json([r.to_dict() for r in results])
        else:
            for r in results:
                if r.error:
                    continue
                console.print(f"[bold]{r.image}[/]: {r.caption}" + (" [dim](fallback: top caption)[/]" if r.fallback else ""),
                              highlight=False)
                rows = [[i, round(x["score"], 4), x["text"]] for i, x in enumerate(r.retrieved, 1)]
                console.print(table(f"retrieved ({r.seconds:.2f} s)", ["rank", "score", "caption"], rows))
        for r in bad:
            err_console.print(f"[yellow]skipped[/] {r.error}", highlight=False)
        if bad and len(bad) == len(results):
            raise InputError(f"no image could be read ({len(bad)} skipped)", item="images")
        if bad:
            raise SystemExit(1)  # (mindgap.cli.main drops typer.Exit codes under standalone_mode=False)

    @cap.command("fit")
    def fit_cmd(
        out: Path = typer.Option(..., "--out", help="Model directory to write (replaced atomically)."),
        data: str = typer.Option(DEFAULT_DATA, "--data", help="captions.jsonl folder or shared data name."),
        split: str = typer.Option("val", "--split", help="Training split (never test)."),
        images: str = typer.Option("all", "--images",
                                   help="all, calib / train (the mindgap encoder's own held-out / training images), "
                                        "or a file of image ids."),
        encoder: str = typer.Option(None, "--encoder", help="Encoder spec (default: the offline mindgap model)."),
        kind: str = typer.Option("ols", "--kind", help="ols (closed form) or procrustes (orthogonal)."),
        ridge: str = typer.Option("0", "--ridge", help="Ridge λ for OLS, or 'auto' (CV on the training images)."),
        no_center: bool = typer.Option(False, "--no-center", help="Skip mean-centring (ablation)."),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Fit the image→text map on a split's image–caption pairs and build the caption store."""
        from ..caption.map import fit_caption_model
        from ..encoders import DEFAULT_OFFLINE_SPEC, load_encoder

        spec = encoder or DEFAULT_OFFLINE_SPEC
        recs = _select_images(_records(data, split), images, spec)
        enc = load_encoder(spec)
        model = fit_caption_model(recs, enc, kind=kind, ridge=ridge, center=not no_center, data=data, split=split)
        model.meta["images"] = images
        path = model.save(out)
        info = {"out": str(path), "images": len(model.image_ids), "pairs": model.meta["n_pairs"], "encoder": enc.name,
                "kind": kind, "ridge": model.meta["ridge"], "center": not no_center, "seconds": model.meta["seconds"]}
        if json_out:
            print_json(info)
        else:
            console.print(f"fitted {kind} map on {info['pairs']} pairs ({info['images']} images) → {path}")

    @cap.command("refine")
    def refine_cmd(
        model: Path = typer.Option(..., "--model", "-m", help="Caption model directory."),
        out: Path = typer.Option(None, "--out", help="Where to write the refined model (default: in place)."),
        val_split: str = typer.Option(None, "--val-split",
                                      help="Validation split (default: the fitted split; fitted images are then "
                                           "described leave-one-out)."),
        data: str = typer.Option(None, "--data", help="Data set (default: the model's)."),
        generator: str = typer.Option("local:smollm2", "--generator", "-g", help=GEN_HELP),
        k: int = typer.Option(5, "-k", "--k"),
        order: str = typer.Option("s2d", "--order"),
        max_iter: int = typer.Option(3, "--max-iter", help="Upper bound on iterations."),
        train_size: int = typer.Option(100, "--train-size", help="Training images given a synthetic caption per iteration."),
        val_size: int = typer.Option(50, "--val-size", help="Validation images."),
        seed: int = typer.Option(0, "--seed"),
        log: Path = typer.Option(None, "--log", help="Also write the iteration log (JSON) here."),
        keep_last: bool = typer.Option(False, "--keep-last",
                                       help="Ablation: keep the last iteration even if validation did not improve."),
    ) -> None:
        """Add CIDEr-D-filtered synthetic captions and refit until validation CIDEr-D stops improving.

        Prints one JSON line per iteration, then a JSON summary.
        """
        from dataclasses import asdict

        from ..caption.map import CaptionModel
        from ..caption.refine import refine

        cm = CaptionModel.load(model)
        ds = data or cm.meta["data"]
        train = [r for r in _records(ds, cm.meta["split"]) if r.image_id in set(cm.image_ids)]
        val = _records(ds, val_split or cm.meta["split"])
        gen = _generator(generator)
        if gen is None:
            from ..errors import InputError

            raise InputError("refinement needs a generator", item="--generator")
        res = refine(cm, gen, train, val, k=k, order=order, max_iter=max_iter, train_size=train_size,
                     val_size=val_size, seed=seed, keep_last=keep_last, on_iteration=lambda e: print(json.dumps(asdict(e)), flush=True))
        res.model.meta["refined_from"] = str(model)
        path = res.model.save(out or model)
        summary = {"out": str(path), **res.to_dict()}
        if log:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(json.dumps(summary, indent=1))
        print_json(summary)

    @cap.command("eval")
    def eval_cmd(
        model: Path = typer.Option(..., "--model", "-m", help="Caption model directory."),
        split: str = typer.Option("test", "--split"),
        data: str = typer.Option(None, "--data", help="Data set (default: the model's)."),
        limit: int = typer.Option(None, "--limit", help="Evaluate only the first N images."),
        generator: str = typer.Option("local:smollm2", "--generator", "-g", help=GEN_HELP),
        gen_limit: int = typer.Option(100, "--gen-limit", help="Images (the first N) that get generated captions."),
        k: int = typer.Option(5, "-k", "--k"),
        order: str = typer.Option("s2d", "--order"),
        spice: bool = typer.Option(True, "--spice/--no-spice", help="Try SPICE (needs Java + CoreNLP jars)."),
        out: Path = typer.Option(None, "--out", help="Write report.md and results.json here."),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """BLEU-4, ROUGE-L, CIDEr-D, SPICE, CLIP-score and raw-vs-mapped nDCG@10 on a split."""
        from ..caption.evaluate import evaluate, render_markdown
        from ..caption.map import CaptionModel

        cm = CaptionModel.load(model)
        recs = _records(data or cm.meta["data"], split)
        res = evaluate(cm, recs, generator=_generator(generator), gen_limit=gen_limit, k=k, order=order,
                       limit=limit, spice=spice)
        res["model_dir"], res["eval_split"] = str(model), split
        md = render_markdown(res, f"Caption evaluation: {model.name} on {split}")
        if out:
            out.mkdir(parents=True, exist_ok=True)
            (out / "results.json").write_text(json.dumps(res, indent=1, ensure_ascii=False))
            (out / "report.md").write_text(md)
        if json_out:
            print_json(res)
        else:
            print(md)
            if res["spice"].startswith("SPICE skipped"):
                err_console.print(f"[yellow]{res['spice']}[/]", highlight=False)

    @cap.command("report")
    def report_cmd(
        results: list[Path] = typer.Argument(..., help="results.json files from `caption eval` (label=path to name them)."),
        out: Path = typer.Option(..., "--out", help="Folder for report.md + results.json."),
        notes: Path = typer.Option(None, "--notes", help="Markdown appended to the report (analysis, caveats)."),
        extra: list[Path] = typer.Option(None, "--extra", help="More JSON files (e.g. refinement logs) stored as-is."),
    ) -> None:
        """Merge several evaluations into one report (one table across models)."""
        from ..caption.evaluate import combine_reports

        named = []
        for r in results:
            label, sep, path = str(r).rpartition("=")
            named.append((label if sep else Path(r).parent.name, Path(path if sep else r)))
        md, merged = combine_reports(named, extra=[(p.stem, p) for p in extra or []],
                                     notes=notes.read_text() if notes else "")
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(md)
        (out / "results.json").write_text(json.dumps(merged, indent=1, ensure_ascii=False))
        console.print(f"wrote {out / 'report.md'} and {out / 'results.json'}")
