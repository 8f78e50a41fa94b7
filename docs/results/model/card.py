"""Re-render a bundled model's card with the measured ablation and old-vs-new tables.

Run: ``python docs/results/model/card.py MODEL_DIR`` (after ``ablation.py`` and ``compare.py``):
the card is :func:`mindgap.encoders.model_card.write_model_card` of the model's own training
record, plus ``ablation.md`` and ``compare.md`` from this folder (no number is typed by hand).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(model_dir: str) -> None:
    from mindgap.encoders.model_card import write_model_card

    d = Path(model_dir)
    cfg = json.loads((d / "mindgap_model.json").read_text())
    extra = []
    for name in ("ablation.md", "compare.md"):
        p = HERE / name
        if p.is_file():
            body = p.read_text().strip().splitlines()
            extra += ["## " + body[0].lstrip("# ").strip(), *body[1:], ""]
    write_model_card(d, cfg, "\n".join(extra))
    print(d / "README.md")


if __name__ == "__main__":
    main(sys.argv[1])
