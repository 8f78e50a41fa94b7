"""LangChain: mindgap encoders as ``Embeddings`` and a retriever that fuses both modalities.

LangChain has no multimodal merge of its own: a text store and an image store are searched
separately and their lists concatenated (or merged on raw scores, which the modality gap
skews towards text). :class:`GapFusionRetriever` searches both ``VectorStore`` s and merges
them through a fitted corrector (:func:`mindgap.gap.portable.fuse`), returning ``Document`` s
whose metadata carry ``modality``, ``cosine``, ``gap_score`` and (``calibrated``) ``probability``.

Example (offline, with the bundled model)::

    from langchain_core.vectorstores import InMemoryVectorStore
    from mindgap.integrations.langchain import GapFusionRetriever, MindgapEmbeddings

    texts = InMemoryVectorStore(MindgapEmbeddings(modality="text"))
    texts.add_texts(["a dog runs on the beach", "a man rides a bike"])
    images = InMemoryVectorStore(MindgapEmbeddings(modality="image"))   # documents are image paths
    images.add_texts(["photos/dog.jpg", "photos/bike.jpg"])
    retriever = GapFusionRetriever(text_store=texts, image_store=images, corrector="corrector.json", k=10)
    docs = retriever.invoke("a dog on the sand")

Needs ``langchain-core`` (``pip install 'mindgap[langchain]'``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever
    from pydantic import ConfigDict, PrivateAttr
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    from ..errors import MissingDependency

    raise MissingDependency("the LangChain adapter needs langchain-core: pip install 'mindgap[langchain]'",
                            item="langchain-core") from exc

from ..errors import InputError
from ..gap.portable import FusedHit, PortableCorrector, as_portable, fuse
from ..types import Modality


class MindgapEmbeddings(Embeddings):
    """A mindgap encoder as LangChain ``Embeddings`` for one modality's store.

    ``embed_documents`` embeds texts (``modality="text"``) or image files — paths, one per
    document (``modality="image"``); ``embed_query`` always embeds the query *text*, into the
    same joint space, so a text query searches an image store directly.

    Args:
        encoder: a mindgap encoder spec or instance (default: the bundled offline model);
            share one instance between the two stores.
        modality: what the store's documents are.
    """

    def __init__(self, encoder: Any = None, *, modality: str = "text") -> None:
        from ..encoders import DEFAULT_OFFLINE_SPEC, load_encoder

        self.encoder = load_encoder(encoder or DEFAULT_OFFLINE_SPEC) if encoder is None or isinstance(encoder, str) \
            else encoder
        self.modality = Modality.parse(modality)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        if self.modality == Modality.IMAGE:
            return np.asarray(self.encoder.encode_image(list(texts), show_progress=False), np.float32).tolist()
        return np.asarray(self.encoder.encode_text(list(texts), show_progress=False), np.float32).tolist()

    def embed_query(self, text: str) -> list[float]:
        return np.asarray(self.encoder.encode_text([text], show_progress=False)[0], np.float32).tolist()


class GapFusionRetriever(BaseRetriever):
    """Documents from a text store and an image store, merged through a fitted gap corrector.

    Attributes:
        text_store / image_store: LangChain ``VectorStore`` s (either may be ``None``).
        corrector: a corrector file path, a store manifest or folder, a parsed corrector JSON,
            a ``PortableCorrector`` or a fitted corrector.
        k: documents returned.
        depth: candidates per modality (default: the corrector's list depth, at least ``k``).
        min_prob: drop documents whose P(relevant) is below it (``calibrated``).
        to_cosine: turns a store's ``similarity_search_with_score`` score into the raw cosine
            (default: the score is the cosine, as ``InMemoryVectorStore`` returns; for a store
            returning cosine *distance* pass ``lambda d: 1 - d``).
        id_key: metadata key holding a document's id when ``Document.id`` is unset.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    text_store: Any = None
    image_store: Any = None
    corrector: Any = None
    k: int = 10
    depth: int | None = None
    min_prob: float | None = None
    to_cosine: Callable[[float], float] | None = None
    id_key: str = "id"
    _pc: Any = PrivateAttr(default=None)

    def model_post_init(self, __context: Any) -> None:
        if self.corrector is None:
            raise InputError("GapFusionRetriever needs a fitted corrector (a file from `mindgap fit-gap --out`, "
                             "a store, or mindgap.gap.portable.fit_corrector)", item="corrector")
        if self.text_store is None and self.image_store is None:
            raise InputError("give text_store and/or image_store", item="text_store")
        if int(self.k) < 1:
            raise InputError(f"k must be >= 1, got {self.k!r}", item="k")
        self._pc = as_portable(self.corrector)

    @property
    def fetch_depth(self) -> int:
        return int(self.depth) if self.depth is not None else max(
            int(self.k), int(getattr(self._pc.corrector, "list_depth", None) or 0))

    def _doc_id(self, doc: Document, modality: str, j: int) -> str:
        return str(doc.id or doc.metadata.get(self.id_key) or f"{modality}:{j}:{doc.page_content[:200]}")

    def fuse_query(self, query: str) -> list[FusedHit]:
        """The fused hits (payload: the store's ``Document``)."""
        cands: dict[str, list[tuple[str, float, Any]]] = {}
        for mod, store in (("text", self.text_store), ("image", self.image_store)):
            if store is None:
                continue
            got = store.similarity_search_with_score(query, k=self.fetch_depth)
            conv = self.to_cosine or float
            cands[mod] = [(self._doc_id(d, mod, j), float(conv(s)), d) for j, (d, s) in enumerate(got)]
        return fuse(cands, self._pc, k=int(self.k), min_prob=self.min_prob)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        out = []
        for h in self.fuse_query(query):
            d: Document = h.payload
            meta = {**d.metadata, "modality": h.modality, "cosine": h.cosine, "gap_score": h.score, "rank": h.rank}
            if h.probability is not None:
                meta["probability"] = h.probability
            out.append(Document(page_content=d.page_content, metadata=meta, id=d.id))
        return out


__all__ = ["MindgapEmbeddings", "GapFusionRetriever"]
