"""The search table is readable in a normal terminal: one line per hit at 80 columns, ids cut in the middle,
images by file name; wide terminals keep every column."""

from __future__ import annotations

from rich.console import Console

from mindgap.cli.search import hits_table, short_id
from mindgap.types import Hit, Modality

HITS = [Hit(id="img:1000268201_693b08cb0e", modality=Modality.IMAGE, cosine=0.4, score=1.39, rank=1, modality_rank=1,
            uri="/very/long/shared/data/flickr8k_224/images/1000268201_693b08cb0e.jpg", text="A child climbing."),
        Hit(id="txt:1000268201_693b08cb0e:0", modality=Modality.TEXT, cosine=0.6, score=0.25, rank=2, modality_rank=1,
            text="A black and white dog is carrying a stick in its mouth and runs across the field.")]


def _render(width: int) -> list[str]:
    c = Console(width=width, record=True, color_system=None, file=open("/dev/null", "w"))
    c.print(hits_table("a dog — gap zscore", HITS, 80, width=width))
    return [ln.rstrip() for ln in c.export_text().splitlines()]


def test_80_columns_one_line_per_hit():
    lines = _render(80)
    assert all(len(ln) <= 80 for ln in lines)
    rows = [ln for ln in lines if ln.strip().startswith(("1 ", "2 "))]
    assert len(rows) == 2  # no hit wraps onto a second line
    assert "1000268201_693b08cb0e.jpg" in rows[0]  # the image's whole file name
    assert short_id(HITS[0].id, 20) in rows[0] and short_id(HITS[1].id, 20) in rows[1]


def test_wide_terminal_keeps_every_column():
    text = "\n".join(_render(140))
    for col in ("rank", "modality", "cosine", "score", "mod.rank", "text / image", HITS[1].id):
        assert col in text


def test_short_id():
    assert short_id("abc", 10) == "abc"
    s = short_id("img:1000268201_693b08cb0e", 16)
    assert len(s) == 16 and s.startswith("img:") and s.endswith("08cb0e")
