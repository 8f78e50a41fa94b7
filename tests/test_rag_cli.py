"""`mindgap ask` and `mindgap eval-rag` end to end on a small real store of MMQA texts and images."""

from __future__ import annotations

import csv
import json
import pytest

from mindgap.cli import main
from mindgap.errors import InputError
from mindgap.rag import load_template
from mindgap.rag.evaluate import mmqa_questions
from mindgap.types import Modality

QUESTION = "For which film did Ben Piazza play the role of Mr. Simms?"


@pytest.fixture(scope="module")
def mmqa_store(tmp_path_factory, offline_encoder) -> str:
    """An exact store with the texts and images the first 6 MMQA dev questions point to (~35 items)."""
    from mindgap.eval.benchmarks import build_mmqa_benchmark, mmqa_gold
    from mindgap.retriever import Retriever

    bench = build_mmqa_benchmark()
    want: set[str] = set()
    for q in mmqa_questions()[:6]:
        tg, ig = mmqa_gold(q)
        md = q["metadata"]
        want |= set(tg + ig) | set(md["text_doc_ids"][:4]) | set(md["image_doc_ids"][:3])
    items = [it for it in bench.corpus_items() if it.id in want]
    uri = f"exact:{tmp_path_factory.mktemp('rag') / 'store'}"
    retr = Retriever(uri, encoder=offline_encoder)
    rep = retr.index(items, progress=False)
    assert rep.added["text"] > 10 and rep.added["image"] > 5
    # label-free zscore (pseudo pairs from the slice's questions), under its own name so that
    # plain `--gap zscore` stays unfitted for the error test
    retr.fit_gap("zscore", pseudo_queries=[q["question"] for q in mmqa_questions()[:40]], name="zscore-pseudo")
    return uri


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_ask_extractive_json(mmqa_store, capsys):
    code, out, _ = _run(capsys, "ask", mmqa_store, QUESTION, "-g", "extractive", "-k", "8", "--json")
    assert code == 0
    res = json.loads(out)
    assert res["answer"] and res["k"] == 8 and len(res["sources"]) == 8 and not res["truncated"]
    assert [s["index"] for s in res["sources"]] == list(range(1, 9))
    assert all(s["modality"] in {"text", "image"} and isinstance(s["score"], float) for s in res["sources"])
    src = res["sources"][res["generation"]["extra"]["source_index"]]
    # the span comes from a retrieved source (whitespace normalised, as the extractive generator does)
    assert " ".join(res["answer"].split()) in " ".join((src.get("text") or src.get("words") or "").split())


def test_ask_explain_shows_images_as_words(mmqa_store, capsys):
    code, out, _ = _run(capsys, "ask", mmqa_store, "What does the poster of the Ben Piazza movie show?", "-g",
                        "extractive", "--gap", "zscore-pseudo", "-k", "30", "--explain")
    assert code == 0
    assert "sources:" in out and "[1] " in out and "gap: zscore-pseudo" in out
    assert "Reference text 1:" in out and "--- system ---\nYou are a helpful assistant." in out
    assert "(image, score" in out and "— as words: its stored caption" in out
    assert "[an image, not shown; described by its stored caption:]" in out
    assert "given to the text-only generator as words" in out


def test_ask_image_map_option(mmqa_store, capsys):
    code, out, _ = _run(capsys, "ask", mmqa_store, QUESTION, "-g", "extractive", "-k", "3", "--image-map", "nope",
                        "--json")
    assert code == 0
    notes = json.loads(out)["notes"]
    assert any("image map 'nope' is not a fitted corrector of this store" in n for n in notes)


def test_ask_drops_sources_to_fit_a_small_window(mmqa_store, capsys):
    code, out, err = _run(capsys, "ask", mmqa_store, QUESTION, "-g", "extractive", "-k", "30", "--explain",
                          "--context-window", "700", "--max-tokens", "16")
    assert code == 0
    assert "[dropped]" in out and "context window full" in out and "dropped to fit the context window" in err
    assert "of a 676-token budget" in out


def test_ask_no_rag_and_bad_inputs(mmqa_store, capsys, tmp_path):
    code, out, _ = _run(capsys, "ask", mmqa_store, QUESTION, "-g", "extractive", "--no-rag", "--json")
    assert code == 0 and json.loads(out)["sources"] == [] and json.loads(out)["no_rag"] is True
    code, _, err = _run(capsys, "ask", f"exact:{tmp_path / 'empty'}", QUESTION, "-g", "extractive")
    assert code == 2 and "no store at this path" in err and not (tmp_path / "empty").exists()  # asking creates nothing
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, "ask", f"exact:{tmp_path / 'empty'}", QUESTION, "-g", "extractive")
    assert code == 2 and "the store is empty" in err
    code, _, err = _run(capsys, "ask", mmqa_store, QUESTION, "-g", "nope:x")
    assert code == 2 and "unknown generator 'nope'" in err
    code, _, err = _run(capsys, "ask", mmqa_store, QUESTION, "-g", "extractive", "--gap", "zscore")
    assert code == 2 and "not fitted" in err
    code, _, err = _run(capsys, "ask", mmqa_store, QUESTION, "-g", "extractive", "--template", "/nonexistent.txt")
    assert code == 2 and "template not found" in err


def test_ask_with_the_local_model(mmqa_store, capsys):
    code, out, _ = _run(capsys, "ask", mmqa_store, QUESTION, "-g", "local:smollm2", "--template", "short",
                        "--max-tokens", "8", "--json")
    assert code == 0
    res = json.loads(out)
    assert res["answer"].strip() and res["generation"]["tokens"] <= 8 and len(res["sources"]) == 5
    assert res["prompt_tokens"] <= res["budget"] and res["context_window"] == 8192


def test_eval_rag_small_and_judgements(mmqa_store, tmp_path, capsys):
    from mindgap.rag.evaluate import correlate_judgements, run_eval_rag

    with pytest.raises(InputError, match="unknown gold kind"):
        run_eval_rag(mmqa_store, gold_kinds=["TableQ"], index=False, progress=False)
    res = run_eval_rag(mmqa_store, settings=["w/o-rag", "naive", "zscore", "extractive:naive"], generator="extractive",
                       limit=4, fit_pairs="pseudo", index=False, out_dir=tmp_path, progress=False, k=5,
                       gold_kinds=["TextQ", "ImageQ", "mixed"])
    assert set(res["settings"]) == {"w/o-rag", "naive", "zscore", "extractive:naive"}
    assert res["questions"]["evaluated"] == 4 and res["config"]["gold_kinds"] == ["ImageQ", "TextQ", "mixed"]
    nv = res["settings"]["naive"]
    assert nv["n"] == 4 and 0.0 <= nv["rouge1"] <= 1.0 and set(nv["by_gold_kind"]) <= {"TextQ", "ImageQ", "mixed"}
    assert nv["gold_in_prompt"] is not None  # every evaluated question has a gold in the store
    assert res["settings"]["w/o-rag"]["gold_in_prompt"] is None
    for f in ("results.json", "report.md", "answers.jsonl", "human_sheet.csv"):
        assert (tmp_path / f).is_file()
    assert "ROUGE-1 F1 by setting" in (tmp_path / "report.md").read_text()
    rows = list(csv.DictReader((tmp_path / "human_sheet.csv").open()))
    assert len(rows) == 16 and all(r["judgement"] == "" for r in rows)
    for i, r in enumerate(rows):  # a grader who agrees with ROUGE on some rows
        r["judgement"] = "1" if r["gold"].lower() in r["answer"].lower() else ("0.5" if i % 3 == 0 else "0")
    filled = tmp_path / "filled.csv"
    with filled.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    corr = correlate_judgements(filled, tmp_path)
    assert corr["judged"] == 16 and set(corr["by_setting"]) == set(res["settings"])
    assert (tmp_path / "judgements.json").is_file()
    # the summary can be rebuilt from answers.jsonl alone (no generation), identically
    from mindgap.rag.evaluate import resummarize

    again = resummarize(tmp_path)
    for name, s in res["settings"].items():
        assert again["settings"][name]["rouge1"] == s["rouge1"]
        assert again["settings"][name]["contains_gold"] == s["contains_gold"]
        assert again["settings"][name]["by_gold_kind"] == s["by_gold_kind"]
    assert "answer contains gold" in (tmp_path / "report.md").read_text()
    code, out, _ = _run(capsys, "eval-rag", "--judgements", str(filled), "--json")
    assert code == 0 and json.loads(out)["judged"] == 16
    rows[0]["judgement"] = "0.7"
    with filled.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    code, _, err = _run(capsys, "eval-rag", "--judgements", str(filled))
    assert code == 2 and "0.7" in err


def test_rouge1_matches_the_reference_definition():
    from mindgap.rag.evaluate import pearson, rouge1, spearman

    assert rouge1("The answer is Mask", "Mask")["f1"] == pytest.approx(2 * 0.25 * 1 / 1.25)
    assert rouge1("mask (1985 film)", "Mask")["recall"] == 1.0
    assert rouge1("", "Mask")["f1"] == 0.0 and rouge1("the the the", "the")["precision"] == pytest.approx(1 / 3)
    assert rouge1("Dženis", "Dženis")["f1"] == 1.0
    from mindgap.rag.evaluate import answer_contains_gold

    assert answer_contains_gold("The film was Mask (1985).", ["Mask"])
    assert answer_contains_gold("Three-year-old Thoroughbreds, mostly", ["cows", "three-year-old thoroughbreds"])
    assert not answer_contains_gold("Masked singer", ["Mask"]) and not answer_contains_gold("anything", [""])
    assert spearman([1, 2, 3, 4], [10, 20, 20, 40]) == pytest.approx(0.9486832980505138)
    assert pearson([0, 0.5, 1], [0.1, 0.4, 0.9]) > 0.98 and pearson([1, 1], [0, 1]) is None
    from rouge_score import rouge_scorer  # a dev dependency: the reference implementation always runs

    sc = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=False)
    for p, r in [("The answer is Mask", "Mask"), ("three-year-old Thoroughbreds race", "three-year-old Thoroughbreds")]:
        assert rouge1(p, r)["f1"] == pytest.approx(sc.score(r, p)["rouge1"].fmeasure)


def test_eval_rag_cli_needs_a_store(capsys):
    code, _, err = _run(capsys, "eval-rag")
    assert code == 2 and "--store" in err


def test_uncaptioned_images_get_words_from_nearest_texts(mmqa_store):
    """mRAG-gim style: an image without a caption is described by the store's texts nearest to it
    (through a fitted linear map when there is one; the mechanism is checked with plain cosine)."""
    from mindgap.rag.context import NO_DESCRIPTION, ImageDescriber, Source
    from mindgap.retriever import Retriever

    retr = Retriever(mmqa_store)
    ids, _ = retr.store.vectors(Modality.IMAGE)
    bare = Source(id=ids[0], modality="image", score=1.0, cosine=0.3, rank=1, uri="x.jpg")  # no caption
    auto = ImageDescriber(retr)  # no linear corrector fitted in this store → no map
    assert auto.map_gap is None and auto.describe(bare).words_origin == "none" and bare.how.endswith("no description available")
    d = ImageDescriber(retr, map_gap="naive", k=2)
    s = d.describe(Source(id=ids[0], modality="image", score=1.0, cosine=0.3, rank=1, uri="x.jpg"))
    assert s.words_origin == "nearest-texts:naive" and s.words.count('"') == 4
    assert "described by the texts nearest to it" in s.prompt_text("q", load_template("paper"))
    assert NO_DESCRIPTION not in s.prompt_text("q", load_template("paper"))
    # the real linear map: a fitting error is a failure, not a skip
    retr.fit_gap("linear", pseudo_queries=[q["question"] for q in mmqa_questions()[:40]], name="linear")
    lin = ImageDescriber(retr)
    assert lin.map_gap == "linear"
    s = lin.describe(Source(id=ids[1], modality="image", score=1.0, cosine=0.3, rank=1, uri="x.jpg"))
    assert s.words_origin == "linear-map" and s.words and s.how == "as words: the texts nearest to it through the linear map"
