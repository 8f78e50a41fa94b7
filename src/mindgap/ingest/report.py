"""What one ingestion run did: :class:`IngestReport` (added, already present, skipped, time)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..types import Item


@dataclass
class IngestReport:
    """Summary of one ``index`` run.

    Attributes:
        added: items embedded and committed, per modality.
        already_present: items whose id the store already held (or repeated in the source).
        present: ``already_present`` per modality.
        skipped: ``(item, reason)`` for everything that could not be indexed.
        seconds: wall time of the run.
    """

    added: dict[str, int] = field(default_factory=lambda: {"text": 0, "image": 0})
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (item, reason)
    present: dict[str, int] = field(default_factory=lambda: {"text": 0, "image": 0})
    seconds: float = 0.0

    @property
    def already_present(self) -> int:
        return sum(self.present.values())

    def mark_present(self, item: Item) -> None:
        """Count an item the store already held (or that the source repeated)."""
        self.present[item.modality.value] += 1

    @property
    def handled(self) -> int:
        """Every item the run saw: added, already present or skipped."""
        return sum(self.added.values()) + self.already_present + len(self.skipped)

    @property
    def items_per_second(self) -> float:
        """Throughput over every item handled (added, present or skipped)."""
        return self.handled / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"added": self.added, "already_present": self.already_present, "present": self.present,
                "skipped": [{"item": i, "reason": r} for i, r in self.skipped],
                "seconds": round(self.seconds, 3), "items_per_second": round(self.items_per_second, 2)}
