"""Issue 17: gap-corrected fusion without a store (mindgap.gap.portable), the standalone corrector
file (docs/corrector-format.md: its worked example is checked here), `mindgap fit-gap --out` and
`mindgap fuse`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mindgap.cli import main
from mindgap.errors import InputError
from mindgap.gap import FitData, make_corrector
from mindgap.gap.portable import FORMAT, fit_corrector, fuse, load_corrector, save_corrector
from mindgap.retriever import HUB_FETCH, Retriever
from mindgap.types import Modality

from _toy_gap import toy_gap  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "corrector-format.md"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A toy gap (texts near the queries, images offset) in an exact store saved on disk."""
    ns = toy_gap(tmp_path_factory.mktemp("fuse") / "s.store")
    ns.test = ns.test[:40]
    return ns


def _lists(retr: Retriever, q: np.ndarray, depth: int, vectors: bool = False) -> dict[str, list]:
    """What a foreign search returns: per modality, ids with raw cosines (shuffled: order must not matter);
    ``vectors``: as ``{id, cosine, vector}`` entries."""
    out = {}
    for m in (Modality.TEXT, Modality.IMAGE):
        got = retr.store.search(q[None], depth, m)[0]
        got = [got[j] for j in np.random.default_rng(len(got)).permutation(len(got))]
        if vectors:
            ids, mat = retr.store.vectors(m, [i for i, _ in got])
            vec = dict(zip(ids, mat.tolist()))
            got = [{"id": i, "cosine": c, "vector": vec[i]} for i, c in got]
        out[m.value] = got
    return out


@pytest.mark.parametrize("spec", ["calibrated", "zscore", "quota", "minmax", "dbsf", "rrf", "naive", "qnorm"])
def test_fuse_equals_the_store_search(synth, spec, monkeypatch):
    """fuse over lists from a foreign store ranks as a Retriever search on a store without
    search_rows (an ANN index): with the hubness term, the best HUB_FETCH × depth by cosine re-ranked
    by cosine − term (the exact store ranks all its items by it)."""
    import mindgap.retriever as rmod

    monkeypatch.setattr(rmod, "ROW_TERMS_MAX", 0)  # the exact store takes the ANN stores' path
    retr = Retriever(synth.store)
    corr = retr.fit_gap(spec, FitData(**vars(synth.data)), save=False, name=f"x:{spec}")
    depth = max(10, int(getattr(corr, "list_depth", None) or 0))
    hub = getattr(corr, "adjusts_items", False)
    assert hub == (spec == "calibrated")  # the default calibrated corrects hubness: it needs the vectors
    for i in synth.test[:15]:
        q = synth.queries[i]
        want = retr.search_vectors(q, k=10, gap=f"x:{spec}", fetch=False)[0]
        # with the hubness term the store re-ranks a list HUB_FETCH x deeper: give fuse as many
        got = fuse(_lists(retr, q, depth * (HUB_FETCH if hub else 1), vectors=hub), corr, k=10, query=q)
        assert [(h.id, h.modality.value) for h in want] == [(h.id, h.modality) for h in got]
        assert np.allclose([h.score for h in want], [h.score for h in got], atol=1e-5)
        assert np.allclose([h.cosine for h in want], [h.cosine for h in got], atol=1e-6)  # raw cosines


def test_fuse_without_vectors_uses_the_calibration_on_raw_cosines(synth):
    """calibrated's hubness term needs each candidate's vector; lists of cosines alone get the
    calibration fitted on raw cosines beside it — the same ranking as a hub=0 fit."""
    retr = Retriever(synth.store)
    corr = retr.fit_gap("calibrated", FitData(**vars(synth.data)), save=False, name="h")
    retr.fit_gap("calibrated:hub=0", FitData(**vars(synth.data)), save=False, name="h0")
    assert corr.adjusts_items and not corr.without_hub().adjusts_items
    moved = 0
    for i in synth.test[:15]:
        q = synth.queries[i]
        want = retr.search_vectors(q, k=10, gap="h0", fetch=False)[0]
        got = fuse(_lists(retr, q, 20), corr, k=10, query=q)
        assert [h.id for h in want] == [h.id for h in got]
        assert np.allclose([h.score for h in want], [h.score for h in got], atol=1e-5)
        moved += [h.id for h in retr.search_vectors(q, k=10, gap="h", fetch=False)[0]] != [h.id for h in got]
    assert moved  # the hubness term changes some rankings: the fallback is a different corrector
    bad = _lists(retr, synth.queries[synth.test[0]], 40, vectors=True)
    bad["text"][0]["vector"] = bad["text"][0]["vector"][:-1]
    with pytest.raises(InputError, match="dimension"):
        fuse(bad, corr, k=10)


def test_min_prob_matches_the_store_and_needs_a_probability(synth):
    retr = Retriever(synth.store)
    corr = retr.fit_gap("calibrated", FitData(**vars(synth.data)), save=False, name="c")
    for i in synth.test[:10]:
        q = synth.queries[i]
        want = retr.search_vectors(q, k=10, gap="c", fetch=False, min_prob=0.2)[0]
        got = fuse(_lists(retr, q, 20), corr, k=10, min_prob=0.2)
        assert [h.id for h in want] == [h.id for h in got]
        assert all(h.probability is not None and h.probability >= 0.2 for h in got)
    with pytest.raises(InputError, match="probability corrector"):
        fuse({"text": [("a", 0.5)]}, make_corrector("quota"), min_prob=0.1)


def test_save_load_roundtrip_and_fit_from_files(synth, tmp_path):
    d = synth.data
    npz = tmp_path / "fit.npz"
    np.savez(npz, queries=d.queries, gold=d.gold, gold_modality=d.gold_modality,
             text=synth.texts[:200], image=synth.images[:200])
    pc = fit_corrector("calibrated", queries=npz, corpus=npz, counts={"text": 300, "image": 300}, encoder="synthetic")
    np.save(tmp_path / "q.npy", d.queries)
    pc2 = fit_corrector("calibrated", queries=tmp_path / "q.npy", gold=d.gold, gold_modality=list(d.gold_modality),
                        corpus={"text": synth.texts[:200], "image": synth.images[:200]},
                        counts={"text": 300, "image": 300})
    assert pc.corrector.calib_["text"]["image"]["a"] == pytest.approx(pc2.corrector.calib_["text"]["image"]["a"])
    f = save_corrector(pc, tmp_path / "c.json")
    raw = json.loads(f.read_text())
    assert raw["format"] == FORMAT and raw["version"] == 1 and raw["encoder"] == {"spec": "synthetic", "dim": 32}
    back = load_corrector(f)
    lists = {"text": [("t1", 0.8), ("t2", 0.5)], "image": [("i1", 0.3), ("i9", 0.1)]}
    assert [h.to_dict() for h in fuse(lists, back)] == [h.to_dict() for h in fuse(lists, pc)]
    with pytest.raises(InputError, match="dimension 5"):
        fuse(lists, back, query=np.ones(5))


def test_errors_name_the_field(tmp_path):
    q = make_corrector("quota")
    cases = [({"text": [("a", float("nan"))]}, "candidates.text[0]"), ({"text": [("a", 3.0)]}, "outside"),
             ({"text": [("a", 0.1), ("a", 0.2)]}, "twice"), ({"audio": []}, "unknown modality"),
             ({"text": [{"id": "a"}]}, "'id' and 'cosine'"), ({"text": "abc"}, "candidates for text")]
    for cands, msg in cases:
        with pytest.raises(InputError, match=re.escape(msg)):
            fuse(cands, q)
    with pytest.raises(InputError, match="k must be"):
        fuse({"text": []}, q, k=0)
    with pytest.raises(InputError, match="changes embeddings"):
        fuse({"text": []}, make_corrector("center"))
    with pytest.raises(InputError, match="needs the query embedding"):
        fuse({"text": [("a", 0.1)]}, make_corrector("qnorm").fit(FitData(corpus={"text": np.eye(3), "image": np.eye(3)})))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": FORMAT, "version": 99, "corrector": {}}))
    with pytest.raises(InputError, match="newer"):
        load_corrector(bad)
    bad.write_text("{")
    with pytest.raises(InputError, match="not readable JSON"):
        load_corrector(bad)
    with pytest.raises(InputError, match="not found"):
        load_corrector(tmp_path / "nope.json")
    with pytest.raises(InputError, match="expected"):
        load_corrector({"hello": 1})


def test_loads_from_a_store_manifest(synth):
    retr = Retriever(synth.store)
    retr.fit_gap("zscore", FitData(**vars(synth.data)), name="zs", make_default=True)
    pc = load_corrector(synth.path)
    assert pc.corrector.name == "zscore" and pc.encoder == "synthetic" and pc.meta["name"] == "zs"
    assert load_corrector(synth.path / "manifest.json", name="naive").corrector.name == "naive"
    with pytest.raises(InputError, match="no fitted corrector 'nope'"):
        load_corrector(synth.path, name="nope")


def _doc_blocks() -> dict[str, object]:
    """The JSON blocks of docs/corrector-format.md that follow a `<!-- name -->` marker."""
    text = DOC.read_text(encoding="utf-8")
    return {m.group(1): json.loads(m.group(2)) for m in
            re.finditer(r"<!-- (\S+) -->\s*```json\n(.*?)```", text, re.S)}


def test_worked_example_in_the_format_doc():
    blocks = _doc_blocks()
    pc = load_corrector(blocks["example-corrector"])
    req = blocks["example-request"]
    got = fuse(req["candidates"], pc, k=req["k"], min_prob=req.get("min_prob"))
    want = blocks["example-result"]["hits"]
    assert [h.to_dict() for h in got] == want
    assert [h.id for h in fuse(req["candidates"], pc, k=req["k"], min_prob=0.2)] == ["i4", "t7"]
    # the intermediate numbers the doc walks through
    steps = blocks["example-steps"]
    st = pc.corrector.calib_["text"]
    for m in ("text", "image"):
        sims = np.array([[c["cosine"] for c in sorted(req["candidates"][m], key=lambda c: -c["cosine"])]])
        p = pc.corrector.probability(sims, None, Modality.TEXT, Modality.parse(m))[0]
        assert np.allclose(p, steps[m]["P"], atol=5e-7), (m, p)
        sc = pc.corrector.score_query(sims, None, Modality.TEXT, Modality.parse(m))[0]
        assert np.allclose(sc, steps[m]["score"], atol=5e-7), (m, sc)
        assert st[m]["t"] * st[m]["a"] == pytest.approx(steps[m]["t_a"])


def test_cli_fit_gap_out_and_fuse(synth, tmp_path, capsys, monkeypatch):
    from mindgap.cli import index as cli_index

    # the synthetic store's "encoder" is never run (quota fits nothing): a stand-in with its name and size
    monkeypatch.setitem(cli_index._ENCODERS, "synthetic", SimpleNamespace(name="synthetic", dim=32))
    out = tmp_path / "corr.json"
    assert main(["fit-gap", str(synth.path), "--gap", "quota", "--out", str(out)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    bad = tmp_path / "center.json"
    assert main(["fit-gap", str(synth.path), "--gap", "center", "--out", str(bad)]) == 2
    assert "changes embeddings" in capsys.readouterr().err and not bad.exists()
    assert "center" not in json.loads((synth.path / "manifest.json").read_text())["gap"]  # refused before fitting
    saved = json.loads(out.read_text())
    assert saved["corrector"]["name"] == "quota" and saved["encoder"] == {"spec": "synthetic", "dim": 32}
    req = tmp_path / "req.json"
    req.write_text(json.dumps({"candidates": {"text": [{"id": "t1", "cosine": 0.7}, {"id": "t2", "cosine": 0.6}],
                                              "image": [{"id": "i1", "cosine": 0.2}]}, "k": 2}))
    assert main(["fuse", str(out), str(req), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [h["id"] for h in res["hits"]] == ["t1", "i1"]
    assert main(["fuse", str(out), str(req)]) == 0
    assert "t1" in capsys.readouterr().out
    req.write_text(json.dumps({"candidates": {"text": [{"id": "t1", "cosine": "high"}]}}))
    assert main(["fuse", str(out), str(req)]) == 2
    err = capsys.readouterr().err
    assert "candidates.text[0]" in err and "Traceback" not in err
    req.write_text(json.dumps({"candidates": {}, "oops": 1}))
    assert main(["fuse", str(out), str(req)]) == 2
    assert "oops" in capsys.readouterr().err


def test_cli_fit_corrector_from_an_npz_then_fuse(synth, tmp_path, capsys):
    d = synth.data
    npz = tmp_path / "fit.npz"
    np.savez(npz, queries=d.queries, gold=d.gold, gold_modality=d.gold_modality, text=synth.texts[:200],
             image=synth.images[:200])
    out = tmp_path / "c.json"
    assert main(["fit-corrector", str(npz), "--out", str(out), "--counts", "text=300,image=300",
                 "--encoder", "synthetic"]) == 0, capsys.readouterr().err
    pc = load_corrector(out)
    assert pc.corrector.name == "calibrated" and pc.dim == 32 and pc.meta["fitted_on"]["counts"] == {"text": 300,
                                                                                                    "image": 300}
    want = fit_corrector("calibrated", queries=npz, corpus=npz, counts={"text": 300, "image": 300})
    lists = {"text": [("t1", 0.8), ("t2", 0.5)], "image": [("i1", 0.3)]}
    assert [h.to_dict() for h in fuse(lists, pc)] == [h.to_dict() for h in fuse(lists, want)]
    capsys.readouterr()
    assert main(["fit-corrector", str(tmp_path / "nope.npz"), "--out", str(out)]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["fit-corrector", str(npz), "--out", str(out), "--counts", "text=many"]) == 2
    assert "--counts" in capsys.readouterr().err
