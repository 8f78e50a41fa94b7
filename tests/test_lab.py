"""``mindgap lab --quick`` end to end: synthetic scenes → small dual encoders → gap + zero-shot report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_lab_quick_runs_end_to_end(tmp_path: Path, capsys) -> None:
    from mindgap.cli import main

    out = tmp_path / "lab"
    assert main(["lab", "--quick", "--levels", "object,relations", "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [r["level"] for r in res["levels"]] == ["object", "relations"]
    for r in res["levels"]:
        assert r["object_chance"] == pytest.approx(1 / 6) and r["attribute_chance"] == pytest.approx(1 / 6)
        assert 0.0 <= r["object_accuracy"] <= 1.0 and 0.0 <= r["attribute_accuracy"] <= 1.0
        assert r["gap_norm"] >= 0 and r["test_images"] == 40
        assert r["example_caption"].endswith(".")
    assert res["levels"][0]["mean_caption_words"] < res["levels"][1]["mean_caption_words"]
    for name in ("report.md", "lab.json", "gap_vs_richness.png", "zeroshot_vs_richness.png"):
        assert (out / name).is_file(), name
    assert "| object |" in (out / "report.md").read_text()


def test_lab_rejects_an_unknown_level(tmp_path: Path, capsys) -> None:
    from mindgap.cli import main

    assert main(["lab", "--quick", "--levels", "poetic", "--out", str(tmp_path / "lab")]) == 2
    assert "richness" in capsys.readouterr().err
