"""Caption metrics agree with the COCO toolkit (pycocoevalcap) and with hand-checked values."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest

from mindgap.caption import metrics as M

GTS = {
    "1": ["a man is riding a horse on the beach", "a person rides a brown horse along the shore",
          "a man on a horse near the ocean"],
    "2": ["two dogs are playing in the snow", "a black dog and a white dog run through snow",
          "dogs play outside in the winter"],
    "3": ["a little girl in a pink dress is jumping", "a girl jumps on a trampoline",
          "a child in pink bounces in the air"],
}
RES = {"1": ["a man riding a horse on the beach"], "2": ["a dog runs in the snow"], "3": ["a girl in a pink dress"]}
HYPS = [RES[k][0] for k in GTS]
REFS = [GTS[k] for k in GTS]

# Produced by pycocoevalcap 1.2 (Bleu(4), Rouge(), Cider()) on GTS / RES above.
REF_BLEU = [0.949999999905, 0.85233243988692, 0.7459791041083483, 0.6590818113880623]
REF_ROUGE_PER = [0.93129771, 0.45522388, 0.7721519]
REF_CIDER, REF_CIDER_PER = 2.2735427825888648, [3.27462166, 1.03544097, 2.51056572]

has_coco = importlib.util.find_spec("pycocoevalcap") is not None


def test_bleu_rouge_cider_match_recorded_toolkit_values():
    b, _ = M.bleu(HYPS, REFS, tokenized=True)
    assert b == pytest.approx(REF_BLEU, abs=1e-12)
    r, per = M.rouge_l(HYPS, REFS, tokenized=True)
    assert per == pytest.approx(REF_ROUGE_PER, abs=1e-8)
    assert r == pytest.approx(np.mean(REF_ROUGE_PER), abs=1e-8)
    c, cper = M.CiderD(REFS, tokenized=True).score(HYPS, REFS, tokenized=True)
    assert c == pytest.approx(REF_CIDER, abs=1e-10)
    assert cper == pytest.approx(REF_CIDER_PER, abs=1e-8)


def test_hand_checked_values():
    # identical to its only reference: BLEU-4 = ROUGE-L = 1
    b, _ = M.bleu(["a b c d e"], [["a b c d e"]], tokenized=True)
    assert b[3] == pytest.approx(1.0, abs=1e-6)
    assert M.rouge_l(["a b c d e"], [["a b c d e"]], tokenized=True)[0] == pytest.approx(1.0)
    # LCS("a b c d", "a c d e") = 3 → P = R = 3/4 → F_beta = 3/4 for any beta
    assert M.rouge_l(["a b c d"], [["a c d e"]], tokenized=True)[0] == pytest.approx(0.75)
    # BLEU-1 with clipping: "the the the" vs "the cat": 1 clipped match of 3, BP = 1 (closest ref len 2 < 3)
    b, _ = M.bleu(["the the the"], [["the cat"]], tokenized=True)
    assert b[0] == pytest.approx(1 / 3, abs=1e-6)
    # BLEU brevity penalty: 2-word hyp vs 4-word ref, all unigrams match → exp(1 - 4/2)
    b, _ = M.bleu(["a b"], [["a b c d"]], tokenized=True)
    assert b[0] == pytest.approx(np.exp(1 - 2), rel=1e-6)
    # CIDEr-D: nothing in common → 0; a reference scores higher than a partial match
    cd = M.CiderD(REFS, tokenized=True)
    assert cd.score(["zebra xylophone quark"], [REFS[0]], tokenized=True)[0] == 0.0
    full = cd.score([REFS[0][0]], [REFS[0]], tokenized=True)[0]
    part = cd.score(["a man on the sand"], [REFS[0]], tokenized=True)[0]
    assert full > part > 0


def test_tokenizer_matches_ptb_conventions():
    assert M.tokenize("A dog's ball, in the park.") == "a dog 's ball in the park"
    assert M.tokenize("I don't know!") == "i do n't know"
    assert M.tokenize('A sign reading "HELP" (left).') == "a sign reading help -lrb- left -rrb-"
    assert M.tokenize("We cannot see") == "we can not see"
    assert M.tokenize("A T-shirt -- red") == "a t-shirt red"


def test_ndcg_hand_checked():
    # relevant at ranks 1 and 3, two relevant in total
    got = M.ndcg_at_k(np.array([[1, 0, 1, 0]]), [2], k=10)[0]
    assert got == pytest.approx((1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3)))
    assert M.ndcg_at_k(np.array([[0, 0, 0]]), [0], k=3)[0] == 0.0


def test_clip_score_and_input_errors():
    from mindgap.errors import InputError

    a = np.eye(3, dtype=np.float32)
    assert M.clip_score(a, a).tolist() == [2.5, 2.5, 2.5]
    assert M.clip_score(a, -a).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(InputError):
        M.bleu(["a"], [["a"], ["b"]])
    with pytest.raises(InputError):
        M.rouge_l(["a"], [[]])


@pytest.mark.skipif(not has_coco, reason="pycocoevalcap not installed")
def test_agrees_with_pycocoevalcap_on_real_captions(flickr_test):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    recs = flickr_test[:150]
    gts = {r.image_id: [M.tokenize(c) for c in r.captions[1:]] for r in recs}
    res = {r.image_id: [M.tokenize(r.captions[0])] for r in recs}
    hyps, refs = [res[k][0] for k in gts], [gts[k] for k in gts]
    assert M.bleu(hyps, refs, tokenized=True)[0] == pytest.approx(Bleu(4).compute_score(gts, res, verbose=0)[0], abs=1e-12)
    assert M.rouge_l(hyps, refs, tokenized=True)[0] == pytest.approx(Rouge().compute_score(gts, res)[0], abs=1e-12)
    mine = M.CiderD(refs, tokenized=True).score(hyps, refs, tokenized=True)
    theirs = Cider().compute_score(gts, res)
    assert mine[0] == pytest.approx(theirs[0], abs=1e-10)
    assert np.allclose(mine[1], theirs[1], atol=1e-10)


@pytest.mark.skipif(not has_coco or shutil.which("java") is None, reason="needs pycocoevalcap + Java")
def test_tokenizer_agrees_with_java_ptb_tokenizer(flickr_test):
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    recs = flickr_test[:300]
    caps = {r.image_id: [{"caption": c} for c in r.captions] for r in recs}
    theirs = PTBTokenizer().tokenize(caps)
    pairs = [(M.tokenize(c), t) for r in recs for c, t in zip(r.captions, theirs[r.image_id])]
    agree = sum(a == b for a, b in pairs) / len(pairs)
    assert agree > 0.995, json.dumps([p for p in pairs if p[0] != p[1]][:5])


def test_spice_availability_is_reported():
    ok, why = M.spice_available()
    assert isinstance(ok, bool) and why
    if not ok:
        assert why.startswith("SPICE skipped")
