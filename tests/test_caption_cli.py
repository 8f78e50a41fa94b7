"""``mindgap caption`` end to end on a handful of real Flickr8k images (fast generators only)."""

from __future__ import annotations

from mindgap.encoders import DEFAULT_OFFLINE_SPEC

import json

import pytest

from mindgap.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, flickr_dir):
    from mindgap.datasets import load_caption_set

    d = tmp_path_factory.mktemp("caption")
    ids = d / "ids.txt"
    ids.write_text("\n".join(r.image_id for r in load_caption_set(flickr_dir, split="val")[:25]))
    rc = main(["caption", "fit", "--data", str(flickr_dir), "--split", "val", "--images", str(ids),
               "--ridge", "1", "--out", str(d / "model"), "--json"])
    assert rc == 0
    return d / "model"


@pytest.fixture()
def bad_images(tmp_path, flickr_test):
    trunc = tmp_path / "truncated.jpg"
    data = flickr_test[0].path.read_bytes()
    trunc.write_bytes(data[: len(data) // 3])
    fake = tmp_path / "notes.jpg"
    fake.write_text("not an image at all")
    return trunc, fake


def test_fit_writes_a_complete_model(model_dir):
    meta = json.loads((model_dir / "caption_model.json").read_text())
    assert meta["n_images"] == 25 and meta["n_captions"] == 125 and meta["kind"] == "ols"
    assert meta["encoder"] == DEFAULT_OFFLINE_SPEC and meta["split"] == "val"
    for f in ["map.npz", "images.npy", "store/captions.jsonl", "store/vectors.npy", "store/index_mapped.faiss"]:
        assert (model_dir / f).is_file(), f


def test_describe_reports_and_skips_corrupt_images(model_dir, flickr_test, bad_images, capsys):
    trunc, fake = bad_images
    good = [str(r.path) for r in flickr_test[:2]]
    rc = main(["caption", good[0], str(trunc), good[1], str(fake), "--model", str(model_dir),
               "--generator", "extractive", "-k", "3", "--json"])
    out = capsys.readouterr()
    assert rc == 1  # some images skipped, the others described
    res = json.loads(out.out)
    assert [r["image"] for r in res] == [good[0], str(trunc), good[1], str(fake)]
    for r in (res[0], res[2]):
        assert r["error"] is None and r["caption"] and len(r["retrieved"]) == 3
        assert r["generator"] == "extractive"
        assert r["caption"].rstrip(".") in {x["text"].strip().rstrip(" .") for x in r["retrieved"]}
    assert "truncated.jpg" in res[1]["error"] and res[1]["caption"] is None
    assert "notes.jpg" in res[3]["error"]
    assert "skipped" in out.err and "truncated.jpg" in out.err


def test_describe_all_bad_is_an_error_and_human_output(model_dir, flickr_test, bad_images, capsys):
    rc = main(["caption", *map(str, bad_images), "--model", str(model_dir), "--generator", "none"])
    assert rc == 2
    assert "no image could be read" in capsys.readouterr().err
    rc = main(["caption", "describe", str(flickr_test[3].path), "--model", str(model_dir), "--generator", "none",
               "--order", "d2s"])
    assert rc == 0
    assert "retrieved" in capsys.readouterr().out


def test_eval_and_report(model_dir, flickr_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["caption", "eval", "--model", str(model_dir), "--data", str(flickr_dir), "--split", "test",
               "--limit", "12", "--generator", "extractive", "--gen-limit", "4", "--no-spice", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["n_images"] == 12 and res["overlap_with_fitted_images"] == 0
    assert {"raw", "mapped"} <= set(res["gap_retrieval"])
    assert set(res["captioning_all"]) == {"raw_nn", "mapped_nn"}
    assert set(res["captioning_subset"]["rows"]) == {"raw_nn", "mapped_nn", "mapped_gen"}
    for row in res["captioning_all"].values():
        assert {"bleu4", "rouge_l", "cider_d", "clip_score"} <= set(row)
    assert "nDCG@10" in (out / "report.md").read_text()
    rep = tmp_path / "rep"
    assert main(["caption", "report", f"small={out / 'results.json'}", "--out", str(rep)]) == 0
    md = (rep / "report.md").read_text()
    assert "| small | 12 | mapped |" in md  # gap table: model | images | space
    assert "| small | all 12 | raw-cosine nearest caption |" in md  # caption table: model | images | method
    assert "| small | first 4 | mapped top-k + generator" in md
    capsys.readouterr()


def test_refine_cli_logs_iterations(model_dir, tmp_path, capsys):
    out = tmp_path / "refined"
    rc = main(["caption", "refine", "--model", str(model_dir), "--out", str(out), "--generator", "extractive",
               "--max-iter", "2", "--train-size", "8", "--val-size", "6", "-k", "3", "--log", str(tmp_path / "log.json")])
    assert rc == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{\"iteration")]
    assert lines[0]["iteration"] == 0 and 2 <= len(lines) <= 3
    summary = json.loads((tmp_path / "log.json").read_text())
    assert summary["stopped"] and len(summary["iterations"]) == len(lines)
    assert (out / "caption_model.json").is_file()


def test_bad_model_dir_is_one_clear_error(tmp_path, flickr_test, capsys):
    rc = main(["caption", str(flickr_test[0].path), "--model", str(tmp_path), "--generator", "none"])
    assert rc == 2
    assert "caption model" in capsys.readouterr().err
