"""Benchmarks (format, builders, leakage refusal) and ``mindgap eval`` on real Flickr8k data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mindgap.errors import InputError
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


def test_caption_builder_cross_validates_on_calib_halves(calib_ids: list[str]) -> None:
    """test_images keeps only those test-split images: one calib half evaluated, the other fitted
    (how docs/results/fusion/select_on_calib.py picks calibrated's knobs without test)."""
    a, b_ids = sorted(calib_ids)[:10], sorted(calib_ids)[10:20]
    b = build_caption_benchmark("flickr8k_224", test_split="val", fit_split="val", fit_images=a, test_images=b_ids)
    assert {q.source_ids[0] for q in b.split("test")} == set(b_ids)
    assert {q.source_ids[0] for q in b.split("fit")} == set(a)
    with pytest.raises(BenchmarkLeakage):  # the same photo on both sides is refused
        build_caption_benchmark("flickr8k_224", test_split="val", fit_split="val", fit_images=a, test_images=a)
    with pytest.raises(InputError, match="test image ids"):
        build_caption_benchmark("flickr8k_224", fit_images=a, test_images=["no-such-photo"])


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


class MemoEncoder:
    """The real offline encoder, with the session's cached Flickr8k embeddings looked up first.

    The vectors are the offline model's own (``flickr_embeddings``, encoded once per machine);
    anything not in the memo (e.g. a passage the sentence splitter changed) goes to the real
    encoder. Keeps a full-size eval (1,000 test images) inside the test budget.
    """

    def __init__(self, base, flickr_embeddings) -> None:
        from mindgap.images import load_image

        self._base = base
        self._text: dict[str, np.ndarray] = {}
        self._img: dict[bytes, np.ndarray] = {}
        self.misses = 0
        for split in flickr_embeddings.values():
            for r, iv, cv in zip(split["records"], split["images"], split["captions"]):
                self._img[self._key(load_image(str(r.path)))] = iv
                self._img[str(r.path)] = iv
                for c, v in zip(r.captions, cv):
                    self._text.setdefault(c, v)

    @staticmethod
    def _key(img) -> bytes:
        import hashlib

        return hashlib.sha1(img.tobytes()).digest() + repr(img.size).encode()

    def __getattr__(self, name: str):
        return getattr(self._base, name)

    def _lookup(self, keys, inputs, memo, encode, **kw) -> np.ndarray:
        miss = [i for i, k in enumerate(keys) if k not in memo]
        self.misses += len(miss)
        out = np.zeros((len(keys), self._base.dim), np.float32)
        if miss:
            out[miss] = encode([inputs[i] for i in miss], **kw)
        for i, k in enumerate(keys):
            if k in memo:
                out[i] = memo[k]
        return out

    def encode_text(self, texts, **kw) -> np.ndarray:
        texts = list(texts)
        return self._lookup(texts, texts, self._text, self._base.encode_text, **kw)

    def encode_image(self, images, **kw) -> np.ndarray:
        images = list(images)
        keys = [str(x) if isinstance(x, (str, Path)) else self._key(x) for x in images]
        return self._lookup(keys, images, self._img, self._base.encode_image, **kw)


@pytest.fixture(scope="module")
def memo_encoder(offline_encoder, flickr_embeddings) -> MemoEncoder:
    return MemoEncoder(offline_encoder, flickr_embeddings)


def _naive_recall10(emb, kind: str) -> float:
    """Hand-computed naive R@10 on the full mixed store (images + caption-#0 passages), from
    the cached embeddings alone: ImageQ = caption #1 → its image, TextQ = caption #2 → passage."""
    te = emb["test"]
    img, psg = te["images"], te["captions"][:, 0]
    q = te["captions"][:, 1] if kind == "ImageQ" else te["captions"][:, 2]
    s_img, s_txt = q @ img.T, q @ psg.T
    gold = (s_img if kind == "ImageQ" else s_txt)[np.arange(len(q)), np.arange(len(q))]
    rank = 1 + (s_img > gold[:, None]).sum(1) + (s_txt > gold[:, None]).sum(1)
    return float(np.mean(rank <= 10))


@pytest.fixture(scope="module")
def full_eval(tmp_path_factory, memo_encoder, calib_ids):
    """``run_eval`` on the whole Flickr8k test split (1,000 images + 1,000 passages; 2,000 queries)."""
    from mindgap.eval.runner import EvalConfig, run_eval

    b = build_caption_benchmark("flickr8k_224", fit_images=calib_ids, seed=0)
    out = tmp_path_factory.mktemp("eval") / "flickr8k"
    gaps = ["naive", "zscore", "zscore@pseudo", "center", "linear", "bogus"]
    # depth 10 (not 100) keeps the search path cheap; R@50/R@100 are covered by the CLI test
    with pytest.warns(UserWarning, match="bogus"):
        res = run_eval(b, "exact:", encoder=memo_encoder, cfg=EvalConfig(gaps=gaps, ks=(1, 5, 10), worst=5),
                       out_dir=out, progress=False)
    return b, res, out


def test_mindgap_eval_on_flickr8k_test_matches_the_retrieval_tests(full_eval, flickr_embeddings) -> None:
    """The whole Flickr8k test split, fitted on calib: the numbers of tests/test_gap_retrieval.py."""
    _, res, out = full_eval
    for f in ("report.md", "results.json", "cosine_hist.png", "recall_curves.png", "tradeoff.png"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    disk = json.loads((out / "results.json").read_text())
    assert list(disk["gaps"]) == ["naive", "zscore", "zscore@pseudo", "center", "linear"]
    assert "bogus" in disk["skipped"]
    assert disk["queries"] == {"TextQ": 1000, "ImageQ": 1000, "overall": 2000}
    assert disk["store"]["counts"] == {"text": 1000, "image": 1000}
    assert disk["fit"]["gold"]["by_gold_modality"] == {"text": 200, "image": 200}
    assert disk["fit"]["pseudo"]["pairs"] == 800  # 400 fit queries × top-1 text and top-1 image
    m = {g: v["metrics"] for g, v in disk["gaps"].items()}
    for mm in m.values():
        assert set(mm) == {"TextQ", "ImageQ", "overall"}
        for split in mm.values():
            assert {"R@1", "R@5", "R@10", "MRR", "nDCG@10"} <= set(split)
            rs = [split[f"R@{k}"] for k in (1, 5, 10)]
            assert rs == sorted(rs) and 0 <= rs[0] and rs[-1] <= 1 and split["MRR"] <= rs[-1] + 1e-9
    # naive equals a hand computation from the cached embeddings (same queries as test_gap_retrieval)
    assert m["naive"]["ImageQ"]["R@10"] == pytest.approx(_naive_recall10(flickr_embeddings, "ImageQ"), abs=0.005)
    assert m["naive"]["TextQ"]["R@10"] == pytest.approx(_naive_recall10(flickr_embeddings, "TextQ"), abs=0.005)
    # the bounds test_gap_retrieval.py asserts on the same setup
    assert m["naive"]["ImageQ"]["R@10"] < 0.6 * disk["tradeoff"]["ceilings"]["ImageQ"] and m["naive"]["TextQ"]["R@10"] > 0.6
    assert m["zscore"]["ImageQ"]["R@10"] > m["naive"]["ImageQ"]["R@10"] + 0.05
    assert m["zscore@pseudo"]["ImageQ"]["R@10"] > m["naive"]["ImageQ"]["R@10"] + 0.025
    assert m["center"]["TextQ"]["R@10"] >= m["naive"]["TextQ"]["R@10"] - 0.05
    assert m["zscore"]["ImageQ"]["MRR"] > m["naive"]["ImageQ"]["MRR"]
    assert disk["gaps"]["zscore"]["image_share_top10"] > disk["gaps"]["naive"]["image_share_top10"]
    # deep ranks agree with the search path; the merge buries images that are fine within their modality
    for g in disk["gaps"].values():
        assert g["rank_check"]["checked"] > 0 and g["rank_check"]["mismatch"] == 0
    ra = disk["gaps"]["naive"]["rank_analysis"]["ImageQ"]
    assert ra["median_merged_rank"] > ra["median_modality_rank"]
    assert ra["modality_top10_but_merged_gt10"] > 50  # 100 of 1000 measured
    # … exactly the image-alone ceiling minus what naive finds
    t = disk["tradeoff"]
    assert ra["modality_top10_but_merged_gt10"] == round((t["ceilings"]["ImageQ"] - m["naive"]["ImageQ"]["R@10"]) * 1000)
    assert len(disk["gaps"]["zscore"]["worst"]) == 5
    md = (out / "report.md").read_text()
    for heading in ("## TextQ (n = 1000)", "## ImageQ (n = 1000)", "## overall (n = 2000)", "Error analysis",
                    "| zscore@pseudo |", "Skipped correctors", "## ImageQ vs. TextQ trade-off (Recall@10)",
                    "![trade-off](tradeoff.png)", "| corrector | R@1 | R@5 | R@10 | MRR | nDCG@10 |"):
        assert heading in md


def test_tradeoff_frontier_passes_through_naive_and_bounds_the_shift(full_eval) -> None:
    """b = 0 is naive; zscore (a shift plus a per-modality scale) lands near the shift frontier."""
    _, res, _ = full_eval
    t = res["tradeoff"]
    m = {g: v["metrics"] for g, v in res["gaps"].items()}
    zero = next(r for r in t["table"] if r["b"] == 0)
    assert (zero["ImageQ"], zero["TextQ"]) == (m["naive"]["ImageQ"]["R@10"], m["naive"]["TextQ"]["R@10"])
    # naive *is* b = 0; a slightly smaller shift may keep its ImageQ hits and win a TextQ one
    assert -0.01 <= t["correctors"]["naive"]["delta_TextQ_vs_frontier"] <= 0
    # ceilings: one modality searched alone can only do better
    assert t["ceilings"]["ImageQ"] >= max(v["ImageQ"]["R@10"] for k, v in m.items() if k != "linear")
    assert t["ceilings"]["TextQ"] >= m["naive"]["TextQ"]["R@10"]
    # the sweep is monotone: favouring images never helps TextQ
    rows = t["table"]
    assert all(a["ImageQ"] <= b["ImageQ"] and a["TextQ"] >= b["TextQ"] for a, b in zip(rows, rows[1:]))
    assert rows[-1]["ImageQ"] > 2 * zero["ImageQ"] and rows[-1]["TextQ"] < zero["TextQ"] / 2
    best = t["best_overall_oracle"]
    assert best["overall"] >= m["naive"]["overall"]["R@10"]
    assert abs(t["correctors"]["zscore"]["delta_TextQ_vs_frontier"]) < 0.1


def test_eval_is_deterministic_given_a_seed(memo_encoder, calib_ids: list[str], tmp_path: Path) -> None:
    from mindgap.eval.runner import EvalConfig, run_eval

    b = build_caption_benchmark("flickr8k_224", fit_images=calib_ids, limit=200, fit_limit=100, seed=2)
    outs = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        run_eval(b, "exact:", encoder=memo_encoder, cfg=EvalConfig(gaps=["naive", "center"], seed=5, ks=(1, 10)),
                 out_dir=out, progress=False)
        outs.append(out)
    for f in ("results.json", "report.md"):
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes()


def test_eval_cli_writes_the_report(tmp_path: Path, calib_ids: list[str], capsys) -> None:
    from mindgap.cli import main

    b = build_caption_benchmark("flickr8k_224", fit_images=calib_ids, limit=12, fit_limit=10, seed=1)
    p = write_benchmark(b, tmp_path / "b.jsonl")
    out = tmp_path / "out"
    rc = main(["eval", str(p), "--store", "exact:", "--gaps", "naive,zscore,zscore@pseudo", "--out", str(out),
               "--seed", "5"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "ImageQ (n = 12)" in printed and "trade-off" in printed
    res = json.loads((out / "results.json").read_text())
    assert list(res["gaps"]) == ["naive", "zscore", "zscore@pseudo"] and res["tradeoff"]["k"] == 10
    for split in res["gaps"]["zscore"]["metrics"].values():
        assert [f"R@{k}" for k in (1, 3, 5, 10, 50, 100)] == [k for k in split if k.startswith("R@")]
        assert split["R@100"] == 1.0  # 24 items in the store: every gold is in the top 100
    assert (out / "benchmark").is_dir() is False  # a benchmark file given: nothing to save
    assert main(["eval", str(p), "--gaps", "zscore@silver", "--out", str(out)]) == 2
    assert "silver" in capsys.readouterr().err


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
    assert res["tradeoff"] is None  # no ImageQ: no ImageQ-vs-TextQ trade-off to trace


def test_relevant_sets_for_test_and_fit_items(calib_ids: list[str]) -> None:
    from mindgap.eval.runner import relevant_sets

    b = build_caption_benchmark("flickr8k_224", fit_images=calib_ids, limit=3, fit_limit=3)
    t, f = b.split("test")[0], b.split("fit")[0]
    src_t, src_f = t.source_ids[0], f.source_ids[0]
    assert set(relevant_sets(b, [t])[0]) == {src_t, f"{src_t}#0"}  # the photo and its sibling passage
    assert set(relevant_sets(b, [f], fit=True)[0]) == {src_f, f"{src_f}#0"}
    assert relevant_sets(b, [f])[0] == list(f.gold_ids)  # fit items are not in the test store
