"""Visual prompts on a copy of an image: markers (ellipse, rectangle, arrow, cross), crop, blur / grey outside.

METHODS §5 ("what CLIP knows about a red circle"): drawing a marker around a region makes a
CLIP-style encoder attend to it while keeping the context that cropping throws away.

Markers are rasterised here with NumPy from pixel-centre geometry — no antialiasing, no
dependence on Pillow's drawing algorithms — so the same inputs give the same pixels on
every platform (the tests compare golden arrays). A pixel ``(x, y)`` has its centre at
``(x + 0.5, y + 0.5)``; the region's box edges are its integer coordinates (``x1``, ``y1``
exclusive). Geometry of each marker, on the box grown by ``padding`` pixels per side:

The padded box is clipped to the image, so a marker around an edge region stays whole.

* ``ellipse`` (alias ``circle``): the ring between the ellipse inscribed in the padded box
  and the same ellipse shrunk by ``thickness``;
* ``rectangle`` (aliases ``square``, ``box``): a ``thickness``-wide frame on the inside of
  the padded box;
* ``cross``: both diagonals of the padded box, ``thickness`` wide;
* ``arrow``: a shaft and a filled head whose tip touches the padded box's corner, coming
  diagonally from the side with the most free room; for a region too big to point at from
  outside (its shorter side at least twice the arrow length) the arrow lies inside it and
  points at its centre.

Other prompts, from the same region: ``crop`` (the padded box only), ``blur`` (Gaussian
blur outside the box), ``grey`` (greyscale outside), ``none`` (an unchanged copy). Effects
combine with a marker as ``"grey+circle"`` / ``"blur+circle"``.

Example:
    >>> from PIL import Image
    >>> im = Image.new("RGB", (9, 9))
    >>> out = draw_marker(im, (2, 2, 7, 7), "rectangle", color="red", thickness=1, padding=0)
    >>> out.getpixel((2, 2)), out.getpixel((4, 4))
    ((255, 0, 0), (0, 0, 0))
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InputError
from .regions import Region, parse_region

#: Marker kinds (canonical names) and their aliases.
MARKERS: tuple[str, ...] = ("ellipse", "rectangle", "arrow", "cross")
ALIASES = {"circle": "ellipse", "oval": "ellipse", "square": "rectangle", "box": "rectangle", "rect": "rectangle",
           "x": "cross"}
#: Prompt kinds that change the image outside the region (or keep only the region).
EFFECTS: tuple[str, ...] = ("crop", "blur", "grey", "none")
#: Named marker colours (pure primaries, as in the red-circle paper's comparison).
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
    "purple": (160, 32, 240), "white": (255, 255, 255), "black": (0, 0, 0), "orange": (255, 140, 0),
}


def parse_color(color: Any) -> tuple[int, int, int]:
    """A colour name (see :data:`COLORS`, else any Pillow colour name), ``#rrggbb`` or an RGB triple."""
    if isinstance(color, str):
        key = color.strip().lower()
        if key in COLORS:
            return COLORS[key]
        from PIL import ImageColor

        try:
            rgb = ImageColor.getrgb(key)
        except ValueError:
            raise InputError(f"unknown colour {color!r}; use a name ({', '.join(COLORS)}) or #rrggbb",
                             item="color") from None
        return (int(rgb[0]), int(rgb[1]), int(rgb[2]))
    if isinstance(color, (tuple, list)) and len(color) == 3 and all(isinstance(c, (int, np.integer)) for c in color):
        if all(0 <= int(c) <= 255 for c in color):
            return (int(color[0]), int(color[1]), int(color[2]))
    raise InputError(f"bad colour {color!r}; use a name, #rrggbb or three integers 0-255", item="color")


def canonical_marker(marker: str) -> str:
    """Canonical marker name (``circle`` → ``ellipse``); an unknown name is an InputError."""
    m = str(marker).strip().lower()
    m = ALIASES.get(m, m)
    if m not in MARKERS:
        raise InputError(f"unknown marker {marker!r}; choose from {', '.join(MARKERS)} "
                         f"(aliases: {', '.join(ALIASES)})", item="marker")
    return m


def default_thickness(size: tuple[int, int]) -> int:
    """Line width that survives the encoder's downscaling: ``max(1, round(min(W, H) / 75))`` (3 px at 224)."""
    return max(1, round(min(size) / 75))


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return (np.arange(w, dtype=np.float64) + 0.5)[None, :], (np.arange(h, dtype=np.float64) + 0.5)[:, None]


def _segment(h: int, w: int, p: tuple[float, float], q: tuple[float, float], t: float) -> np.ndarray:
    """Pixels whose centre lies within ``t / 2`` of the segment ``p``–``q``."""
    xs, ys = _grid(h, w)
    dx, dy = q[0] - p[0], q[1] - p[1]
    ll = dx * dx + dy * dy
    if ll == 0:
        s = np.zeros((h, w))
    else:
        s = np.clip(((xs - p[0]) * dx + (ys - p[1]) * dy) / ll, 0.0, 1.0)
    ex, ey = xs - p[0] - s * dx, ys - p[1] - s * dy
    return ex * ex + ey * ey <= (t / 2) ** 2


def _triangle(h: int, w: int, a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> np.ndarray:
    """Pixels whose centre lies inside (or on) the triangle ``a b c``."""
    xs, ys = _grid(h, w)

    def side(p: tuple[float, float], q: tuple[float, float]) -> np.ndarray:
        return (q[0] - p[0]) * (ys - p[1]) - (q[1] - p[1]) * (xs - p[0])

    s1, s2, s3 = side(a, b), side(b, c), side(c, a)
    return ((s1 >= 0) & (s2 >= 0) & (s3 >= 0)) | ((s1 <= 0) & (s2 <= 0) & (s3 <= 0))


def marker_mask(size: tuple[int, int], region: Any, marker: str = "ellipse", *, thickness: int | None = None,
                padding: int | None = None) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the pixels a marker paints (see the module docstring).

    Args:
        size: image ``(W, H)``.
        region: any region spec (validated against ``size``).
        marker: ``ellipse``/``circle``, ``rectangle``/``square``, ``arrow``, ``cross``.
        thickness: line width in pixels (default :func:`default_thickness`).
        padding: pixels added to each side of the box (default: ``thickness``).
    """
    w, h = int(size[0]), int(size[1])
    reg = parse_region(region, (w, h))
    m = canonical_marker(marker)
    t = default_thickness((w, h)) if thickness is None else int(thickness)
    if t < 1:
        raise InputError("thickness must be at least 1 pixel", item="thickness")
    p = t if padding is None else int(padding)
    if p < 0:
        raise InputError("padding must be >= 0 pixels", item="padding")
    # the padded box is clipped to the image so a frame around an edge region stays visible
    x0, y0, x1, y1 = max(0, reg.x0 - p), max(0, reg.y0 - p), min(w, reg.x1 + p), min(h, reg.y1 + p)
    if m == "rectangle":
        out = np.zeros((h, w), dtype=bool)
        ys, xs = np.mgrid[0:h, 0:w]
        outer = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
        inner = (xs >= x0 + t) & (xs < x1 - t) & (ys >= y0 + t) & (ys < y1 - t)
        out[outer & ~inner] = True
        return out
    if m == "ellipse":
        xs, ys = _grid(h, w)
        cx, cy, a, b = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        outer = ((xs - cx) / a) ** 2 + ((ys - cy) / b) ** 2 <= 1.0
        if a - t <= 0 or b - t <= 0:
            return outer
        inner = ((xs - cx) / (a - t)) ** 2 + ((ys - cy) / (b - t)) ** 2 < 1.0
        return outer & ~inner
    if m == "cross":
        return _segment(h, w, (x0, y0), (x1, y1), t) | _segment(h, w, (x0, y1), (x1, y0), t)
    return _arrow(w, h, (x0, y0, x1, y1), reg, t)


def _arrow(w: int, h: int, padded: tuple[float, float, float, float], reg: Region, t: int) -> np.ndarray:
    x0, y0, x1, y1 = padded
    length = max(5 * t, round(0.25 * min(w, h)))
    head = max(3 * t, round(0.35 * length))
    corners = {(1, 1): (x1, y1), (-1, 1): (x0, y1), (1, -1): (x1, y0), (-1, -1): (x0, y0)}
    room = {d: min(w - cx if d[0] > 0 else cx, h - cy if d[1] > 0 else cy) for d, (cx, cy) in corners.items()}
    best = max(corners, key=lambda d: (room[d], d))  # ties broken deterministically (bottom-right first)
    if min(reg.width, reg.height) >= 2 * length or room[best] < 0.5 * length:
        best = (1, 1)
        tip = reg.center  # inside the region, pointing at its centre
    else:
        tip = corners[best]
    ux, uy = best[0] / math.sqrt(2), best[1] / math.sqrt(2)  # from the tip towards the tail
    tail = (tip[0] + ux * length, tip[1] + uy * length)
    base = (tip[0] + ux * head, tip[1] + uy * head)
    half = 0.6 * head
    left = (base[0] - uy * half, base[1] + ux * half)
    right = (base[0] + uy * half, base[1] - ux * half)
    return _segment(h, w, base, tail, t) | _triangle(h, w, tip, left, right)


def draw_marker(image: Any, region: Any, marker: str = "ellipse", *, color: Any = "red", thickness: int | None = None,
                padding: int | None = None):  # noqa: ANN201 - PIL.Image
    """A copy of ``image`` with a marker drawn around ``region`` (the input is never modified).

    Args:
        image: a path, bytes or PIL image (loaded with the pixel limit of :func:`mindgap.images.load_image`).
        region: any region spec, validated against the image.
        marker, thickness, padding: see :func:`marker_mask`.
        color: a colour name, ``#rrggbb`` or an RGB triple.
    """
    from PIL import Image

    from ..images import load_image

    im = load_image(image)
    rgb = parse_color(color)
    arr = np.array(im, dtype=np.uint8)  # a copy
    arr[marker_mask(im.size, region, marker, thickness=thickness, padding=padding)] = rgb
    return Image.fromarray(arr, "RGB")


def _parse_prompt(prompt: str) -> tuple[list[str], str | None]:
    parts = [p.strip().lower() for p in str(prompt).split("+") if p.strip()]
    if not parts:
        raise InputError("empty prompt kind", item="prompt")
    effects = [("grey" if p == "gray" else p) for p in parts if ("grey" if p == "gray" else p) in EFFECTS]
    markers = [canonical_marker(p) for p in parts if ("grey" if p == "gray" else p) not in EFFECTS]
    if len(markers) > 1 or len(effects) > 1 or ("crop" in effects and markers):
        raise InputError(f"prompt {prompt!r}: combine at most one of blur/grey with one marker "
                         "(e.g. 'grey+circle'); crop cannot be combined", item="prompt")
    return effects, (markers[0] if markers else None)


def prompt_kinds() -> list[str]:
    """Every single prompt kind: the markers, their aliases, and the effects."""
    return list(MARKERS) + list(ALIASES) + list(EFFECTS)


def apply_prompt(image: Any, region: Any, prompt: str = "ellipse", *, color: Any = "red",
                 thickness: int | None = None, padding: int | None = None, blur_radius: float | None = None):  # noqa: ANN201
    """A visual prompt for ``region`` on a copy of ``image``.

    Args:
        image: path, bytes or PIL image.
        region: any region spec (validated against the image).
        prompt: a marker (``ellipse``/``circle``, ``rectangle``, ``arrow``, ``cross``), an effect
            (``crop``, ``blur``, ``grey``, ``none``) or ``"<blur|grey>+<marker>"``.
        color, thickness: marker options.
        padding: pixels around the box (markers default to ``thickness``, effects to 0).
        blur_radius: Gaussian radius for ``blur`` (default ``max(2, min(W, H) / 25)``).

    Returns:
        A new RGB ``PIL.Image`` (for ``crop``, the size of the padded box).
    """
    from PIL import Image, ImageFilter

    from ..images import load_image

    im = load_image(image)
    effects, marker = _parse_prompt(prompt)
    reg = parse_region(region, im.size)
    eff = effects[0] if effects else "none"
    if eff != "none":
        p = 0 if padding is None else int(padding)
        if p < 0:
            raise InputError("padding must be >= 0 pixels", item="padding")
        box = (max(0, reg.x0 - p), max(0, reg.y0 - p), min(im.width, reg.x1 + p), min(im.height, reg.y1 + p))
        if eff == "crop":
            return im.crop(box)
        if eff == "blur":
            r = max(2.0, min(im.size) / 25) if blur_radius is None else float(blur_radius)
            if r <= 0:
                raise InputError("blur_radius must be > 0", item="blur_radius")
            out = im.filter(ImageFilter.GaussianBlur(r))
        else:
            out = im.convert("L").convert("RGB")
        out.paste(im.crop(box), box[:2])
        im = out
    if marker is None:
        return im.copy() if eff == "none" else im
    return draw_marker(im, reg, marker, color=color, thickness=thickness, padding=padding)


__all__ = ["MARKERS", "ALIASES", "EFFECTS", "COLORS", "parse_color", "canonical_marker", "default_thickness",
           "marker_mask", "draw_marker", "apply_prompt", "prompt_kinds"]
