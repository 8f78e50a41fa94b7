"""The synthetic scene generator: deterministic, captions match scenes, lab data-set layout."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mindgap.errors import InputError
from mindgap.eval import synthetic as syn


def _pixels(im) -> bytes:
    return np.asarray(im).tobytes()


def test_generator_is_deterministic_and_seeded() -> None:
    a = syn.generate_scenes(12, seed=3, split="train")
    b = syn.generate_scenes(12, seed=3, split="train")
    assert a == b
    assert [_pixels(s.render(48)) for s in a] == [_pixels(s.render(48)) for s in b]
    assert [syn.captions_for(s, "relations") for s in a] == [syn.captions_for(s, "relations") for s in b]
    other = syn.generate_scenes(12, seed=4, split="train")
    assert a != other
    # a scene depends on (seed, split, index) only: a longer list starts with the same scenes
    assert syn.generate_scenes(20, seed=3, split="train")[:12] == a
    assert syn.generate_scenes(12, seed=3, split="test") != a


def _words(text: str) -> set[str]:
    return set(text.replace(",", " ").replace(";", " ").replace(".", " ").split())


@pytest.mark.parametrize("level", syn.RICHNESS_LEVELS)
def test_captions_match_their_scenes(level: str) -> None:
    colours, shapes = set(syn.COLOURS), set(syn.SHAPES)
    for scene in syn.generate_scenes(60, seed=1, split="train"):
        for cap in syn.captions_for(scene, level):
            w = _words(cap)
            assert w & shapes == {o.shape for o in scene.objects}, cap
            if level == "object":
                assert not w & colours and not w & {"big", "small", "striped", "dotted"}, cap
            else:
                assert w & colours == {o.colour for o in scene.objects}, cap
            if level in ("attributes", "relations"):
                assert scene.main.size in w, cap
                if scene.main.texture != "plain":
                    assert scene.main.texture in w, cap
            if level == "relations" and len(scene.objects) > 1:
                for o in scene.objects[1:]:
                    dx, dy = o.cx - scene.main.cx, o.cy - scene.main.cy
                    where = (("to the left of" if dx < 0 else "to the right of") if abs(dx) >= abs(dy)
                             else ("above" if dy < 0 else "below"))
                    assert f"{o.colour} {'' if o.texture == 'plain' else o.texture + ' '}{o.shape} {where} the " \
                           f"{scene.main.shape}" in cap, cap
    # richness increases the caption length
    scenes = syn.generate_scenes(40, seed=1, split="train")
    lengths = [np.mean([len(syn.caption(s, lv).split()) for s in scenes]) for lv in syn.RICHNESS_LEVELS]
    assert lengths == sorted(lengths) and lengths[0] < lengths[-1]


def test_objects_are_inside_their_boxes_and_distinct() -> None:
    for scene in syn.generate_scenes(25, seed=2, split="test"):
        assert len({o.shape for o in scene.objects}) == len(scene.objects)
        assert len({o.colour for o in scene.objects}) == len(scene.objects)
        if len(scene.objects) > 1:
            assert scene.main.size == "big" and all(o.size == "small" for o in scene.objects[1:])
        for o in scene.objects:
            alone = syn.Scene((o,), background=scene.background).render(96)
            drawn = np.any(np.asarray(alone) != scene.background, axis=2)
            x0, y0, x1, y1 = o.box(96)
            assert drawn.any()
            ys, xs = np.nonzero(drawn)
            assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
            # the box is tight: the shape reaches within 30 % of the radius of every box side it spans
            assert (xs.max() - xs.min() + 1) >= 0.6 * (x1 - x0)


def test_write_lab_dataset_layout(tmp_path) -> None:
    from mindgap.datasets import load_caption_set

    meta = syn.write_lab_dataset(tmp_path / "a", level="object", n_train=6, n_test=4, image_size=32, seed=0)
    meta2 = syn.write_lab_dataset(tmp_path / "b", level="relations", n_train=6, n_test=4, image_size=32, seed=0)
    assert meta["vocab"]["objects"] == list(syn.SHAPES) and meta["vocab"]["attributes"] == list(syn.COLOURS)
    assert meta["mean_caption_words"] < meta2["mean_caption_words"]
    assert isinstance(meta["example_caption"], str) and meta["example_caption"].endswith(".")
    train = load_caption_set(tmp_path / "a", split="train")
    test = load_caption_set(tmp_path / "a", split="test")
    assert len(train) == 6 and len(test) == 4
    for r in test:
        assert r.extra["label_object"] in syn.SHAPES and r.extra["label_attribute"] in syn.COLOURS
        assert r.extra["label_object"] == r.extra["objects"][0]["shape"]
        assert len(r.captions) == 2
        from PIL import Image

        with Image.open(r.path) as im:
            assert im.size == (32, 32)
    # the same pixels at every level; only the captions differ
    for name in ("train_00000.png", "test_00003.png"):
        assert (tmp_path / "a" / "images" / name).read_bytes() == (tmp_path / "b" / "images" / name).read_bytes()
    recs = [json.loads(x) for x in (tmp_path / "b" / "captions.jsonl").read_text().splitlines()]
    assert {r["level"] for r in recs} == {"relations"}


def test_bad_arguments_are_clear_errors(tmp_path) -> None:
    with pytest.raises(InputError, match="richness"):
        syn.write_lab_dataset(tmp_path, level="poetic", n_train=2, n_test=2)
    with pytest.raises(InputError, match="n_train"):
        syn.write_lab_dataset(tmp_path, n_train=0, n_test=2)
    with pytest.raises(InputError, match="n_objects"):
        syn.make_scene(np.random.default_rng(0), n_objects=9)


def test_grounding_cases_have_unique_answers() -> None:
    cases = syn.grounding_cases(10, n_objects=3, image_size=128, seed=0)
    assert len(cases) == 10 * 3 * 3
    for c in cases:
        objs = c.scene.objects
        matches = [i for i, o in enumerate(objs) if o.phrase(c.kind) == c.phrase]
        assert matches == [c.gold]
        assert len(c.boxes) == 3 and all(0 <= v <= 128 for b in c.boxes for v in b)
