"""Region specs: one box, in pixels or relative units, validated against an image.

A box is ``(x0, y0, x1, y1)`` with ``x1`` / ``y1`` **exclusive** (like ``PIL.Image.crop``),
so the whole of a W×H image is ``(0, 0, W, H)`` or ``rel:0,0,1,1``. Relative boxes are
converted with ``round(v * W)``, so adjacent grid cells share their boundaries exactly.

Accepted specs (:func:`parse_region`):

* a :class:`Region`;
* ``"x0,y0,x1,y1"`` or ``"px:x0,y0,x1,y1"`` (pixels) / ``"rel:x0,y0,x1,y1"`` (0–1);
* a 4-sequence of numbers (pixels);
* a dict ``{"box": [x0, y0, x1, y1], "unit": "px" | "rel", "label": ..., "gold": bool}``.

Lists (:func:`parse_regions`): ``"grid:RxC"`` (e.g. ``grid:3x3``), boxes separated by
``;``, a path to a JSON file holding a list of boxes or ``{"regions": [...]}``, or a
Python list of any of the above. Invalid boxes — zero or negative area, outside the
image, non-numeric — raise :class:`~mindgap.errors.InputError` naming the region.

Example:
    >>> r = parse_region("rel:0,0,0.5,0.5").to_pixels((100, 80))
    >>> r.box
    (0, 0, 50, 40)
    >>> [x.box for x in parse_regions("grid:1x2", (10, 10))]
    [(0, 0, 5, 10), (5, 0, 10, 10)]
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

#: More regions than this are refused (each costs one encoder forward pass).
MAX_REGIONS = 400
_GRID = re.compile(r"^grid:(\d+)(?:x(\d+))?$", re.IGNORECASE)


@dataclass(frozen=True)
class Region:
    """A box ``(x0, y0, x1, y1)``, ``unit`` ``"px"`` or ``"rel"``, with an optional label.

    ``gold`` marks the known answer in a boxes file (used by ``mindgap ground --compare``).
    """

    x0: float
    y0: float
    x1: float
    y1: float
    unit: str = "px"
    label: str | None = None
    gold: bool = False

    @property
    def box(self) -> tuple:
        return (self.x0, self.y0, self.x1, self.y1)

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2)

    @property
    def name(self) -> str:
        return self.label or f"{self.unit}:{','.join(_num(v) for v in self.box)}"

    def to_pixels(self, size: tuple[int, int], *, name: str | None = None) -> "Region":
        """Integer pixel box inside an image of ``size = (W, H)``; raises on anything invalid."""
        who = name or f"region {self.name}"
        w, h = int(size[0]), int(size[1])
        if self.unit == "rel":
            x0, y0, x1, y1 = (round(self.x0 * w), round(self.y0 * h), round(self.x1 * w), round(self.y1 * h))
            if x1 <= x0 or y1 <= y0:
                raise InputError(f"relative box {self.box} is smaller than one pixel on a {w}x{h} image", item=who)
        else:
            x0, y0, x1, y1 = (round(v) for v in self.box)
            if x1 <= x0 or y1 <= y0:
                raise InputError(f"box {self.box} has zero area after rounding to pixels", item=who)
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            raise InputError(f"box ({x0}, {y0}, {x1}, {y1}) lies (partly) outside the {w}x{h} image", item=who)
        return Region(x0, y0, x1, y1, "px", self.label, self.gold)

    def scaled(self, sx: float, sy: float) -> "Region":
        """A pixel region scaled by ``(sx, sy)`` (rounded outwards, for resized images)."""
        return Region(math.floor(self.x0 * sx), math.floor(self.y0 * sy), math.ceil(self.x1 * sx),
                      math.ceil(self.y1 * sy), self.unit, self.label, self.gold)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"box": list(self.box), "unit": self.unit}
        if self.label is not None:
            d["label"] = self.label
        if self.gold:
            d["gold"] = True
        return d


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _numbers(vals: Sequence[Any], who: str) -> tuple[float, float, float, float]:
    if isinstance(vals, (str, bytes)) or len(vals) != 4:
        raise InputError(f"a box needs exactly 4 numbers x0,y0,x1,y1, got {vals!r}", item=who)
    out = []
    for v in vals:
        if isinstance(v, bool):
            raise InputError(f"box coordinates must be numbers, got {v!r}", item=who)
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise InputError(f"box coordinates must be numbers, got {v!r}", item=who) from None
        if not math.isfinite(f):
            raise InputError(f"box coordinates must be finite, got {v!r}", item=who)
        out.append(f)
    return out[0], out[1], out[2], out[3]


def _make(vals: Sequence[Any], unit: str, who: str, label: str | None = None, gold: bool = False) -> Region:
    if unit not in ("px", "rel"):
        raise InputError(f"unknown unit {unit!r}; use 'px' or 'rel'", item=who)
    x0, y0, x1, y1 = _numbers(vals, who)
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"box ({_num(x0)}, {_num(y0)}, {_num(x1)}, {_num(y1)}) has zero or negative area "
                         "(need x1 > x0 and y1 > y0)", item=who)
    if unit == "rel" and (min(x0, y0) < 0 or max(x1, y1) > 1):
        raise InputError(f"relative coordinates must lie in [0, 1], got ({_num(x0)}, {_num(y0)}, {_num(x1)}, "
                         f"{_num(y1)})", item=who)
    return Region(x0, y0, x1, y1, unit, label, bool(gold))


def parse_region(spec: Any, size: tuple[int, int] | None = None, *, name: str = "region") -> Region:
    """One region from any accepted spec; with ``size = (W, H)`` it is validated and in pixels."""
    if isinstance(spec, Region):
        reg = _make(spec.box, spec.unit, name, spec.label, spec.gold)
    elif isinstance(spec, str):
        s = spec.strip()
        unit = "px"
        m = re.match(r"^(px|rel)\s*:\s*(.*)$", s, re.IGNORECASE)
        if m:
            unit, s = m.group(1).lower(), m.group(2)
        parts = [p for p in re.split(r"[,\s]+", s.strip("()[] ")) if p]
        reg = _make(parts, unit, name)
    elif isinstance(spec, dict):
        if "box" in spec:
            vals = spec["box"]
        elif all(k in spec for k in ("x0", "y0", "x1", "y1")):
            vals = [spec[k] for k in ("x0", "y0", "x1", "y1")]
        else:
            raise InputError("a region object needs 'box': [x0, y0, x1, y1]", item=name)
        label = spec.get("label")
        reg = _make(vals, str(spec.get("unit", "px")).lower(), name, None if label is None else str(label),
                    bool(spec.get("gold", False)))
    elif isinstance(spec, Sequence) and not isinstance(spec, bytes):
        reg = _make(list(spec), "px", name)
    else:
        raise InputError(f"cannot read a region from {type(spec).__name__}", item=name)
    return reg.to_pixels(size, name=name) if size is not None else reg


def grid(rows: int, cols: int) -> list[Region]:
    """A ``rows × cols`` grid of relative cells, row-major, labelled ``r{row}c{col}`` (1-based)."""
    if rows < 1 or cols < 1 or rows * cols > MAX_REGIONS:
        raise InputError(f"grid {rows}x{cols}: need at least 1x1 and at most {MAX_REGIONS} cells", item="regions")
    return [Region(c / cols, r / rows, (c + 1) / cols, (r + 1) / rows, "rel", f"r{r + 1}c{c + 1}")
            for r in range(rows) for c in range(cols)]


def _from_file(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read regions file ({exc})", item=str(path)) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg} at line {exc.lineno})", item=str(path)) from None
    if isinstance(data, dict):
        data = data.get("regions", data.get("boxes"))
    if not isinstance(data, list):
        raise InputError("expected a JSON list of boxes or {\"regions\": [...]}", item=str(path))
    return data


def parse_regions(spec: Any, size: tuple[int, int] | None = None) -> list[Region]:
    """A list of regions from ``grid:RxC``, a JSON file, ``;``-separated boxes or a list.

    With ``size = (W, H)`` every region is validated and converted to pixels; errors name
    the offending region (``regions[2]``, ``boxes.json[0]``).
    """
    src = "regions"
    if isinstance(spec, Path):
        spec = str(spec)
    if isinstance(spec, str):
        s = spec.strip()
        m = _GRID.match(s)
        if m:
            rows = int(m.group(1))
            items: list[Any] = grid(rows, int(m.group(2) or rows))
        elif s.lower().endswith(".json") or Path(s).is_file():
            p = Path(s)
            if not p.is_file():
                raise InputError("regions file does not exist", item=s)
            items, src = _from_file(p), p.name
        elif s.lower().startswith("grid"):
            raise InputError(f"bad grid spec {s!r}; write grid:RxC, e.g. grid:3x3", item="regions")
        else:
            items = [p for p in s.split(";") if p.strip()]
    elif isinstance(spec, Region) or (isinstance(spec, dict)):
        items = [spec]
    elif isinstance(spec, Sequence) and not isinstance(spec, bytes):
        items = list(spec)
    else:
        raise InputError(f"cannot read regions from {type(spec).__name__}", item="regions")
    if not items:
        raise InputError("no regions given", item=src)
    if len(items) > MAX_REGIONS:
        raise InputError(f"{len(items)} regions is over the limit of {MAX_REGIONS}", item=src)
    return [parse_region(x, size, name=f"{src}[{i}]") for i, x in enumerate(items)]


__all__ = ["Region", "parse_region", "parse_regions", "grid", "MAX_REGIONS"]
