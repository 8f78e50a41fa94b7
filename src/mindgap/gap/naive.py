"""``naive``: raw cosine over everything (the baseline that never returns images)."""

from __future__ import annotations

from ..types import Modality
from .base import GapCorrector, HeadScorer, head_identity


class Naive(GapCorrector):
    """Raw cosine; nothing to fit."""

    name = "naive"

    def head_scorer(self, query_modality: Modality, modality: Modality) -> HeadScorer | None:
        return head_identity
