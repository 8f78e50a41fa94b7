"""``mindgap embed`` (texts / images → ``.npy``) and ``mindgap export-onnx``."""

from __future__ import annotations

from pathlib import Path

import typer

from ..encoders import DEFAULT_OFFLINE_SPEC

from .common import console, print_json


def _read_texts_file(path: Path) -> list[str]:
    from ..errors import InputError
    from ..text import decode_text

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror or exc})", item=str(path)) from None
    lines = [ln for ln in decode_text(data, name=str(path)).splitlines() if ln.strip()]
    if not lines:
        raise InputError("no texts in file (empty)", item=str(path))
    return lines


def _check_cli_text(texts: list[str], label: str) -> list[str]:
    """Arguments that were not valid UTF-8 arrive as lone surrogates; reject them by name."""
    from ..errors import InputError

    for i, t in enumerate(texts):
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(f"not valid UTF-8 text (at character {exc.start}); pass UTF-8",
                             item=f"{label}[{i}]") from None
    return texts


def _expand_images(paths: list[Path]) -> list[str]:
    from ..images import is_image_path

    out: list[str] = []
    for p in paths:
        if p.is_dir():
            out.extend(str(f) for f in sorted(p.rglob("*")) if f.is_file() and is_image_path(f))
        else:
            out.append(str(p))
    return out


def register(app: typer.Typer) -> None:
    @app.command("embed")
    def embed(
        text: list[str] = typer.Option(None, "--text", "-t", help="A text to embed (repeatable)."),
        texts_file: Path = typer.Option(None, "--texts-file", help="UTF-8 file, one text per line."),
        image: list[Path] = typer.Option(None, "--image", "-i", help="An image file or folder (repeatable)."),
        encoder: str = typer.Option(DEFAULT_OFFLINE_SPEC, "--encoder", "-e", help="Encoder spec."),
        out: Path = typer.Option(None, "--out", "-o", help="Write the (n, dim) float32 matrix here (.npy)."),
        batch_size: int = typer.Option(None, help="Batch size (default: the encoder's)."),
        json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
    ) -> None:
        """Embed texts or images with an encoder; save the L2-normalised rows as .npy.

        Give texts (--text / --texts-file) or images (--image), not both: each call
        produces one matrix in one modality.
        """
        import numpy as np

        from ..encoders import load_encoder
        from ..errors import InputError

        texts = _check_cli_text(list(text or []), "--text")
        if texts_file is not None:
            texts += _read_texts_file(texts_file)
        images = _expand_images(list(image or []))
        if texts and images:
            raise InputError("give texts or images, not both (one modality per call)", item="embed")
        if not texts and not images:
            if image:
                raise InputError("no image files found", item=", ".join(str(p) for p in image))
            raise InputError("nothing to embed: pass --text, --texts-file or --image", item="embed")
        if out is not None and out.suffix != ".npy":
            raise InputError("output must be a .npy file", item=str(out))
        enc = load_encoder(encoder)
        if texts:
            emb = enc.encode_text(texts, batch_size=batch_size)
        else:
            emb = enc.encode_image(images, batch_size=batch_size)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            np.save(out, emb)
        summary = {"encoder": enc.name, "modality": "text" if texts else "image", "n": int(emb.shape[0]),
                   "dim": int(emb.shape[1]), "out": str(out) if out else None}
        if json_out:
            print_json(summary)
        else:
            where = f" → [bold]{out}[/]" if out else " (not saved; pass --out FILE.npy)"
            console.print(f"embedded {summary['n']} {summary['modality']}s with {enc.name}: "
                          f"({summary['n']}, {summary['dim']}) float32{where}")

    @app.command("export-onnx")
    def export_onnx_cmd(
        spec: str = typer.Argument(..., help="hf:<hub-id-or-dir> or mindgap:<name-or-dir> to export."),
        out_dir: Path = typer.Argument(..., help="Output directory (load it with onnx:<dir>)."),
        int8: bool = typer.Option(False, "--int8", help="Also write dynamic-int8 *_quantized.onnx graphs."),
        opset: int = typer.Option(18, "--opset", help="ONNX opset."),
        calib_images: Path = typer.Option(None, "--calib-images", help="With --int8: a folder (or file) of "
                                          "training-like images to calibrate a static int8 CNN image tower "
                                          "(up to 64 used; not your evaluation split)."),
        int8_all: bool = typer.Option(False, "--int8-all", help="With --int8: quantise the FFN down-projections "
                                      "and projection heads of transformer towers too (kept fp32 by default for "
                                      "accuracy; 1.3-1.7x faster on a ViT-B/32 image tower; check the cosine on "
                                      "your model)."),
        force: bool = typer.Option(False, "--force", help="Replace a non-empty output directory."),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Export an hf:/mindgap: encoder to ONNX for `onnx:<dir>` (dynamic batch and sequence axes).

        Layout (transformers.js): onnx/text_model.onnx, onnx/vision_model.onnx (+ *_quantized.onnx
        with --int8), tokenizer.json, preprocessor_config.json, mindgap_onnx.json.

        Load the result with `onnx:OUT_DIR` (fp32) or `onnx:OUT_DIR?variant=int8`.
        """
        import json

        from ..encoders.export import ONNX_META, export_onnx

        calib = _expand_images([calib_images])[:64] if calib_images is not None else None
        if calib_images is not None and not calib:
            from ..errors import InputError

            raise InputError("no image files found for calibration", item=str(calib_images))
        if int8_all and not int8:
            from ..errors import InputError

            raise InputError("--int8-all needs --int8", item="--int8-all")
        path = export_onnx(spec, out_dir, int8=int8, opset=opset, overwrite=force, calib_images=calib,
                           int8_all=int8_all)
        meta = json.loads((path / ONNX_META).read_text())
        files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
        if json_out:
            print_json({"out": str(path), "files": files, **meta})
            return
        console.print(f"exported [bold]{spec}[/] → [bold]{path}[/] (dim {meta['dim']}, "
                      f"max {meta['max_text_tokens']} tokens, {meta['exporter']} exporter, opset {opset})")
        for f in files:
            console.print(f"  {f}")
        console.print(f"load with [bold]onnx:{path}[/]" + (f" or [bold]onnx:{path}?variant=int8[/]" if int8 else ""))
