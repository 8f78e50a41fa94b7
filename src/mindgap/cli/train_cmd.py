"""``mindgap train`` and ``mindgap encoder-eval``."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import console, print_json, table


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        out: Path = typer.Option(..., "--out", help="Output model directory (mindgap layout)."),
        data: str = typer.Option("flickr8k_224", help="Image–caption folder (captions.jsonl layout) or a shared data name."),
        split: str = typer.Option("val", help="Split to train on (never train on test)."),
        calib_size: int = typer.Option(200, help="Images of the split held out as the calib set."),
        epochs: int = typer.Option(100, help="Epochs over the training images."),
        batch_size: int = typer.Option(128),
        lr: float = typer.Option(2e-3),
        weight_decay: float = typer.Option(0.05),
        image_size: int = typer.Option(96, help="Training / inference resolution."),
        embed_dim: int = typer.Option(256),
        init: str = typer.Option(None, help="Fine-tune from an existing mindgap model (name or dir)."),
        seed: int = typer.Option(0),
        threads: int = typer.Option(None, help="torch threads (default: all cores)."),
        evaluate: bool = typer.Option(True, "--eval/--no-eval", help="Measure on the test split and write the model card."),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Train a small CLIP-style dual encoder (symmetric InfoNCE, learnable temperature).

        The default recipe is the offline model: frozen all-MiniLM-L6-v2 text base +
        projection, a small CNN image tower from scratch, Flickr8k val minus a calib
        hold-out. Writes the model directory with a model card of measured numbers.
        """
        from ..encoders.train import TrainConfig, train

        if split == "test":
            from ..errors import InputError

            raise InputError("refusing to train on the test split (it is what the model card reports on)", item="split")
        cfg = TrainConfig(data=data, split=split, calib_size=calib_size, epochs=epochs, batch_size=batch_size, lr=lr,
                          weight_decay=weight_decay, image_size=image_size, cache_size=int(image_size * 1.25),
                          embed_dim=embed_dim, init=init, seed=seed, threads=threads)
        rec = train(cfg, out, progress=True, evaluate=evaluate)
        if json_out:
            print_json(rec.get("test_metrics", {}))
            return
        console.print(f"saved [bold]{out}[/] in {rec['train_seconds']} s (final temperature {rec['final_temperature']})")
        m = rec.get("test_metrics")
        if m:
            _print_metrics(m)

    @app.command("encoder-eval")
    def encoder_eval(
        spec: str = typer.Argument("mindgap:flickr8k-small", help="Encoder spec."),
        data: str = typer.Option("flickr8k_224"),
        split: str = typer.Option("test"),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Cross-modal Recall@1/5/10 and modality-gap numbers of an encoder on an image–caption split."""
        from ..encoders import load_encoder
        from ..encoders.evaluate import evaluate_encoder

        m = evaluate_encoder(load_encoder(spec, show_progress=True), data, split=split)
        if json_out:
            print_json(m)
        else:
            _print_metrics(m)


def _print_metrics(m: dict) -> None:
    t2i, i2t = m["text_to_image"], m["image_to_text"]
    console.print(table(f"{m['split']}: {m['images']} images, {m['captions']} captions", ["direction", "R@1", "R@5", "R@10"], [
        ["text → image", t2i["R@1"], t2i["R@5"], t2i["R@10"]],
        ["image → text", i2t["R@1"], i2t["R@5"], i2t["R@10"]],
    ]))
    console.print(f"matched text–image cosine {m['matched_text_image_cos']}, unmatched {m['unmatched_text_image_cos']}, "
                  f"two captions of one image {m['same_image_text_text_cos']}")
