"""Caption metrics: BLEU-4, ROUGE-L, CIDEr-D (pure Python), SPICE (optional), nDCG, CLIP-score.

BLEU, ROUGE-L and CIDEr-D are re-implementations of the reference code in
``pycocoevalcap`` (the COCO caption evaluation toolkit) and agree with it to floating
point on the same tokenised inputs (``tests/test_caption_metrics.py`` checks this against
the package when installed, and against hard-coded values always). Tokenisation mimics
the Stanford PTB tokenizer the toolkit runs in Java (lower-case, punctuation tokens
removed); on all 10,000 Flickr8k captions it agrees with the Java tokenizer on >99.9 % of
captions. SPICE needs Java plus the Stanford CoreNLP 3.6.0 jars next to pycocoevalcap's
SPICE jar (a first-use download); :func:`spice_available` says whether it can run.

Inputs everywhere: ``refs`` = one list of reference strings per item, ``hyps`` = one
hypothesis string per item; strings are tokenised with :func:`tokenize` unless
``tokenized=True``.

Example:
    >>> round(cider_d(["a dog runs"], [["a dog runs", "a dog is running"]], df_refs=None), 3) >= 0
    True
"""

from __future__ import annotations

import math
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError

#: Tokens pycocoevalcap's PTBTokenizer wrapper removes after tokenising.
#: (The toolkit lists "-LRB-" etc. upper-case but tokenises lower-case, so brackets survive.)
PUNCTUATIONS = {"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"}
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_CONTRACTION = re.compile(r"(?i)^(.+?)('s|'re|'ve|'ll|'d|'m|n't)$")
_CLITICS = {"'s", "'re", "'ve", "'ll", "'d", "'m", "n't"}
_SPLIT = re.compile(r"""([.,!?;:"()\[\]{}]|\.\.\.|--|``|'')""")


def tokenize(text: str) -> str:
    """PTB-style tokenisation as the COCO toolkit does it: lower-case, punctuation dropped.

    Example:
        >>> tokenize("A dog's ball, in the park.")
        "a dog 's ball in the park"
    """
    s = text.replace("\n", " ").lower()
    s = _SPLIT.sub(r" \1 ", s)
    out: list[str] = []
    for tok in s.split():
        # leading / trailing quotes and hyphens are separate PTB tokens
        if tok in _BRACKETS:
            out.append(_BRACKETS[tok])
            continue
        if tok == "cannot":
            out.extend(["can", "not"])
            continue
        if tok in _CLITICS:
            out.append(tok)
            continue
        lead = re.match(r"^['`-]+", tok)
        if lead and len(lead.group(0)) < len(tok):
            out.append(lead.group(0))
            tok = tok[len(lead.group(0)):]
        trail = ""
        m = re.search(r"(?<!')(-+|'')$", tok)
        if m and m.start() > 0:
            trail, tok = tok[m.start():], tok[: m.start()]
        cm = _CONTRACTION.match(tok)
        if cm and not tok.startswith("'"):
            out.extend([cm.group(1), cm.group(2)])
        else:
            out.append(tok)
        if trail:
            out.append(trail)
    return " ".join(t for t in out if t not in PUNCTUATIONS and t != '"')


def _prep(hyps: Sequence[str], refs: Sequence[Sequence[str]], tokenized: bool) -> tuple[list[str], list[list[str]]]:
    if len(hyps) != len(refs):
        raise InputError(f"{len(hyps)} hypotheses but {len(refs)} reference lists", item="refs")
    if not hyps:
        raise InputError("no captions to score", item="hyps")
    if any(len(r) == 0 for r in refs):
        raise InputError("every item needs at least one reference caption", item="refs")
    if tokenized:
        return list(hyps), [list(r) for r in refs]
    return [tokenize(h) for h in hyps], [[tokenize(x) for x in r] for r in refs]


def _ngrams(words: list[str], n: int) -> Counter:
    c: Counter = Counter()
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            c[tuple(words[i:i + k])] += 1
    return c


# -- BLEU ---------------------------------------------------------------------------------
def bleu(hyps: Sequence[str], refs: Sequence[Sequence[str]], *, n: int = 4,
         tokenized: bool = False) -> tuple[list[float], list[list[float]]]:
    """Corpus BLEU-1..n with the "closest" reference length (pycocoevalcap's ``Bleu``).

    Returns:
        (corpus scores ``[B1..Bn]``, per-item scores ``[[B1 per item], ...]``).
    """
    hyps, refs = _prep(hyps, refs, tokenized)
    small, tiny = 1e-9, 1e-15
    tot_guess, tot_correct = [0] * n, [0] * n
    tot_test = tot_ref = 0.0
    per: list[list[float]] = [[] for _ in range(n)]
    for h, rs in zip(hyps, refs):
        hw = h.split()
        maxc: dict[tuple, int] = {}
        reflens = []
        for r in rs:
            rw = r.split()
            reflens.append(len(rw))
            for g, c in _ngrams(rw, n).items():
                maxc[g] = max(maxc.get(g, 0), c)
        tl = len(hw)
        rl = min((abs(x - tl), x) for x in reflens)[1]
        guess = [max(0, tl - k + 1) for k in range(1, n + 1)]
        correct = [0] * n
        for g, c in _ngrams(hw, n).items():
            correct[len(g) - 1] += min(maxc.get(g, 0), c)
        tot_test += tl
        tot_ref += rl
        b = 1.0
        for k in range(n):
            tot_guess[k] += guess[k]
            tot_correct[k] += correct[k]
            b *= (correct[k] + tiny) / (guess[k] + small)
            per[k].append(b ** (1.0 / (k + 1)))
        ratio = (tl + tiny) / (rl + small)
        if ratio < 1:
            for k in range(n):
                per[k][-1] *= math.exp(1 - 1 / ratio)
    scores, b = [], 1.0
    for k in range(n):
        b *= (tot_correct[k] + tiny) / (tot_guess[k] + small)
        scores.append(b ** (1.0 / (k + 1)))
    ratio = (tot_test + tiny) / (tot_ref + small)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores, per


# -- ROUGE-L ------------------------------------------------------------------------------
def _lcs(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1]


def rouge_l(hyps: Sequence[str], refs: Sequence[Sequence[str]], *, beta: float = 1.2,
            tokenized: bool = False) -> tuple[float, list[float]]:
    """ROUGE-L F (β = 1.2) with max precision / max recall over references, averaged."""
    hyps, refs = _prep(hyps, refs, tokenized)
    per = []
    for h, rs in zip(hyps, refs):
        hw = h.split(" ")
        prec, rec = [], []
        for r in rs:
            rw = r.split(" ")
            lcs = _lcs(rw, hw)
            prec.append(lcs / len(hw))
            rec.append(lcs / len(rw))
        p, r_ = max(prec), max(rec)
        per.append(((1 + beta**2) * p * r_) / (r_ + beta**2 * p) if p and r_ else 0.0)
    return float(np.mean(per)), per


# -- CIDEr-D ------------------------------------------------------------------------------
class CiderD:
    """CIDEr-D with document frequencies from a fixed reference corpus.

    pycocoevalcap computes document frequencies from the references of the items being
    scored; ``CiderD(refs).score(hyps, refs)`` with the same ``refs`` reproduces it exactly.
    Fixing the corpus (e.g. all training references) makes scores of single captions
    comparable across calls — what the refinement filter needs.

    Args:
        corpus_refs: one list of (tokenised when ``tokenized``) references per image.
        sigma: length-penalty width (6.0 in CIDEr-D).
    """

    def __init__(self, corpus_refs: Sequence[Sequence[str]], *, n: int = 4, sigma: float = 6.0,
                 tokenized: bool = False) -> None:
        self.n, self.sigma = n, sigma
        self.df: dict[tuple, float] = defaultdict(float)
        for rs in corpus_refs:
            toks = list(rs) if tokenized else [tokenize(r) for r in rs]
            for g in {g for r in toks for g in _ngrams(r.split(), n)}:
                self.df[g] += 1
        self.ref_len = math.log(float(len(corpus_refs))) if corpus_refs else 0.0

    def _vec(self, cnts: Counter) -> tuple[list[dict], list[float], int]:
        vec: list[dict] = [dict() for _ in range(self.n)]
        norm = [0.0] * self.n
        length = 0
        for g, tf in cnts.items():
            k = len(g) - 1
            w = float(tf) * (self.ref_len - math.log(max(1.0, self.df.get(g, 0.0))))
            vec[k][g] = w
            norm[k] += w * w
            if k == 1:  # sic: the reference code counts bigrams as "length"
                length += tf
        return vec, [math.sqrt(x) for x in norm], length

    def _sim(self, vh, vr, nh, nr, lh, lr) -> np.ndarray:
        delta = float(lh - lr)
        pen = math.exp(-(delta**2) / (2 * self.sigma**2))
        val = np.zeros(self.n)
        for k in range(self.n):
            for g, w in vh[k].items():
                wr = vr[k].get(g, 0.0)
                val[k] += min(w, wr) * wr
            if nh[k] != 0 and nr[k] != 0:
                val[k] /= nh[k] * nr[k]
            val[k] *= pen
        return val

    def score(self, hyps: Sequence[str], refs: Sequence[Sequence[str]], *,
              tokenized: bool = False) -> tuple[float, list[float]]:
        """Mean and per-item CIDEr-D (×10 scale as in the toolkit: 1.0 ≈ "CIDEr 100")."""
        hyps, refs = _prep(hyps, refs, tokenized)
        per = []
        for h, rs in zip(hyps, refs):
            vh, nh, lh = self._vec(_ngrams(h.split(), self.n))
            s = np.zeros(self.n)
            for r in rs:
                vr, nr, lr = self._vec(_ngrams(r.split(), self.n))
                s += self._sim(vh, vr, nh, nr, lh, lr)
            per.append(float(np.mean(s) / len(rs) * 10.0))
        return float(np.mean(per)), per


def cider_d(hyps: Sequence[str], refs: Sequence[Sequence[str]], *,
            df_refs: Sequence[Sequence[str]] | None = None, tokenized: bool = False) -> float:
    """Corpus CIDEr-D; document frequencies from ``df_refs`` (default: ``refs``, as the toolkit)."""
    return CiderD(refs if df_refs is None else df_refs, tokenized=tokenized).score(hyps, refs, tokenized=tokenized)[0]


# -- SPICE (optional, Java) ---------------------------------------------------------------
def spice_available() -> tuple[bool, str]:
    """Whether SPICE can run here, and if not, why (one line)."""
    if shutil.which("java") is None:
        return False, "SPICE skipped: no Java runtime on PATH"
    try:
        import pycocoevalcap.spice.spice as sp
    except ImportError:
        return False, ("SPICE skipped: Java is present but pycocoevalcap (the SPICE 1.0 jar) is not installed "
                       "(pip install pycocoevalcap; SPICE then also needs the Stanford CoreNLP 3.6.0 jars)")
    lib = Path(sp.__file__).parent / "lib"
    missing = [j for j in ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar") if not (lib / j).exists()]
    if missing:
        return False, (f"SPICE skipped: Java and pycocoevalcap are present but {' and '.join(missing)} are missing "
                       f"from {lib}; pycocoevalcap downloads them on first use, which is impossible offline "
                       "(copy them there to enable SPICE)")
    return True, "SPICE available"


def spice(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """Mean SPICE F-score via pycocoevalcap (call :func:`spice_available` first)."""
    ok, why = spice_available()
    if not ok:
        raise InputError(why, item="spice")
    from pycocoevalcap.spice.spice import Spice

    gts = {str(i): list(r) for i, r in enumerate(refs)}
    res = {str(i): [h] for i, h in enumerate(hyps)}
    return float(Spice().compute_score(gts, res)[0])


# -- retrieval and embedding metrics -------------------------------------------------------
def ndcg_at_k(ranked_relevance: np.ndarray, n_relevant: Sequence[int] | np.ndarray, k: int = 10) -> np.ndarray:
    """nDCG@k per query with binary gains.

    Args:
        ranked_relevance: ``(q, >=k)`` 0/1 relevance of each query's ranked results.
        n_relevant: how many relevant items each query has (for the ideal DCG).
    """
    rel = np.asarray(ranked_relevance, dtype=np.float64)[:, :k]
    disc = 1.0 / np.log2(np.arange(2, rel.shape[1] + 2))
    dcg = (rel * disc).sum(axis=1)
    ideal = np.array([disc[: min(int(m), k)].sum() for m in n_relevant])
    return np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), 0.0)


def clip_score(image_emb: np.ndarray, text_emb: np.ndarray, *, w: float = 2.5) -> np.ndarray:
    """CLIP-S (Hessel et al. 2021): ``w · max(cos(image, caption), 0)`` per row pair."""
    cos = np.sum(np.asarray(image_emb) * np.asarray(text_emb), axis=1)
    return w * np.maximum(cos, 0.0)


def caption_scores(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> dict[str, float]:
    """BLEU-4, ROUGE-L and CIDEr-D (toolkit conventions) for one set of captions."""
    th, tr = _prep(hyps, refs, False)
    return {
        "bleu4": bleu(th, tr, tokenized=True)[0][3],
        "rouge_l": rouge_l(th, tr, tokenized=True)[0],
        "cider_d": CiderD(tr, tokenized=True).score(th, tr, tokenized=True)[0],
    }
