"""Visual prompting: pixel-exact markers, region validation, grounding, zero-shot, moderation, CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mindgap.errors import ImageError, ImageTooLarge, InputError
from mindgap.eval.synthetic import Scene, SceneObject
from mindgap.prompting import apply_prompt, draw_marker, marker_mask, parse_region, parse_regions

# -- golden marker masks (9x9 unless noted); "#" = painted ---------------------------------
GOLDEN = {
    ("rectangle", (2, 2, 7, 7), 1, 0, (9, 9)): """
.........
.........
..#####..
..#...#..
..#...#..
..#...#..
..#####..
.........
.........""",
    ("ellipse", (1, 1, 8, 8), 1, 0, (9, 9)): """
.........
...###...
..#...#..
.#.....#.
.#.....#.
.#.....#.
..#...#..
...###...
.........""",
    ("cross", (1, 1, 8, 8), 1, 0, (9, 9)): """
.........
.#.....#.
..#...#..
...#.#...
....#....
...#.#...
..#...#..
.#.....#.
.........""",
    ("arrow", (1, 1, 4, 4), 1, 0, (12, 12)): """
............
............
............
............
....##......
....###.....
.....##.....
.......#....
............
............
............
............""",
    ("ellipse", (0, 0, 9, 6), 2, 0, (9, 6)): """
..#####..
.#######.
##.....##
##.....##
.#######.
..#####..""",
    # padding 1 grows the box, clipped at the image's top-left edge
    ("rectangle", (1, 1, 5, 4), 1, 1, (7, 6)): """
######.
#....#.
#....#.
#....#.
######.
.......""",
}


def _grid(text: str) -> np.ndarray:
    return np.array([[c == "#" for c in line] for line in text.strip().splitlines()])


@pytest.mark.parametrize("key", list(GOLDEN), ids=[f"{k[0]}-{k[1]}-t{k[2]}-p{k[3]}" for k in GOLDEN])
def test_marker_masks_are_pixel_exact(key) -> None:
    marker, box, t, p, size = key
    got = marker_mask(size, box, marker, thickness=t, padding=p)
    assert got.shape == (size[1], size[0])
    np.testing.assert_array_equal(got, _grid(GOLDEN[key]))


def test_draw_marker_paints_exactly_the_mask_on_a_copy(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(9, 9, 3), dtype=np.uint8)
    im = Image.fromarray(arr, "RGB")
    out = draw_marker(im, (1, 1, 8, 8), "circle", color="#00ff00", thickness=1, padding=0)
    mask = _grid(GOLDEN[("ellipse", (1, 1, 8, 8), 1, 0, (9, 9))])
    got = np.asarray(out)
    assert (got[mask] == (0, 255, 0)).all()
    np.testing.assert_array_equal(got[~mask], arr[~mask])
    np.testing.assert_array_equal(np.asarray(im), arr)  # input untouched
    # same result from a path and from bytes: loading goes through the safe loader
    p = tmp_path / "x.png"
    im.save(p)
    for src in (p, str(p), p.read_bytes()):
        np.testing.assert_array_equal(np.asarray(draw_marker(src, (1, 1, 8, 8), "ellipse", color=(0, 255, 0),
                                                             thickness=1, padding=0)), got)


def test_default_thickness_and_colours() -> None:
    im = Image.new("RGB", (224, 224), (128, 128, 128))
    out = np.asarray(draw_marker(im, (50, 50, 150, 150), "rectangle", color="red", padding=0))
    assert (out[50, 50:150] == (255, 0, 0)).all() and (out[52, 100] == (255, 0, 0)).all()  # 3 px at 224
    assert (out[53, 100] == (128, 128, 128)).all()
    with pytest.raises(InputError, match="colour"):
        draw_marker(im, (0, 0, 10, 10), "circle", color="not-a-colour")
    with pytest.raises(InputError, match="unknown marker"):
        draw_marker(im, (0, 0, 10, 10), "hexagram")
    with pytest.raises(InputError, match="thickness"):
        draw_marker(im, (0, 0, 10, 10), "circle", thickness=0)


# -- regions -------------------------------------------------------------------------------
def test_region_specs_and_conversion(tmp_path: Path) -> None:
    assert parse_region("10,20,30,40", (100, 100)).box == (10, 20, 30, 40)
    assert parse_region("rel:0,0,0.5,0.25", (200, 80)).box == (0, 0, 100, 20)
    assert parse_region({"box": [0.5, 0.5, 1, 1], "unit": "rel", "label": "br"}, (10, 10)).label == "br"
    assert parse_region([1, 2, 3, 4]).unit == "px"
    cells = parse_regions("grid:3x3", (100, 50))
    assert len(cells) == 9 and cells[0].label == "r1c1"
    assert sum(c.width * c.height for c in cells) == 100 * 50  # an exact partition
    assert [c.box for c in parse_regions("0,0,5,5; 5,5,10,10", (10, 10))] == [(0, 0, 5, 5), (5, 5, 10, 10)]
    f = tmp_path / "boxes.json"
    f.write_text(json.dumps({"regions": [{"box": [0, 0, 4, 4], "label": "a"}, {"box": [4, 4, 8, 8], "gold": True}]}))
    regs = parse_regions(str(f), (8, 8))
    assert [r.gold for r in regs] == [False, True] and regs[0].label == "a"


@pytest.mark.parametrize("spec, match", [
    ("10,10,10,20", "zero or negative area"),
    ("10,20,5,30", "zero or negative area"),
    ("0,0,120,50", "outside the 100x100 image"),
    ("-1,0,10,10", "outside"),
    ("rel:0,0,1.5,1", r"\[0, 1\]"),
    ("1,2,3", "exactly 4 numbers"),
    ("a,b,c,d", "must be numbers"),
    ("rel:0,0,0.001,0.5", "smaller than one pixel"),
])
def test_invalid_regions_are_clear_errors(spec: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        parse_region(spec, (100, 100))


def test_invalid_region_lists(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="grid:RxC"):
        parse_regions("grid:three")
    with pytest.raises(InputError, match="at most"):
        parse_regions("grid:30x30")
    with pytest.raises(InputError, match="no regions"):
        parse_regions([])
    with pytest.raises(InputError, match="does not exist"):
        parse_regions(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        parse_regions(str(bad))
    bad.write_text(json.dumps([[0, 0, 5, 5], [0, 0, 0, 5]]))
    with pytest.raises(InputError) as ei:
        parse_regions(str(bad), (10, 10))
    assert "bad.json[1]" in str(ei.value)


# -- other prompts -------------------------------------------------------------------------
def _scene_image(size: int = 64) -> Image.Image:
    objs = (SceneObject("circle", "red", "big", "plain", 0.25, 0.5, 0.2),
            SceneObject("square", "blue", "big", "plain", 0.75, 0.5, 0.2))
    return Scene(objs, background=128).render(size)


def test_crop_blur_grey_and_combinations() -> None:
    im = _scene_image()
    box = (0, 0, 32, 64)
    arr = np.asarray(im)
    assert apply_prompt(im, box, "crop").size == (32, 64)
    assert apply_prompt(im, box, "crop", padding=4).size == (36, 64)  # clipped at the image edge
    grey = np.asarray(apply_prompt(im, box, "grey"))
    np.testing.assert_array_equal(grey[:, :32], arr[:, :32])
    assert (grey[:, 32:, 0] == grey[:, 32:, 1]).all() and (grey[:, 32:, 1] == grey[:, 32:, 2]).all()
    assert not (arr[:, 32:, 0] == arr[:, 32:, 2]).all()  # the blue square was coloured before
    blur = np.asarray(apply_prompt(im, box, "blur"))
    np.testing.assert_array_equal(blur[:, :32], arr[:, :32])
    assert not np.array_equal(blur[:, 32:], arr[:, 32:])
    both = np.asarray(apply_prompt(im, box, "grey+circle", color="green", thickness=1))
    assert (both == (0, 255, 0)).all(axis=2).any()
    np.testing.assert_array_equal(np.asarray(apply_prompt(im, box, "none")), arr)
    with pytest.raises(InputError, match="crop cannot be combined"):
        apply_prompt(im, box, "crop+circle")
    with pytest.raises(InputError):
        apply_prompt(im, box, "circle+arrow")


# -- encoder-backed ------------------------------------------------------------------------
def test_grounding_picks_the_right_region_on_an_easy_case(offline_encoder) -> None:
    from mindgap.prompting.ground import compare, ground, tie_credit

    im = _scene_image(224)
    left = ground(offline_encoder, im, "the red circle", regions="grid:1x2", marker="crop")
    right = ground(offline_encoder, im, "the blue square", regions="grid:1x2", marker="crop")
    assert (left.best, right.best) == (0, 1)
    assert left.ranking[0]["box"] == [0, 0, 112, 224]
    for phrase, gold in (("the red circle", 0), ("the blue square", 1)):
        rows = compare(offline_encoder, im, phrase, regions="grid:1x2", gold=gold,
                       variants=[("grey", "red"), ("none", "red")])
        assert rows[0]["best"] == gold and rows[0]["credit"] == 1.0 and rows[0]["gold_rank"] == 1
        # identical copies tie: the no-prompt baseline earns chance, not "always region 0"
        assert rows[1]["margin"] == pytest.approx(0.0, abs=1e-6) and rows[1]["credit"] == 0.5
    assert tie_credit(np.array([0.2, 0.2, 0.1]), 1) == 0.5 and tie_credit(np.array([0.2, 0.3]), 0) == 0.0
    d = left.to_dict()
    assert d["best"] == 0 and len(d["ranking"]) == 2 and d["prior"] is True
    ov = left.overlay()
    assert ov.size == (224, 224) and (np.asarray(ov) == (255, 0, 0)).all(axis=2).any()


def test_ground_downscales_large_inputs_and_reports_original_boxes(offline_encoder) -> None:
    from mindgap.prompting.ground import ground

    big = _scene_image(224).resize((1400, 1400), Image.NEAREST)
    res = ground(offline_encoder, big, "the red circle", regions="0,0,700,1400;700,0,1400,1400", marker="crop")
    assert res.scale < 1 and res.image.size == (1024, 1024)
    assert sorted(r["box"] for r in res.ranking) == [[0, 0, 700, 1400], [700, 0, 1400, 1400]]


def test_corrupt_and_huge_images_are_refused(offline_encoder, tmp_path: Path, monkeypatch) -> None:
    from mindgap.prompting.ground import ground
    from mindgap.prompting.moderation import moderate
    from mindgap.prompting.zeroshot import classify

    good = tmp_path / "good.png"
    _scene_image(32).save(good)
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ImageError) as ei:
        classify(offline_encoder, [good, trunc], ["a", "b"])
    assert "trunc.png" in str(ei.value)
    with pytest.raises(ImageError, match="not an image"):
        ground(offline_encoder, b"definitely not an image", "x")
    monkeypatch.setenv("MINDGAP_MAX_IMAGE_PIXELS", "500")
    for fn in (lambda: ground(offline_encoder, good, "x"), lambda: moderate(offline_encoder, [good]),
               lambda: draw_marker(good, (0, 0, 4, 4))):
        with pytest.raises(ImageTooLarge, match="over the limit"):
            fn()


def test_classification_probabilities(offline_encoder, tmp_path: Path) -> None:
    from mindgap.prompting.zeroshot import classify, load_templates

    ims = [_scene_image(96), Image.new("RGB", (50, 70), (20, 200, 30))]
    labels = ["red circle", "blue square", "dog", "beach"]
    res = classify(offline_encoder, ims, labels, k=3)
    assert len(res) == 2
    for r in res:
        assert r.probs.sum() == pytest.approx(1.0, abs=1e-9) and (r.probs > 0).all()
        d = r.to_dict()
        assert d["labels"] == labels and len(d["top"]) == 3
        assert [t["prob"] for t in d["top"]] == sorted((t["prob"] for t in d["top"]), reverse=True)
        assert d["top"][0]["label"] == labels[int(np.argmax(r.probs))]
    single = classify(offline_encoder, ims[:1], labels, templates=["a photo of a {}."], k=10)[0]
    assert len(single.top) == 4 and not np.allclose(single.probs, res[0].probs)  # the ensemble matters
    f = tmp_path / "tpl.txt"
    f.write_text("# comment\na photo of a {}.\n\nan image of a {}.\n")
    assert load_templates(f) == ["a photo of a {}.", "an image of a {}."]
    f.write_text("no placeholder\n")
    with pytest.raises(InputError, match="exactly one"):
        load_templates(f)
    for bad, match in ((["dog"], "at least two"), (["dog", "dog"], "duplicate"), (["dog", " "], "empty label")):
        with pytest.raises(InputError, match=match):
            classify(offline_encoder, ims, bad)


def test_moderation_threshold_and_structure(offline_encoder) -> None:
    from mindgap.prompting.moderation import CAVEAT, moderate

    im = _scene_image(96)
    r = moderate(offline_encoder, [im])[0]
    d = r.to_dict()
    assert set(d) >= {"flagged", "categories", "confidence", "scores", "note"} and d["note"] == CAVEAT
    assert sum(d["scores"].values()) == pytest.approx(1.0, abs=1e-9)
    assert d["flagged"] == (r.unsafe_probability >= 0.5)
    assert d["confidence"] == pytest.approx(r.unsafe_probability if r.flagged else 1 - r.unsafe_probability)
    low = moderate(offline_encoder, im, threshold=1e-6, unsafe=["violence", "weapons"], safe=["a toy", "shapes"])[0]
    assert low.flagged and low.categories and set(low.categories) <= {"violence", "weapons"}
    high = moderate(offline_encoder, im, threshold=1.0, unsafe=["violence", "weapons"], safe=["a toy", "shapes"])[0]
    assert not high.flagged and high.categories == []
    with pytest.raises(InputError, match="both unsafe and safe"):
        moderate(offline_encoder, im, unsafe=["a", "b"], safe=["b", "c"])
    with pytest.raises(InputError, match="threshold"):
        moderate(offline_encoder, im, threshold=1.5)


def test_benchmark_tie_aware_baseline_and_labels(offline_encoder) -> None:
    from types import SimpleNamespace

    from mindgap.prompting.benchmark import PromptBenchConfig, evaluate_grounding, flickr_labels, synthetic_items

    cfg = PromptBenchConfig(n_scenes=2, scene_size=96)
    items = synthetic_items(cfg)
    assert len(items) == 2 and all(len(it.queries) == 9 for it in items)
    rows = evaluate_grounding(offline_encoder, items, [("none", "red"), ("crop", "red")])
    none = rows[0]
    assert none["prior"]["all"] == pytest.approx(1 / 3) and none["no_prior"]["all"] == pytest.approx(1 / 3)
    assert 0.0 <= rows[1]["prior"]["all"] <= 1.0 and rows[1]["n"] == {"colour": 6, "full": 6, "shape": 6}
    recs = [SimpleNamespace(captions=["A dog runs ."] * 3 + ["A brown animal ."] * 2),
            SimpleNamespace(captions=["A dog chases a cat ."] * 5),
            SimpleNamespace(captions=["A dog ."] * 2 + ["grass ."] * 3)]
    got = flickr_labels(recs * 3)
    assert [lab for _, lab in got] == ["dog"] * 3  # 2nd names two classes, 3rd has only 2 votes


def test_same_code_runs_on_a_transformers_clip(tmp_path_factory) -> None:
    """The hf: backend (a tiny random CLIPModel; a real CLIP loads the same way) needs no special casing."""
    from _tiny_clip import tiny_clip_dir

    from mindgap.encoders import load_encoder
    from mindgap.prompting.ground import ground
    from mindgap.prompting.moderation import moderate
    from mindgap.prompting.zeroshot import classify, logit_scale

    enc = load_encoder(f"hf:{tiny_clip_dir(tmp_path_factory)}", device="cpu")
    assert logit_scale(enc) == pytest.approx(1 / 0.07, rel=1e-3)  # CLIP's initial learned scale, read from the model
    im = _scene_image(64)
    res = ground(enc, im, "the red circle", regions="grid:2x2")
    assert len(res.ranking) == 4 and res.overlay().size == (64, 64)
    assert classify(enc, [im], ["dog", "cat"])[0].probs.sum() == pytest.approx(1.0)
    assert isinstance(moderate(enc, [im])[0].flagged, bool)


# -- CLI -----------------------------------------------------------------------------------
def test_cli_ground_classify_moderate(tmp_path: Path, capsys, offline_encoder, monkeypatch) -> None:
    import mindgap.encoders
    from mindgap.cli import main

    # the commands resolve --encoder through load_encoder; reuse the session's model instead of reloading it
    monkeypatch.setattr(mindgap.encoders, "load_encoder", lambda spec="": offline_encoder)

    img = tmp_path / "scene.png"
    _scene_image(96).save(img)
    out = tmp_path / "overlay.png"
    assert main(["ground", str(img), "the red circle", "--regions", "grid:1x2", "--marker", "grey", "--out", str(out),
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["overlay"] == str(out) and out.is_file() and len(res["ranking"]) == 2
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"box": [0, 0, 48, 96], "gold": True}, {"box": [48, 0, 96, 96]}]))
    assert main(["ground", str(img), "the red circle", "--regions", str(boxes), "--compare", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert len(rows) == 25 and all("credit" in r for r in rows)
    assert main(["classify", str(img), "--labels", "circle,square,dog", "-k", "2", "--json"]) == 0
    cl = json.loads(capsys.readouterr().out)
    assert len(cl) == 1 and sum(cl[0]["probs"]) == pytest.approx(1.0) and len(cl[0]["top"]) == 2
    # user errors: one red line, exit code 2
    bad = tmp_path / "bad.jpg"
    jpg = io.BytesIO()
    _scene_image(96).save(jpg, format="JPEG")
    bad.write_bytes(jpg.getvalue()[: len(jpg.getvalue()) // 2])
    assert main(["classify", str(bad), "--labels", "a,b"]) == 2
    assert "bad.jpg" in capsys.readouterr().err
    assert main(["ground", str(img), "x", "--regions", "0,0,500,10"]) == 2
    assert "outside" in capsys.readouterr().err
    assert main(["ground", str(img), "x", "--regions", "5,5,5,9"]) == 2
    assert "zero" in capsys.readouterr().err
    assert main(["moderate", str(img), "--threshold", "2"]) == 2
    assert "threshold" in capsys.readouterr().err
    assert main(["prompt-bench", "--parts", "nonsense", "--out", str(tmp_path / "pb")]) == 2
