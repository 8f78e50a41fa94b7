"""Visual prompting (METHODS §5) and prompt-based image understanding (METHODS §4).

* :mod:`.regions` — one region spec (pixels or relative units, grids, boxes files), validated;
* :mod:`.markers` — ellipse / rectangle / arrow / cross markers, crop, blur or grey outside;
* :mod:`.ground` — referring-expression grounding: mark each region, score against the phrase;
* :mod:`.zeroshot` — zero-shot classification with template ensembles;
* :mod:`.moderation` — screening against unsafe / safe category prompts (an aid, not a verdict);
* :mod:`.benchmark` — the measurements behind ``mindgap prompt-bench``.

Only NumPy and Pillow are imported here; encoders are passed in.
"""

from __future__ import annotations

from .markers import COLORS, MARKERS, apply_prompt, draw_marker, marker_mask, parse_color
from .regions import Region, parse_region, parse_regions

__all__ = ["Region", "parse_region", "parse_regions", "draw_marker", "apply_prompt", "marker_mask", "parse_color",
           "MARKERS", "COLORS"]
