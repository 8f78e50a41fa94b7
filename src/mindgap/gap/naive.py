"""``naive``: raw cosine over everything (the baseline that never returns images)."""

from __future__ import annotations

from .base import GapCorrector


class Naive(GapCorrector):
    """Raw cosine; nothing to fit."""

    name = "naive"
