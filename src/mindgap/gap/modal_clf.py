"""``modal-clf``: the supervised baseline — predict the gold's modality, search only that one.

METHODS §1's strongest baseline: a classifier on the question predicts which modality the
answer needs and only that partition is searched (cosine ranking inside it). Default: an
L2-regularised logistic regression on the query *embedding* (scikit-learn), fitted on
labelled pairs, one model per query modality; at search time it is evaluated with numpy
(``sign(x·w + b)``), so queries need no scikit-learn. The paper fine-tuned
``bert-base-uncased`` on the question text instead: ``modal-clf:bert=<dir>`` loads such a
fine-tuned sequence classifier (``transformers``; its ``id2label`` must name ``text`` and
``image``) and routes on the query strings (text queries only).

Pseudo pairs are refused: they give every query both modalities as "gold", so there is
nothing to learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ModelLoadError, NotFittedError, require
from ..types import Modality
from .base import FitData, GapCorrector


class ModalClf(GapCorrector):
    """Route each query to the modality a classifier predicts for its gold item.

    Args:
        C: inverse regularisation strength of the logistic regression.
        max_iter: solver iterations.
        class_weight: ``None`` or ``"balanced"`` (for very skewed TextQ/ImageQ mixes).
        bert: directory of a fine-tuned BERT sequence classifier; replaces the regression.
        batch_size: queries per BERT forward pass.

    Attributes:
        clf_: ``{query modality: {"coef": (d,), "intercept": float, "classes": [neg, pos],
            "n": int, "train_accuracy": float}}`` (logistic regression).
        labels_: ``{class index: modality}`` read from the BERT config (BERT mode).
    """

    name = "modal-clf"
    needs_pairs = True

    def __init__(self, C: float = 1.0, max_iter: int = 1000, class_weight: str | None = None,
                 bert: str | None = None, batch_size: int = 32) -> None:
        if class_weight not in (None, "balanced"):
            raise InputError(f"class_weight must be null or 'balanced', got {class_weight!r}", item="class_weight")
        self.C = float(C)
        self.max_iter = int(max_iter)
        self.class_weight = class_weight
        self.bert = None if bert in (None, "") else str(bert)
        self.batch_size = int(batch_size)
        self.clf_: dict[str, dict[str, Any]] | None = None
        self.labels_: dict[str, str] | None = None
        self._bert_model: Any = None

    @property
    def uses_query_text(self) -> bool:  # type: ignore[override]
        return self.bert is not None

    # -- fitting -------------------------------------------------------------------------
    def fit(self, data: FitData) -> "ModalClf":
        if self.bert is not None:
            self.labels_ = {str(k): v for k, v in self._load_bert()[2].items()}
            return self
        data.require_pairs("modal-clf")
        if data.pairs == "pseudo":
            raise InputError("modal-clf is supervised: it needs labelled (query, gold) pairs; pseudo pairs give "
                             "every query both modalities", item="pairs")
        sk = require("sklearn.linear_model", "ml")
        x = np.asarray(data.queries, np.float32)
        qm = data.qmod()
        gm = np.asarray([Modality.parse(m).value for m in data.gold_modality])
        out: dict[str, dict[str, Any]] = {}
        for q in np.unique(qm):
            sel = qm == q
            classes = sorted(set(gm[sel]))
            if len(classes) < 2:
                raise InputError(f"modal-clf needs {q} queries with gold items of both modalities "
                                 f"(only {classes[0]} gold here)", item="pairs")
            lr = sk.LogisticRegression(C=self.C, max_iter=self.max_iter, class_weight=self.class_weight)
            lr.fit(x[sel], gm[sel])
            out[str(q)] = {"coef": lr.coef_[0].astype(np.float32), "intercept": float(lr.intercept_[0]),
                           "classes": [str(c) for c in lr.classes_], "n": int(sel.sum()),
                           "train_accuracy": float(lr.score(x[sel], gm[sel]))}
        self.clf_ = out
        return self

    # -- routing ---------------------------------------------------------------------------
    def predict(self, q: np.ndarray, query_modality: Modality | str = Modality.TEXT,
                texts: Sequence[str] | None = None) -> list[Modality]:
        """The predicted gold modality of each query."""
        qmod = Modality.parse(query_modality)
        if self.bert is not None:
            return self._predict_bert(qmod, texts)
        if self.clf_ is None:
            raise NotFittedError("gap corrector 'modal-clf' is not fitted; run `mindgap fit-gap` first", item=self.name)
        c = self.clf_.get(qmod.value)
        if c is None:
            raise NotFittedError(f"modal-clf has no classifier for {qmod.value} queries (fitted: "
                                 f"{', '.join(sorted(self.clf_))})", item=self.name)
        z = np.atleast_2d(np.asarray(q, np.float32)) @ np.asarray(c["coef"], np.float32) + float(c["intercept"])
        neg, pos = c["classes"]
        return [Modality.parse(pos if v > 0 else neg) for v in z]

    def route(self, q: np.ndarray, query_modality: Modality,
              texts: Sequence[str] | None = None) -> list[list[Modality]] | None:
        return [[m] for m in self.predict(q, query_modality, texts)]

    # -- BERT --------------------------------------------------------------------------------
    def _load_bert(self) -> tuple[Any, Any, dict[int, str]]:
        if self._bert_model is None:
            path = Path(str(self.bert)).expanduser()
            if not (path / "config.json").is_file():
                raise InputError("modal-clf:bert needs a directory with a fine-tuned sequence classifier "
                                 "(config.json, weights, tokenizer)", item=str(path))
            tr = require("transformers", "torch")
            require("torch", "torch")
            try:
                tok = tr.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
                model = tr.AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True)
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"cannot load the modal-clf BERT ({exc})", item=str(path)) from None
            model.eval()
            labels: dict[int, str] = {}
            for i, lab in model.config.id2label.items():
                name = str(lab).strip().lower()
                if name not in ("text", "image"):
                    raise InputError(f"modal-clf BERT label {lab!r} is not 'text' or 'image' (set id2label in "
                                     "config.json)", item=str(path))
                labels[int(i)] = name
            if set(labels.values()) != {"text", "image"}:
                raise InputError("modal-clf BERT must have exactly the labels 'text' and 'image'", item=str(path))
            self._bert_model = (tok, model, labels)
        return self._bert_model

    def _predict_bert(self, qmod: Modality, texts: Sequence[str] | None) -> list[Modality]:
        if self.labels_ is None:
            raise NotFittedError("gap corrector 'modal-clf' is not fitted; run `mindgap fit-gap` first", item=self.name)
        if qmod != Modality.TEXT:
            raise InputError("modal-clf:bert classifies question text; image queries cannot be routed", item="query")
        if texts is None:
            raise InputError("modal-clf:bert classifies the query text, but this search gave only embeddings "
                             "(search with text queries)", item="query")
        import torch

        tok, model, _ = self._load_bert()
        labels = {int(k): v for k, v in self.labels_.items()}
        out: list[Modality] = []
        with torch.inference_mode():
            for s in range(0, len(texts), self.batch_size):
                enc = tok(list(texts[s : s + self.batch_size]), padding=True, truncation=True, return_tensors="pt")
                pred = model(**enc).logits.argmax(-1).tolist()
                out.extend(Modality.parse(labels[int(p)]) for p in pred)
        return out

    def summary(self) -> dict[str, Any]:
        if self.bert is not None:
            return {"bert": self.bert, "labels": self.labels_}
        self._require("clf_")
        return {q: {"n": c["n"], "train_accuracy": c["train_accuracy"], "classes": c["classes"]}
                for q, c in (self.clf_ or {}).items()}
