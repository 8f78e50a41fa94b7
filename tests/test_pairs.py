"""Pairs and query files (mindgap.gap.pairs): a benchmark file is a valid --pairs / --pseudo input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mindgap.cli import main
from mindgap.errors import InputError
from mindgap.gap import read_pairs, read_queries
from mindgap.retriever import Retriever
from mindgap.types import Item, Modality

TEXTS = {"d1": "a dog runs on the beach", "d2": "a red car parked in the street", "d3": "two children play football",
         "d4": "a cat sleeps on a sofa"}


def _bench(d: Path) -> Path:
    header = {"type": "header", "format": "mindgap-benchmark", "version": 1, "name": "tiny",
              "corpus": "tiny.corpus.jsonl", "image_root": "."}
    queries = [{"type": "query", "qid": "q1", "query": "dog on sand", "gold_ids": ["d1"], "gold_modality": "text",
                "split": "fit"},
               {"type": "query", "qid": "q2", "query": "a sleeping cat", "gold_ids": ["d4"], "gold_modality": "text",
                "split": "fit"},
               {"type": "query", "qid": "q3", "query": "kids and a ball", "gold_ids": ["d3"], "gold_modality": "text",
                "split": "test"}]
    queries += [{"type": "query", "qid": f"x{i}", "query": f"{TEXTS[g]} again {i}", "gold_ids": [g],
                 "gold_modality": "text", "split": "fit"} for i, g in enumerate(["d1", "d2", "d3", "d2"])]
    (d / "tiny.jsonl").write_text("\n".join(json.dumps(r) for r in [header, *queries]) + "\n")
    corpus = [{"id": k, "modality": "text", "text": v} | ({"split": "fit"} if k == "d4" else {})
              for k, v in TEXTS.items()]
    (d / "tiny.corpus.jsonl").write_text("\n".join(json.dumps(r) for r in corpus) + "\n")
    return d / "tiny.jsonl"


@pytest.fixture()
def store(tmp_path, offline_encoder) -> str:
    uri = f"exact:{tmp_path / 'kb'}"
    r = Retriever(uri, encoder=offline_encoder)
    r.index([Item(k, Modality.TEXT, text=v) for k, v in TEXTS.items() if k != "d4"], progress=False)
    r.close()
    return uri


def test_benchmark_queries_by_split(tmp_path):
    b = _bench(tmp_path)
    assert [q["id"] for q in read_queries(b)] == ["q1", "q2", "q3", "x0", "x1", "x2", "x3"]
    assert [q["text"] for q in read_queries(b, split="fit")][:2] == ["dog on sand", "a sleeping cat"]


def test_benchmark_as_pairs_store_and_corpus_golds(tmp_path, store, offline_encoder):
    b = _bench(tmp_path)
    r = Retriever(store, encoder=offline_encoder)
    data, _ = read_pairs(b, r)
    assert data.queries.shape == (6, offline_encoder.dim) and set(data.gold_modality) == {"text"}
    _, stored = r.store.vectors(Modality.TEXT, ["d1"])
    np.testing.assert_allclose(data.gold[0], stored[0], atol=1e-6)  # d1: the store's own vector
    d4 = offline_encoder.encode_text([TEXTS["d4"]], show_progress=False)[0]  # not in the store: from the corpus
    assert float(data.gold[1] @ d4) > 0.999
    # a gold id in neither place is one clear error
    bad = tmp_path / "bad"
    bad.mkdir()
    b2 = _bench(bad)
    (bad / "tiny.corpus.jsonl").write_text(json.dumps({"id": "d1", "modality": "text", "text": "x"}) + "\n")
    with pytest.raises(InputError, match="'d4' is neither in the store nor in the benchmark corpus"):
        read_pairs(b2, Retriever(store, encoder=offline_encoder))


def test_cli_fit_gap_accepts_a_benchmark(tmp_path, store, offline_encoder, capsys):
    from mindgap.cli import index as cli_index

    cli_index._ENCODERS[offline_encoder.name] = offline_encoder
    b = _bench(tmp_path)
    assert main(["fit-gap", store, "--gap", "zscore", "--pairs", str(b), "--json"]) == 0, capsys.readouterr().err
    out = json.loads(capsys.readouterr().out)
    assert out["queries"] == 6 and out["fitted_on"] == "gold"
    assert main(["fit-gap", store, "--gap", "zscore", "--pseudo", str(b), "--name", "zp", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["queries"] == 6  # the fit split only
