"""``mindgap ground`` / ``classify`` / ``moderate`` / ``prompt-bench``: visual prompting and prompt-based understanding."""

from __future__ import annotations

from pathlib import Path

import typer

from ..encoders import DEFAULT_OFFLINE_SPEC

from .common import console, err_console, print_json, table

ENCODER_HELP = f"Encoder spec (e.g. {DEFAULT_OFFLINE_SPEC}, hf:openai/clip-vit-base-patch32)."


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _check_images(paths: list[Path]) -> list[str]:
    """Decode every image once before the (slow) encoder loads, so a bad file fails fast and is named."""
    from ..images import load_image

    for p in paths:
        load_image(p)
    return [str(p) for p in paths]


def register(app: typer.Typer) -> None:
    """Register the prompting commands on the app."""

    @app.command("ground")
    def ground_cmd(
        image: Path = typer.Argument(..., help="Image file."),
        phrase: str = typer.Argument(..., help='Referring expression, e.g. "the red triangle".'),
        regions: str = typer.Option("grid:3x3", "--regions",
                                    help="grid:RxC, a boxes JSON file, or boxes 'x0,y0,x1,y1;...' (px, or rel:...)."),
        marker: str = typer.Option("circle", "--marker",
                                   help="circle/ellipse, rectangle, arrow, cross, or crop, blur, grey, none, grey+circle."),
        color: str = typer.Option("red", "--color", help="Marker colour (name or #rrggbb)."),
        thickness: int = typer.Option(None, "--thickness", help="Line width in px (default min(W,H)/75)."),
        padding: int = typer.Option(None, "--padding", help="Pixels around each box (default: the thickness)."),
        no_prior: bool = typer.Option(False, "--no-prior", help="Do not subtract the empty-phrase prior."),
        compare_all: bool = typer.Option(False, "--compare",
                                         help="Run every marker × colour plus crop/blur/grey/none and print a table."),
        gold: int = typer.Option(None, "--gold", help="Index of the correct region (or mark one \"gold\": true in "
                                                     "the boxes file); --compare then reports accuracy."),
        out: Path = typer.Option(None, "--out", help="Overlay PNG of the winner (default runs/ground/<image>.png)."),
        encoder: str = typer.Option(DEFAULT_OFFLINE_SPEC, "--encoder", help=ENCODER_HELP),
        json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Find the region of IMAGE that PHRASE refers to: mark each candidate region on a copy
        (a red circle by default), score every copy against the phrase, rank the regions.

        Writes an overlay PNG of the winner. With --compare every prompt variant is scored and,
        when the gold region is known, a table of which variants got it right is printed.
        """
        from ..encoders import load_encoder
        from ..images import load_image
        from ..prompting.ground import check_phrase, compare, ground
        from ..prompting.markers import parse_color
        from ..prompting.regions import parse_regions

        check_phrase(phrase)  # fail fast on bad input, before the encoder loads
        parse_regions(regions, load_image(image).size)
        parse_color(color)
        enc = load_encoder(encoder)
        if compare_all:
            rows = compare(enc, image, phrase, regions=regions, gold=gold, prior=not no_prior, thickness=thickness,
                           padding=padding)
            if json_out:
                print_json({"phrase": phrase, "rows": rows})
                return
            has_gold = "credit" in rows[0]
            cols = ["prompt", "color", "best", "label", "score", "margin"] + (["gold rank", "credit"] if has_gold else [])
            trows = []
            for r in rows:
                trow = [r["prompt"], r["color"], r["best"], r["label"] or "", r["score"], r["margin"]]
                trows.append(trow + ([r["gold_rank"], r["credit"]] if has_gold else []))
            console.print(table(f"prompt variants for {phrase!r}", cols, trows))
            if has_gold:
                acc = sum(r["credit"] for r in rows) / len(rows)
                console.print(f"variants that found the gold region: {sum(r['credit'] == 1.0 for r in rows)} of "
                              f"{len(rows)} (tie-aware mean credit {acc:.3f})")
            return
        res = ground(enc, image, phrase, regions=regions, marker=marker, color=color, prior=not no_prior,
                     thickness=thickness, padding=padding)
        out_path = out or Path("runs") / "ground" / f"{Path(image).stem}.png"
        out_path.parent.mkdir(parents=True, exist_ok=True)
        res.overlay().save(out_path, format="PNG")
        if json_out:
            print_json(dict(res.to_dict(), overlay=str(out_path)))
            return
        rows = [[i + 1, r["index"], r["label"] or "", ",".join(str(v) for v in r["box"]), r["score"], r["raw"]]
                for i, r in enumerate(res.ranking)]
        console.print(table(f"{phrase!r} — {marker} ({color}){'' if no_prior else ', minus empty-phrase prior'}",
                            ["rank", "region", "label", "box x0,y0,x1,y1", "score", "raw cosine"], rows))
        console.print(f"best: region {res.best} (margin {res.margin:.4f}); overlay: [bold]{out_path}[/]")

    @app.command("classify")
    def classify_cmd(
        images: list[Path] = typer.Argument(..., help="Image files."),
        labels: str = typer.Option(..., "--labels", help="Comma-separated labels, e.g. dog,cat,car."),
        templates: Path = typer.Option(None, "--templates", help="File with one template per line ('a photo of a {}.')."),
        k: int = typer.Option(5, "-k", "--k", help="Top-k labels to show."),
        encoder: str = typer.Option(DEFAULT_OFFLINE_SPEC, "--encoder", help=ENCODER_HELP),
        json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Zero-shot classification: probabilities over LABELS from a prompt-template ensemble."""
        from ..encoders import load_encoder
        from ..prompting.zeroshot import classify, load_templates, parse_labels

        labs = parse_labels(labels)
        tpl = load_templates(templates) if templates is not None else None
        res = classify(load_encoder(encoder), _check_images(images), labs, templates=tpl, k=k)
        if json_out:
            print_json([r.to_dict() for r in res])
            return
        rows = [[r.image if j == 0 else "", j + 1, t["label"], t["prob"]] for r in res for j, t in enumerate(r.top)]
        console.print(table("zero-shot classification", ["image", "rank", "label", "prob"], rows))

    @app.command("moderate")
    def moderate_cmd(
        images: list[Path] = typer.Argument(..., help="Image files."),
        unsafe: str = typer.Option(None, "--unsafe", help="Comma-separated unsafe categories (default: built-in list)."),
        safe: str = typer.Option(None, "--safe", help="Comma-separated safe categories (default: built-in list)."),
        categories: Path = typer.Option(None, "--categories", help='JSON file {"unsafe": [...], "safe": [...]}.'),
        threshold: float = typer.Option(None, "--threshold", help="Unsafe probability that flags an image (default 0.5)."),
        encoder: str = typer.Option(DEFAULT_OFFLINE_SPEC, "--encoder", help=ENCODER_HELP),
        json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Screen images against unsafe / safe category prompts.

        A screening aid, not a verdict: scores reflect the encoder's learned — and socially
        biased — associations (prompted CLIP matches circled people to "suspect" more often);
        route flagged images to a human. Never add categories that judge people.
        """
        from ..encoders import load_encoder
        from ..errors import InputError
        from ..prompting.moderation import CAVEAT, check_threshold, load_categories, moderate

        check_threshold(threshold)
        uns, saf = _split(unsafe), _split(safe)
        if categories is not None:
            if uns or saf:
                raise InputError("use either --categories or --unsafe/--safe, not both", item="--categories")
            uns, saf = load_categories(categories)
        paths = _check_images(images)
        res = moderate(load_encoder(encoder), paths, unsafe=uns, safe=saf, threshold=threshold)
        if json_out:
            print_json([r.to_dict() for r in res])
            return
        rows = [[r.image, "FLAGGED" if r.flagged else "ok", ", ".join(r.categories) or "–", r.confidence,
                 r.unsafe_probability] for r in res]
        console.print(table(f"moderation (threshold {res[0].threshold})",
                            ["image", "verdict", "categories", "confidence", "unsafe prob"], rows))
        err_console.print(f"[dim]{CAVEAT}[/]")

    @app.command("prompt-bench")
    def prompt_bench_cmd(
        out: Path = typer.Option(Path("runs") / "prompt-bench", "--out", help="Report folder."),
        encoder: str = typer.Option(DEFAULT_OFFLINE_SPEC, "--encoder", help=ENCODER_HELP),
        quick: bool = typer.Option(False, "--quick", help="Tiny smoke run (numbers meaningless)."),
        n_scenes: int = typer.Option(None, "--scenes", help="Synthetic grounding scenes (default 60)."),
        n_mosaics: int = typer.Option(None, "--mosaics", help="Flickr8k 2x2 mosaics (default 60; 0 skips)."),
        parts: str = typer.Option("synthetic,mosaic,zeroshot,moderation", "--parts", help="Which measurements."),
        seed: int = typer.Option(0, "--seed"),
        notes: Path = typer.Option(None, "--notes", help="Markdown file placed near the top of report.md."),
        from_results: Path = typer.Option(None, "--from-results",
                                          help="Only rebuild report.md and plots from this results.json."),
        json_out: bool = typer.Option(False, "--json", help="Print the results JSON."),
    ) -> None:
        """Measure grounding accuracy per marker × colour vs. crop / blur / grey / no prompt (synthetic
        scenes with known answers and weakly labelled Flickr8k mosaics), zero-shot accuracy and
        moderation false alarms. Writes report.md, results.json and PNGs."""
        from ..encoders import load_encoder
        from ..errors import InputError
        from ..prompting.benchmark import PromptBenchConfig, run_prompt_bench

        cfg = PromptBenchConfig.quick(seed) if quick else PromptBenchConfig(seed=seed)
        if n_scenes is not None:
            cfg.n_scenes = n_scenes
        if n_mosaics is not None:
            cfg.n_mosaics = n_mosaics
        known = {"synthetic", "mosaic", "zeroshot", "moderation"}
        wanted = _split(parts) or []
        bad = sorted(set(wanted) - known)
        if bad or not wanted:
            raise InputError(f"unknown parts {bad}; choose from {', '.join(sorted(known))}", item="--parts")
        note_text = None
        if notes is not None:
            if not notes.is_file():
                raise InputError("notes file does not exist", item=str(notes))
            note_text = notes.read_text(encoding="utf-8")
        if from_results is not None:
            from ..prompting.benchmark import rerender

            rerender(from_results, out, note_text)
            console.print(f"report: [bold]{out / 'report.md'}[/]")
            return
        res = run_prompt_bench(load_encoder(encoder), cfg, out_dir=out, progress=not json_out, parts=wanted,
                               notes=note_text)
        if json_out:
            print_json(res)
            return
        for key, title in (("synthetic_grounding", "synthetic grounding"), ("mosaic_grounding", "Flickr8k mosaics")):
            if key in res:
                g = res[key]
                rows = [[r["prompt"], r.get("color") or "–", r["prior"]["all"], r["no_prior"]["all"]] for r in g["rows"]]
                console.print(table(f"{title}: accuracy ({g['queries']} queries, chance {g['chance']:.2f})",
                                    ["prompt", "color", "score minus prior", "raw cosine"], rows))
        console.print(f"report: [bold]{out / 'report.md'}[/]")
