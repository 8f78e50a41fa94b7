"""``mindgap train`` and ``mindgap encoder-eval``."""

from __future__ import annotations

from pathlib import Path

import typer

from ..encoders import DEFAULT_OFFLINE_SPEC

from .common import console, print_json, table


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        out: Path = typer.Option(..., "--out", help="Output model directory (mindgap layout)."),
        data: list[str] = typer.Option(None, "--data", help="Training source NAME[:SPLIT], repeatable: a shared "
                                       "data name or a captions.jsonl folder, optionally one split "
                                       "(default: flickr8k_train and flickr8k_224:val). Never test."),
        calib_source: str = typer.Option("flickr8k_224:val", help="The source the calib hold-out is drawn from."),
        calib_size: int = typer.Option(200, help="Images of the calib source held out as the calib set."),
        arch: str = typer.Option("efficientnet-lite0", help="Image tower: efficientnet-lite0 (ImageNet-pretrained, "
                                 "lower layers frozen) or resnet-ish-cnn (small CNN from scratch)."),
        unfreeze: int = typer.Option(0, help="Backbone layers trained from the top (0 none, 1 head conv, 2 + last block…)."),
        views: int = typer.Option(6, help="Cached augmented views per image (view 0 = the inference crop)."),
        epochs: int = typer.Option(40, help="Epochs over the training images."),
        batch_size: int = typer.Option(512),
        lr: float = typer.Option(1e-3),
        weight_decay: float = typer.Option(0.1),
        image_size: int = typer.Option(128, help="Training / inference resolution."),
        embed_dim: int = typer.Option(256),
        head_hidden: int = typer.Option(1024, help="Hidden width of the image projection head."),
        text_tune_layers: int = typer.Option(0, help="Top MiniLM layers to train (0 = projection only)."),
        ema: float = typer.Option(0.0, help="EMA decay of the trained weights (0 = off)."),
        fixed_temperature: bool = typer.Option(False, "--fixed-temperature", help="Keep the temperature at its initial value."),
        init_temperature: float = typer.Option(0.07),
        init: str = typer.Option(None, help="Fine-tune from an existing mindgap model (name or dir)."),
        seed: int = typer.Option(0),
        threads: int = typer.Option(None, help="torch threads (default: all cores)."),
        evaluate: bool = typer.Option(True, "--eval/--no-eval", help="Measure on the test split and write the model card."),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Train a small CLIP-style dual encoder (symmetric InfoNCE, learnable temperature).

        The default recipe is the bundled offline model: frozen all-MiniLM-L6-v2 text base +
        projection, an ImageNet-pretrained EfficientNet-Lite0 image backbone kept frozen (its
        features cached for several augmented views) + an MLP head, trained on Flickr8k train
        and val minus a calib hold-out. Every phase shows progress. Writes the model directory
        with a model card of measured numbers.
        """
        from ..encoders.train import DEFAULT_SOURCES, TrainConfig, train

        cfg = TrainConfig(data=list(data) if data else list(DEFAULT_SOURCES), calib_source=calib_source,
                          calib_size=calib_size, arch=arch, unfreeze=unfreeze, views=views, epochs=epochs,
                          batch_size=batch_size, lr=lr, weight_decay=weight_decay, image_size=image_size,
                          embed_dim=embed_dim, head_hidden=head_hidden, text_tune_layers=text_tune_layers, ema=ema,
                          learn_temperature=not fixed_temperature, init_temperature=init_temperature, init=init,
                          seed=seed, threads=threads)
        import shlex
        import sys

        rec = train(cfg, out, progress=True, evaluate=evaluate,
                    command="mindgap " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
        if json_out:
            print_json(rec.get("test_metrics", {}))
            return
        console.print(f"saved [bold]{out}[/] in {rec['train_seconds']} s (final temperature {rec['final_temperature']})")
        m = rec.get("test_metrics")
        if m:
            _print_metrics(m)

    @app.command("encoder-eval")
    def encoder_eval(
        spec: str = typer.Argument(DEFAULT_OFFLINE_SPEC, help="Encoder spec."),
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
