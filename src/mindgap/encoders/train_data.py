"""Training data for ``mindgap train``: several image–caption sources, calib hold-out, caches.

Each phase that takes more than a moment shows a progress bar: decoding images, sentence
embeddings and (for the pretrained image tower) the frozen backbone's features of several
augmented views per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..datasets import CaptionedImage, load_caption_set
from ..errors import InputError
from ..images import load_image


@dataclass
class Source:
    """One ``NAME[:SPLIT]`` training source (a shared data name or a folder)."""

    data: str
    split: str | None

    @classmethod
    def parse(cls, spec: str) -> Source:
        """``"flickr8k_train"`` → all splits; ``"flickr8k_224:val"`` → only ``val``.

        A trailing ``:SPLIT`` is a split only when the rest is not itself an existing path
        with a colon in it. Training on ``test`` is refused.
        """
        spec = spec.strip()
        if not spec:
            raise InputError("empty training source", item="--data")
        data, split = spec, None
        head, sep, tail = spec.rpartition(":")
        if sep and head and "/" not in tail:
            data, split = head, tail or None
        if split == "test":
            raise InputError("refusing to train on the test split (it is what the model card reports on)", item=spec)
        return cls(data, split)

    def __str__(self) -> str:
        return self.data if self.split is None else f"{self.data}:{self.split}"


def split_calib(records: list[CaptionedImage], calib_size: int, seed: int) -> tuple[list[CaptionedImage], list[CaptionedImage]]:
    """Deterministic train / calib split of a record list (sorted by id first)."""
    recs = sorted(records, key=lambda r: r.image_id)
    if calib_size >= len(recs):
        raise InputError(f"calib_size {calib_size} leaves no training images (have {len(recs)})", item="calib_size")
    perm = np.random.default_rng(seed).permutation(len(recs))
    calib = sorted((recs[i] for i in perm[:calib_size]), key=lambda r: r.image_id)
    train = sorted((recs[i] for i in perm[calib_size:]), key=lambda r: r.image_id)
    return train, calib


def load_sources(sources: list[str], calib_source: str, calib_size: int, seed: int,
                 ) -> tuple[list[CaptionedImage], list[CaptionedImage], dict[str, int]]:
    """Training and calib records from several sources.

    The calib hold-out is drawn (deterministically, by ``seed``) from the source named
    ``calib_source``; every other source trains whole. Records of a source with no split
    given skip any ``test`` split. Duplicate image ids across sources are refused.

    Returns ``(train, calib, images_per_source)``.
    """
    parsed = [Source.parse(s) for s in sources]
    if not parsed:
        raise InputError("no training source given", item="--data")
    train: list[CaptionedImage] = []
    calib: list[CaptionedImage] = []
    counts: dict[str, int] = {}
    found_calib = calib_size <= 0
    for src in parsed:
        recs = [r for r in load_caption_set(src.data, split=src.split) if r.split != "test"]
        if not recs:
            raise InputError("no non-test images in this source", item=str(src))
        if calib_size > 0 and str(src) == calib_source:
            recs, calib = split_calib(recs, calib_size, seed)
            found_calib = True
        counts[str(src)] = len(recs)
        train.extend(recs)
    if not found_calib:
        raise InputError(f"the calib source {calib_source!r} is not among the training sources {[str(s) for s in parsed]}",
                         item="--calib-source")
    ids = [r.image_id for r in train]
    if len(set(ids)) != len(ids):
        raise InputError("an image id occurs in two training sources", item="--data")
    return train, calib, counts


def decode_images(records: list[CaptionedImage], size: int, progress: bool) -> np.ndarray:
    """Decode and resize (bicubic, square) every image once: uint8 ``(n, size, size, 3)``."""
    from PIL import Image

    arr = np.empty((len(records), size, size, 3), dtype=np.uint8)
    it = range(len(records))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="decode images", unit="img")
    for i in it:
        arr[i] = np.asarray(load_image(records[i].path).resize((size, size), Image.BICUBIC))
    return arr


def center_views(records: list[CaptionedImage], size: int, mean: list[float], std: list[float], progress: bool) -> Any:
    """The exact inference preprocessing (shortest edge, centre crop, normalise) as a float tensor."""
    import torch

    from .dual_model import preprocess_images

    out = torch.empty((len(records), 3, size, size))
    bs = 256
    it = range(0, len(records), bs)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="centre views", unit="batch")
    for s in it:
        out[s : s + bs] = torch.from_numpy(preprocess_images([load_image(r.path) for r in records[s : s + bs]], size, mean, std))
    return out


def augment(batch: Any, size: int, crop_scale: tuple[float, float], jitter: float, gen: Any, mean: Any, std: Any) -> Any:
    """Random-resized-crop, horizontal flip and colour jitter on a uint8 NCHW batch, vectorised.

    One affine grid per sample (crop box and flip), one ``grid_sample`` for the batch: the
    old per-sample Python loop cost most of a training step.
    """
    import torch
    import torch.nn.functional as F

    n = batch.shape[0]
    x = batch.float() / 255.0
    area = torch.empty(n).uniform_(*crop_scale, generator=gen)
    logr = torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen)
    r = logr.exp()
    w = (area * r).sqrt().clamp(max=1.0)
    h = (area / r).sqrt().clamp(max=1.0)
    cx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=gen) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = w * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if jitter > 0:
        b = 1 + torch.empty(n, 1, 1, 1).uniform_(-jitter, jitter, generator=gen)
        c = 1 + torch.empty(n, 1, 1, 1).uniform_(-jitter, jitter, generator=gen)
        s = 1 + torch.empty(n, 1, 1, 1).uniform_(-jitter, jitter, generator=gen)
        out = out * b
        m = out.mean(dim=(1, 2, 3), keepdim=True)
        out = (out - m) * c + m
        gray = out.mean(dim=1, keepdim=True)
        out = ((out - gray) * s + gray).clamp(0, 1)
    return (out - mean) / std


def backbone_features(backbone: Any, images: np.ndarray, centre: Any, cut: int, views: int, size: int,
                      crop_scale: tuple[float, float], jitter: float, seed: int, mean: Any, std: Any,
                      progress: bool, batch: int = 64) -> Any:
    """Frozen lower-backbone outputs for ``views`` views of every image (view 0 = centre crop).

    Returns a float16 tensor ``(views, n, ...)``: pooled features when ``cut`` is the
    number of blocks + 1 (whole backbone frozen), else the feature map after block ``cut``.
    """
    import torch

    from .effnet_lite import N_BLOCKS

    gen = torch.Generator().manual_seed(seed + 1)
    n = len(images)
    imgs = torch.from_numpy(images).permute(0, 3, 1, 2)
    backbone.eval()
    run = _onnx_runner(backbone, cut, size) or (
        lambda px: backbone(px) if cut > N_BLOCKS else backbone.forward_lower(px, cut))
    out = None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=views * n, desc="image features", unit="img")
    with torch.inference_mode():
        for v in range(views):
            for s in range(0, n, batch):
                px = centre[s : s + batch] if v == 0 else augment(imgs[s : s + batch], size, crop_scale, jitter, gen, mean, std)
                f = run(px.contiguous()).to(torch.float16)
                if out is None:
                    out = torch.empty((views, n, *f.shape[1:]), dtype=torch.float16)
                out[v, s : s + len(f)] = f
                if bar:
                    bar.update(len(f))
    if bar:
        bar.close()
    return out


def derive_features(backbone: Any, feats: Any, cut_from: int, cut_to: int, batch: int = 512) -> Any:
    """Run the frozen blocks ``[cut_from, cut_to)`` (and the head when ``cut_to`` is past the
    last block) on cached feature maps: the inputs of a recipe that freezes more layers."""
    import torch

    from .effnet_lite import N_BLOCKS

    backbone.eval()
    out = None
    flat = feats.reshape(-1, *feats.shape[2:])
    with torch.inference_mode():
        for s in range(0, len(flat), batch):
            x = flat[s : s + batch].float()
            if cut_to > N_BLOCKS:
                y = backbone.forward_upper(x, cut_from)
            else:
                for blk in backbone._blocks[cut_from:cut_to]:
                    x = blk(x)
                y = x
            y = y.to(torch.float16)
            if out is None:
                out = torch.empty((len(flat), *y.shape[1:]), dtype=torch.float16)
            out[s : s + len(y)] = y
    return out.reshape(feats.shape[0], feats.shape[1], *out.shape[1:])


def _onnx_runner(backbone: Any, cut: int, size: int) -> Any:
    """The frozen backbone through ONNX Runtime (several times faster than PyTorch on CPU for
    this depthwise-convolution network); ``None`` when ONNX Runtime or the exporter is missing.
    Same weights, fp32: the features match PyTorch's to float rounding."""
    import tempfile
    from pathlib import Path

    import torch

    from .effnet_lite import N_BLOCKS

    try:
        import onnxruntime as ort
    except ImportError:
        return None

    class Lower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.b = backbone

        def forward(self, x):  # noqa: ANN001, ANN201
            return self.b(x) if cut > N_BLOCKS else self.b.forward_lower(x, cut)

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "backbone.onnx"
            torch.onnx.export(Lower().eval(), (torch.randn(2, 3, size, size),), str(path), input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=17,
                              dynamo=False)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = torch.get_num_threads()
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - fall back to PyTorch
        return None
    return lambda px: torch.from_numpy(sess.run(["y"], {"x": px.numpy()})[0])


def sentence_embeddings(text_tower: Any, tokenizer: Any, texts: list[str], max_tokens: int, progress: bool,
                        bs: int = 256) -> Any:
    """Frozen base sentence embeddings (mean-pooled, L2-normalised) for every caption."""
    import torch

    out = []
    it = range(0, len(texts), bs)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="sentence embeddings", unit="batch")
    with torch.inference_mode():
        for s in it:
            tok = tokenizer(texts[s : s + bs], padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
            out.append(text_tower.sentence_embedding(**tok))
    return torch.cat(out)


def hidden_states_below(base: Any, tokenizer: Any, texts: list[str], max_tokens: int, top: int, progress: bool,
                        bs: int = 256) -> tuple[Any, Any]:
    """Token states entering the top ``top`` layers of a BERT-style base, for tuning those layers.

    Returns ``(hidden float16 (n, T, d), mask bool (n, T))`` padded to the longest text.
    """
    import torch

    tok = tokenizer(texts, padding="longest", truncation=True, max_length=max_tokens, return_tensors="pt")
    n, t = tok["input_ids"].shape
    layers = base.encoder.layer
    keep = len(layers) - top
    hidden = torch.empty((n, t, base.config.hidden_size), dtype=torch.float16)
    it = range(0, n, bs)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="text states", unit="batch")
    with torch.inference_mode():
        for s in it:
            ids = tok["input_ids"][s : s + bs]
            am = tok["attention_mask"][s : s + bs]
            kw = {"token_type_ids": tok["token_type_ids"][s : s + bs]} if "token_type_ids" in tok else {}
            out = base(input_ids=ids, attention_mask=am, output_hidden_states=True, **kw)
            hidden[s : s + bs] = out.hidden_states[keep].to(torch.float16)
    return hidden, tok["attention_mask"].bool()
