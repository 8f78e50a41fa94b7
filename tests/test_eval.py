"""Benchmarks (format, builders, leakage refusal) and ``mindgap eval`` on real Flickr8k data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mindgap.eval.benchmarks import (Benchmark, BenchmarkLeakage, Query, build_caption_benchmark,
                                     build_mmqa_benchmark, check_leakage, load_benchmark, write_benchmark)


@pytest.fixture(scope="module")
def calib_ids(calib_records) -> list[str]:
    return [r.image_id for r in calib_records]


def _q(qid: str, text: str, split: str, gold: str = "g", src: str = "s") -> Query:
    return Query(qid=qid, query=text, gold_ids=[gold], gold_modality="image", split=split, source_ids=[src])


def test_check_leakage_refuses_each_kind_of_overlap() -> None:
    check_leakage([_q("a", "a dog", "fit", "g1", "s1"), _q("b", "a cat", "test", "g2", "s2")])
    with pytest.raises(BenchmarkLeakage, match="source id"):
        check_leakage([_q("a", "a dog", "fit", "g1", "s1"), _q("b", "a cat", "test", "g2", "s1")])
    with pytest.raises(BenchmarkLeakage, match="gold item"):
        check_leakage([_q("a", "a dog", "fit", "g1", "s1"), _q("b", "a cat", "test", "g1", "s2")])
    with pytest.raises(BenchmarkLeakage, match="identical query"):  # case/punctuation ignored
        check_leakage([_q("a", "A dog runs .", "fit", "g1", "s1"), _q("b", "a  dog runs", "test", "g2", "s2")])
    with pytest.raises(BenchmarkLeakage, match="fit-only"):
        check_leakage([_q("b", "a cat", "test", "g2", "s2")], [{"id": "g2", "modality": "image", "split": "fit"}])


def test_caption_builder_refuses_fit_images_from_the_test_split(calib_ids: list[str], flickr_test) -> None:
    test_ids = [r.image_id for r in flickr_test[:5]]
    with pytest.raises(BenchmarkLeakage):
        build_caption_benchmark("flickr8k_224", fit_split="test", fit_images=test_ids, limit=None)


def test_caption_builder_structure_and_roundtrip(tmp_path: Path, calib_ids: list[str]) -> None:
    b = build_caption_benchmark("flickr8k_224", fit_images=calib_ids, limit=20, fit_limit=10, seed=3)
    test, fit = b.split("test"), b.split("fit")
    assert len(test) == 40 and len(fit) == 20
    assert {q.kind for q in test} == {"TextQ", "ImageQ"}
    corpus = {r["id"]: r for r in b.corpus}
    for q in test:
        g = corpus[q.gold_ids[0]]
        assert g["modality"] == q.gold_modality and g.get("split") != "fit"
        if q.kind == "TextQ":
            assert g["text"] != q.query  # the passage is another caption of the same image
    assert all(corpus[q.gold_ids[0]].get("split") == "fit" for q in fit)
    assert not set(calib_ids) & {q.source_ids[0] for q in test}
    p = write_benchmark(b, tmp_path / "bench.jsonl")
    header = json.loads(p.read_text().splitlines()[0])
    assert header["format"] == "mindgap-benchmark" and header["fit_split"]["split"] == "val"
    assert (tmp_path / header["corpus"]).is_file()
    b2 = load_benchmark(p)
    assert [q.to_dict() for q in b2.queries] == [q.to_dict() for q in b.queries]
    img = next(it for it in b2.corpus_items() if it.modality.value == "image")
    assert Path(img.uri).is_file()
    assert len(b2.corpus_items(fit_only=True)) == 20


def test_loader_refuses_a_tampered_file_with_leakage(tmp_path: Path, calib_ids: list[str]) -> None:
    b = build_caption_benchmark("flickr8k_224", fit_images=calib_ids, limit=5, fit_limit=5)
    p = write_benchmark(b, tmp_path / "bench.jsonl")
    lines = p.read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    test_text = next(r["query"] for r in recs[1:] if r["split"] == "test")
    fit_rec = next(r for r in recs[1:] if r["split"] == "fit")
    fit_rec["query"] = test_text.upper()
    p.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    with pytest.raises(BenchmarkLeakage):
        load_benchmark(p)


def test_loader_rejects_bad_records(tmp_path: Path) -> None:
    from mindgap.errors import InputError

    p = tmp_path / "b.jsonl"
    p.write_text('{"type": "query"}\n')
    with pytest.raises(InputError, match="header"):
        load_benchmark(p)
    (tmp_path / "b.corpus.jsonl").write_text('{"id": "x", "modality": "text", "text": "hello"}\n')
    head = {"type": "header", "format": "mindgap-benchmark", "version": 1, "corpus": "b.corpus.jsonl"}
    q = {"type": "query", "qid": "1", "query": "hi", "gold_ids": ["nope"], "gold_modality": "text", "split": "test"}
    p.write_text(json.dumps(head) + "\n" + json.dumps(q) + "\n")
    with pytest.raises(InputError, match="not in the corpus"):
        load_benchmark(p)
    q["gold_ids"] = ["x"]
    q["gold_modality"] = "image"
    p.write_text(json.dumps(head) + "\n" + json.dumps(q) + "\n")
    with pytest.raises(InputError, match="gold_modality"):
        load_benchmark(p)


def test_mmqa_builder_uses_mmqa_doc_ids_and_disjoint_splits(mmqa_dir: Path) -> None:
    b = build_mmqa_benchmark(mmqa_dir, seed=0)
    corpus = {r["id"]: r for r in b.corpus}
    assert sum(r["modality"] == "text" for r in b.corpus) == 925
    assert sum(r["modality"] == "image" for r in b.corpus) == 257
    assert all(len(k) == 32 for k in corpus)  # MMQA doc ids (32 hex)
    fit_gold = {g for q in b.split("fit") for g in q.gold_ids}
    test_gold = {g for q in b.split("test") for g in q.gold_ids}
    assert fit_gold and test_gold and not fit_gold & test_gold
    kinds = {q.kind for q in b.split("test")}
    assert kinds == {"TextQ", "ImageQ"}
    # a known ImageQ: its answer's image_instances doc id is the gold
    by_gold = {g: q for q in b.queries for g in q.gold_ids}
    assert by_gold["cadbc8e1fb23d7fe15b88ea1141d2dd2"].gold_modality == "image"
    for q in b.queries:
        assert all(corpus[g]["modality"] == q.gold_modality for g in q.gold_ids)
    assert b.header["skipped_questions"] == {"table_only": 30, "mixed": 5}


def test_mindgap_eval_on_small_flickr_benchmark(tmp_path: Path, offline_encoder, calib_ids: list[str]) -> None:
    """150 Flickr8k test images, fitted on calib: zscore brings the images back."""
    from mindgap.eval.runner import EvalConfig, run_eval

    b = build_caption_benchmark("flickr8k_224", fit_images=calib_ids, limit=150, fit_limit=100, seed=0)
    out = tmp_path / "eval"
    with pytest.warns(UserWarning, match="bogus"):
        run_eval(b, "exact:", encoder=offline_encoder, cfg=EvalConfig(gaps=["naive", "zscore", "bogus"]),
                 out_dir=out, progress=False)
    for f in ("report.md", "results.json", "cosine_hist.png", "recall_curves.png"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    disk = json.loads((out / "results.json").read_text())
    assert set(disk["gaps"]) == {"naive", "zscore"} and "bogus" in disk["skipped"]
    assert disk["queries"] == {"TextQ": 150, "ImageQ": 150, "overall": 300}
    naive, z = disk["gaps"]["naive"]["metrics"], disk["gaps"]["zscore"]["metrics"]
    for m in (naive, z):
        assert set(m) == {"TextQ", "ImageQ", "overall"}
        assert {"R@1", "R@3", "R@5", "R@10", "R@50", "R@100", "MRR", "nDCG@10"} <= set(m["ImageQ"])
        for split in m.values():
            rs = [split[f"R@{k}"] for k in (1, 3, 5, 10, 50, 100)]
            assert rs == sorted(rs) and 0 <= rs[0] and rs[-1] <= 1
    # the modality gap: naive ranks caption passages above the images; zscore brings images back
    assert naive["ImageQ"]["R@10"] < 0.4
    assert z["ImageQ"]["R@10"] > naive["ImageQ"]["R@10"] + 0.1
    assert z["ImageQ"]["MRR"] > naive["ImageQ"]["MRR"]
    assert disk["gaps"]["zscore"]["image_share_top10"] > disk["gaps"]["naive"]["image_share_top10"]
    # text queries still find their passage
    assert naive["TextQ"]["R@10"] > 0.5
    # deep ranks agree with the search path
    for g in disk["gaps"].values():
        assert g["rank_check"]["checked"] > 0 and g["rank_check"]["mismatch"] == 0
    ra = disk["gaps"]["naive"]["rank_analysis"]["ImageQ"]
    assert ra["median_merged_rank"] > ra["median_modality_rank"]
    assert len(disk["gaps"]["zscore"]["worst"]) == 10
    md = (out / "report.md").read_text()
    for heading in ("## TextQ (n = 150)", "## ImageQ (n = 150)", "## overall (n = 300)", "Error analysis",
                    "| zscore |", "Skipped correctors"):
        assert heading in md


def test_eval_is_deterministic_and_cli_runs(tmp_path: Path, calib_ids: list[str]) -> None:
    from mindgap.cli import main

    b = build_caption_benchmark("flickr8k_224", fit_images=calib_ids, limit=30, fit_limit=20, seed=1)
    p = write_benchmark(b, tmp_path / "b.jsonl")
    outs = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        rc = main(["eval", str(p), "--store", "exact:", "--gaps", "naive,zscore", "--out", str(out), "--seed", "5"])
        assert rc == 0
        outs.append(out)
    for f in ("results.json", "report.md"):
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes()


def test_image_queries_in_the_format(tmp_path: Path, offline_encoder, flickr_test) -> None:
    """``query_image`` records: image → its caption passage (an image query against a mixed store)."""
    from mindgap.eval.runner import EvalConfig, run_eval

    recs = flickr_test[:12]
    root = recs[0].path.parent.parent
    head = {"type": "header", "format": "mindgap-benchmark", "version": 1, "name": "img-q",
            "corpus": "img-q.corpus.jsonl", "image_root": str(root)}
    corpus, queries = [], []
    for i, r in enumerate(recs):
        corpus.append({"id": f"t{i}", "modality": "text", "text": r.captions[0]})
        if i >= 6:  # images 6.. are in the corpus; images 0..5 are the queries
            corpus.append({"id": f"i{i}", "modality": "image", "image": str(r.path.relative_to(root))})
        else:
            queries.append({"type": "query", "qid": f"q{i}", "query_image": str(r.path.relative_to(root)),
                            "gold_ids": [f"t{i}"], "gold_modality": "text", "split": "test", "source_ids": [r.image_id]})
    p = tmp_path / "img-q.jsonl"
    p.write_text("\n".join(json.dumps(x) for x in [head] + queries) + "\n")
    (tmp_path / "img-q.corpus.jsonl").write_text("\n".join(json.dumps(x) for x in corpus) + "\n")
    res = run_eval(p, "exact:", encoder=offline_encoder, cfg=EvalConfig(gaps=["naive"], ks=(1, 5, 18)),
                   progress=False)
    m = res["gaps"]["naive"]["metrics"]
    assert m["TextQ"]["n"] == 6 and m["ImageQ"]["n"] == 0 and m["ImageQ"]["R@1"] is None
    assert m["TextQ"]["R@18"] == 1.0  # 18 items in the store: the gold is always somewhere
    assert res["gaps"]["naive"]["rank_check"]["mismatch"] == 0
