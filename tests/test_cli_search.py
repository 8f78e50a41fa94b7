"""CLI: index → search (--json, --image, --modality, --queries) → rm → fit-gap → search --gap; info;
encoder mismatch, append rules and exit codes.

The knowledge base is real: 24 Flickr8k test images + caption #0 of each as a text passage;
queries are other captions. Gold fitting pairs come from the offline model's held-out calib
images (never trained on); training images are refused.
"""

from __future__ import annotations

from mindgap.encoders import DEFAULT_OFFLINE_SPEC

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mindgap.cli import main
from mindgap.errors import EncoderMismatch
from mindgap.retriever import Retriever
from mindgap.types import Modality

N = 24


@pytest.fixture(scope="module")
def kb_jsonl(tmp_path_factory, flickr_test) -> Path:
    d = tmp_path_factory.mktemp("kbsrc")
    with (d / "kb.jsonl").open("w") as fh:
        for r in flickr_test[:N]:
            fh.write(json.dumps({"id": f"img:{r.image_id}", "image": str(r.path), "caption": r.captions[0]}) + "\n")
            fh.write(json.dumps({"id": f"txt:{r.image_id}", "text": r.captions[0], "image_id": r.image_id}) + "\n")
    return d / "kb.jsonl"


@pytest.fixture(scope="module")
def built(tmp_path_factory, kb_jsonl, offline_encoder) -> Path:
    """A pristine exact store built by `mindgap index` (tests copy it before changing it)."""
    from mindgap.cli import index as cli_index

    cli_index._ENCODERS[offline_encoder.name] = offline_encoder  # one model load for the whole module
    d = tmp_path_factory.mktemp("built") / "store"
    assert main(["index", str(kb_jsonl), "--store", f"exact:{d}", "--no-progress", "--batch-size", "16"]) == 0
    return d


@pytest.fixture()
def store(built, tmp_path, offline_encoder) -> str:
    from mindgap.cli import index as cli_index

    cli_index._ENCODERS[offline_encoder.name] = offline_encoder
    shutil.copytree(built, tmp_path / "store")
    return f"exact:{tmp_path / 'store'}"


def run_json(capsys, args: list[str]) -> object:
    capsys.readouterr()
    rc = main(args + ["--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def run_err(capsys, args: list[str]) -> str:
    capsys.readouterr()
    rc = main(args)
    out = capsys.readouterr()
    assert rc == 2, (rc, out.out, out.err)
    assert "Traceback" not in out.err
    return " ".join(out.err.split())


def test_index_search_json_table_image_modality_rm(store, capsys, flickr_test) -> None:
    info = run_json(capsys, ["info", store])
    assert info["counts"] == {"text": N, "image": N} and info["manifest"]["encoder_spec"] == DEFAULT_OFFLINE_SPEC
    q = flickr_test[3].captions[1]
    res = run_json(capsys, ["search", store, q, "-k", "8"])
    hits = res["hits"]
    assert [h["rank"] for h in hits] == list(range(1, 9)) and res["gap"] == "auto"  # fitted by `mindgap index` (issue 14)
    assert all(a["score"] >= b["score"] for a, b in zip(hits, hits[1:]))
    # rank within its modality: auto (calibrated) ranks cosine − a per-item hubness term
    r = Retriever(store)
    corr = r.gap("auto")
    assert corr.adjusts_items
    for m in ("text", "image"):
        mh = [h for h in hits if h["modality"] == m]
        assert [h["modality_rank"] for h in mh] == list(range(1, len(mh) + 1))
        _, vec = r.store.vectors(Modality(m), [h["id"] for h in mh])
        corrected = [h["cosine"] - o for h, o in zip(mh, corr.item_offsets(vec, Modality(m)))]
        assert all(a >= b - 1e-6 for a, b in zip(corrected, corrected[1:]))
    naive = run_json(capsys, ["search", store, q, "-k", "8", "--gap", "naive"])["hits"]
    for m in ("text", "image"):  # naive: the cosine order
        mh = [h for h in naive if h["modality"] == m]
        assert all(a["cosine"] >= b["cosine"] for a, b in zip(mh, mh[1:]))
    # the Python API mirrors the CLI
    api = Retriever(store).search(q, k=8)
    assert [h.id for h in api] == [h["id"] for h in hits]
    # table output
    capsys.readouterr()
    assert main(["search", store, q, "-k", "3"]) == 0
    out = capsys.readouterr().out
    for col in ("id", "score", "text / image"):  # an 80-column capture: the narrow layout (tests/test_search_table.py)
        assert col in out
    assert hits[0]["id"][:8] in out
    # --modality and --image
    only = run_json(capsys, ["search", store, q, "-k", "5", "--modality", "image"])["hits"]
    assert len(only) == 5 and {h["modality"] for h in only} == {"image"}
    img = run_json(capsys, ["search", store, "--image", str(flickr_test[5].path), "-k", "3", "--modality", "image"])
    assert img["hits"][0]["id"] == f"img:{flickr_test[5].image_id}" and img["hits"][0]["cosine"] > 0.999
    # rm
    gone = hits[0]["id"]
    assert run_json(capsys, ["rm", store, gone, "no-such-id"]) == {"deleted": 1, "not_found": ["no-such-id"]}
    again = run_json(capsys, ["search", store, q, "-k", "8"])["hits"]
    assert gone not in [h["id"] for h in again]
    assert run_json(capsys, ["info", store])["counts"][hits[0]["modality"]] == N - 1
    assert "none of the 1 id(s)" in run_err(capsys, ["rm", store, gone])


def _share(res: list) -> float:
    """Share of image items in the merged top-k lists."""
    return float(np.mean([h["modality"] == "image" for r in res for h in r["hits"]]))


def _gold_image_recall(res: list, recs: list, k: int) -> float:
    """Query i is caption #1 of image i: is that image in the merged top-k?"""
    return float(np.mean([f"img:{x.image_id}" in [h["id"] for h in r["hits"][:k]] for r, x in zip(res, recs)]))


def test_fit_gap_pseudo_and_pairs_then_zscore_search(store, capsys, tmp_path, flickr_test, calib_records) -> None:
    queries = tmp_path / "q.txt"
    queries.write_text("\n".join(r.captions[1] for r in flickr_test[:N]) + "\n", encoding="utf-8")
    fit = run_json(capsys, ["fit-gap", store, "--gap", "zscore", "--pseudo", str(queries)])
    assert fit["name"] == "zscore" and fit["fitted_on"] == "pseudo" and fit["queries"] == N
    stats = fit["corrector"]["state"]["stats_"]["text"]
    res = run_json(capsys, ["search", store, flickr_test[0].captions[2], "-k", "10", "--gap", "zscore"])
    for h in res["hits"]:  # score = (cos − μ_M) / σ_M with the stored statistics
        mu, sigma = stats[h["modality"]][:2]
        assert h["score"] == pytest.approx((h["cosine"] - mu) / sigma, abs=1e-4)
    # labelled pairs from held-out calib images: query caption → its image / its caption #0 passage
    pairs = tmp_path / "pairs.jsonl"
    with pairs.open("w") as fh:
        for r in calib_records[:12]:
            fh.write(json.dumps({"query": r.captions[1], "gold_image": str(r.path)}) + "\n")
            fh.write(json.dumps({"query": r.captions[2], "gold_text": r.captions[0]}) + "\n")
        fh.write(json.dumps({"query": flickr_test[1].captions[3], "gold_id": f"img:{flickr_test[1].image_id}"}) + "\n")
    fit2 = run_json(capsys, ["fit-gap", store, "--gap", "zscore", "--pairs", str(pairs), "--name", "zs-gold",
                             "--default"])
    assert fit2["default"] and fit2["queries"] == 25 and fit2["fitted_on"] == "gold"
    info = run_json(capsys, ["info", store])
    assert set(info["gap_correctors"]) == {"auto", "zscore", "zs-gold"} and info["manifest"]["default_gap"] == "zs-gold"
    # the point of it all: naive cosine buries the images, zscore brings them back
    naive = run_json(capsys, ["search", store, "--queries", str(queries), "-k", "10", "--gap", "naive"])
    gold = run_json(capsys, ["search", store, "--queries", str(queries), "-k", "10"])  # default = zs-gold
    assert gold[0]["gap"] == "zs-gold"
    assert _share(gold) > _share(naive) + 0.1, (_share(naive), _share(gold))
    r_naive, r_gold = _gold_image_recall(naive, flickr_test, 3), _gold_image_recall(gold, flickr_test, 3)
    assert r_gold > r_naive, (r_naive, r_gold)


def test_pairs_validation_and_training_overlap(store, capsys, tmp_path, flickr_dir, calib_records) -> None:
    from mindgap.datasets import load_caption_set

    cases = {
        "{not json": "line 1: not valid JSON",
        json.dumps({"query": "a dog"}): "line 1: needs exactly one of 'gold_id', 'gold_text', 'gold_image'",
        json.dumps({"query": "a", "query_image": "x.jpg", "gold_text": "b"}): "needs exactly one of 'query'",
        json.dumps({"query": "a dog", "gold_id": "no-such-item"}): "line 1: gold_id 'no-such-item' is not in the store",
        json.dumps({"query": "a dog", "gold_image": "missing.jpg"}): "line 1: gold_image file not found",
    }
    for i, (line, msg) in enumerate(cases.items()):
        f = tmp_path / f"bad{i}.jsonl"
        f.write_text(line + "\n", encoding="utf-8")
        assert msg in run_err(capsys, ["fit-gap", store, "--pairs", str(f)])
    assert "give --pairs FILE or --pseudo" in run_err(capsys, ["fit-gap", store, "--gap", "zscore"])
    calib = {r.image_id for r in calib_records}
    train = [r for r in load_caption_set(flickr_dir, split="val") if r.image_id not in calib][:6]
    f = tmp_path / "train_pairs.jsonl"
    f.write_text("".join(json.dumps({"query": r.captions[1], "gold_image": str(r.path)}) + "\n" for r in train),
                 encoding="utf-8")
    assert "trained on" in run_err(capsys, ["fit-gap", store, "--pairs", str(f)])
    capsys.readouterr()
    assert main(["fit-gap", store, "--pairs", str(f), "--allow-training-overlap", "--name", "overfit"]) == 0
    assert "trained on" in capsys.readouterr().err


def test_encoder_mismatch_refused(store, capsys, kb_jsonl) -> None:
    msg = run_err(capsys, ["search", store, "a dog", "--encoder", "hf:openai/clip-vit-base-patch32"])
    assert f"built with encoder '{DEFAULT_OFFLINE_SPEC}'" in msg and "hf:openai/clip-vit-base-patch32" in msg
    msg = run_err(capsys, ["index", str(kb_jsonl), "--store", store, "--encoder", "hf:openai/clip-vit-base-patch32"])
    assert f"built with encoder '{DEFAULT_OFFLINE_SPEC}'" in msg
    with pytest.raises(EncoderMismatch):
        Retriever(store, encoder="hf:openai/clip-vit-base-patch32")


def test_queries_file_batched_equals_single(store, capsys, tmp_path, flickr_test) -> None:
    n_text = 3
    qs = [{"id": f"t{i}", "query": r.captions[4]} for i, r in enumerate(flickr_test[:n_text])]
    qs += [{"id": "i0", "image": str(flickr_test[2].path)}, {"id": "i1", "image": str(flickr_test[30].path)}]
    f = tmp_path / "queries.jsonl"
    f.write_text("".join(json.dumps(q) + "\n" for q in qs), encoding="utf-8")
    out = tmp_path / "res.jsonl"
    batched = run_json(capsys, ["search", store, "--queries", str(f), "-k", "6", "--batch-size", "2",
                                "--out", str(out)])
    assert [b["id"] for b in batched] == [q["id"] for q in qs]
    assert [json.loads(x) for x in out.read_text().splitlines()] == batched
    for q, b in zip(qs, batched):
        args = [q["query"]] if "query" in q else ["--image", q["image"]]
        single = run_json(capsys, ["search", store, *args, "-k", "6"])["hits"]
        assert [h["id"] for h in single] == [h["id"] for h in b["hits"]]
        np.testing.assert_allclose([h["score"] for h in single], [h["score"] for h in b["hits"]], atol=1e-5)
    # plain text lines work too
    plain = tmp_path / "q.txt"
    plain.write_text("\n".join(q["query"] for q in qs[:n_text]) + "\n\n", encoding="utf-8")
    res = run_json(capsys, ["search", store, "--queries", str(plain), "-k", "6"])
    assert [[h["id"] for h in r["hits"]] for r in res] == [[h["id"] for h in b["hits"]] for b in batched[:n_text]]


def test_index_exit_codes_append_and_resume(store, capsys, tmp_path, kb_jsonl, flickr_test) -> None:
    rep = run_json(capsys, ["index", str(kb_jsonl), "--store", store, "--no-progress"])
    assert rep["added"] == {"text": 0, "image": 0} and rep["already_present"] == 2 * N
    other = tmp_path / "notes"
    other.mkdir()
    (other / "a.txt").write_text(flickr_test[40].captions[0], encoding="utf-8")
    (other / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    assert "pass --append" in run_err(capsys, ["index", str(other), "--store", store, "--no-progress"])
    rep = run_json(capsys, ["index", str(other), "--store", store, "--append", "--no-progress"])
    assert rep["added"] == {"text": 1, "image": 0} and rep["skipped"][0]["item"] == "broken.jpg"
    assert "broken.jpg: not an image" in rep["skipped"][0]["reason"]
    capsys.readouterr()
    assert main(["index", str(other), "--store", store, "--no-progress"]) == 0  # same source: a no-op
    assert "1 skipped" in capsys.readouterr().out  # the broken image is reported again
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"garbage")
    (bad / "y.txt").write_bytes(b"")
    msg = run_err(capsys, ["index", str(bad), "--store", f"exact:{tmp_path / 'new'}", "--no-progress"])
    assert "nothing could be indexed: 2 item(s) skipped" in msg
    assert "--text-mode" in run_err(capsys, ["index", str(kb_jsonl), "--store", store, "--text-mode", "truncate"])
    assert "no store at this path" in run_err(capsys, ["search", f"exact:{tmp_path / 'nowhere'}", "x"])


BACKENDS = {"lancedb": ("lancedb", "lancedb:{d}", None), "faiss-hnsw": ("faiss", "faiss:{d}", "hnsw"),
            "milvus": ("milvus_lite", "milvus:{d}/kb.db", None)}


@pytest.mark.parametrize("name", [pytest.param("lancedb"),
                                  pytest.param("faiss-hnsw", marks=pytest.mark.slow),
                                  pytest.param("milvus", marks=pytest.mark.slow)])
def test_other_store_backends_match_exact(name, store, capsys, tmp_path, flickr_test, offline_encoder) -> None:
    mod, tmpl, ann = BACKENDS[name]
    pytest.importorskip(mod)
    small = tmp_path / "small.jsonl"
    with small.open("w") as fh:
        for r in flickr_test[:6]:
            fh.write(json.dumps({"id": f"img:{r.image_id}", "image": str(r.path)}) + "\n")
            fh.write(json.dumps({"id": f"txt:{r.image_id}", "text": r.captions[0]}) + "\n")
    uris = {"exact": f"exact:{tmp_path / 'ex'}", name: tmpl.format(d=tmp_path / "db")}
    res = {}
    for key, uri in uris.items():
        args = ["index", str(small), "--store", uri, "--no-progress"]
        args += ["--ann", ann] if ann and key != "exact" else []
        assert run_json(capsys, args)["added"] == {"text": 6, "image": 6}
        res[key] = run_json(capsys, ["search", uri, flickr_test[0].captions[1], "-k", "8"])["hits"]
    assert [h["id"] for h in res[name]] == [h["id"] for h in res["exact"]]
    np.testing.assert_allclose([h["cosine"] for h in res[name]], [h["cosine"] for h in res["exact"]], atol=1e-5)


def test_weights_retrained_in_place_are_refused(tmp_path, capsys, flickr_test) -> None:
    """A model directory retrained (here: one weight changed) under the same spec no longer matches the
    store it built: searching it is refused with a clear message, not answered with vectors that do
    not compare. A manifest without a fingerprint (older stores) is not refused."""
    import safetensors.numpy as stn

    from mindgap.encoders.dual import resolve_model_dir

    model = tmp_path / "model"
    shutil.copytree(resolve_model_dir("flickr8k-effnet"), model)
    spec = f"mindgap:{model}"
    kb = tmp_path / "kb.jsonl"
    kb.write_text("".join(json.dumps({"id": f"t{i}", "text": r.captions[0]}) + "\n"
                          for i, r in enumerate(flickr_test[:6])), encoding="utf-8")
    uri = f"exact:{tmp_path / 'store'}"
    assert main(["index", str(kb), "--store", uri, "--encoder", spec, "--no-progress", "--no-auto-gap"]) == 0
    assert main(["search", uri, "a dog", "--json"]) == 0  # the same weights: fine
    capsys.readouterr()
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    assert manifest["encoder_weights"].startswith("sha256:")
    w = stn.load_file(str(model / "model.safetensors"))
    name = sorted(w)[0]
    w[name] = w[name] + np.float32(0.01)
    stn.save_file(w, str(model / "model.safetensors"))
    msg = run_err(capsys, ["search", uri, "a dog"])
    assert "retrained or replaced" in msg and manifest["encoder_weights"] in msg and "Traceback" not in msg
    with pytest.raises(EncoderMismatch):
        Retriever(uri).search("a dog")
    # an older manifest records no fingerprint: nothing to compare, as before
    manifest.pop("encoder_weights")
    (tmp_path / "store" / "manifest.json").write_text(json.dumps(manifest))
    assert main(["search", uri, "a dog", "--json"]) == 0
