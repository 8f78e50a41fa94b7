"""LlamaIndex: a mindgap encoder as the embedding model, and gap-corrected multimodal retrieval.

LlamaIndex's multimodal retriever (``MultiModalVectorStoreIndex.as_retriever``) returns
``similarity_top_k`` text nodes followed by ``image_similarity_top_k`` image nodes: a fixed
quota per modality, whatever the query asks for. :class:`GapFusionRetriever` fetches each
modality's candidates from the same index (or from any two retrievers) and merges them through
a fitted corrector (:func:`mindgap.gap.portable.fuse`): a query whose answer is a photo gets
photos first, one whose answer is a passage gets passages, and ``min_prob`` can return nothing
when nothing is likely relevant.

Example (offline, with the bundled model)::

    from llama_index.core.indices import MultiModalVectorStoreIndex
    from llama_index.core.schema import ImageNode, TextNode
    from mindgap.integrations.llamaindex import GapFusionRetriever, MindgapEmbedding

    emb = MindgapEmbedding("mindgap:flickr8k-effnet")
    index = MultiModalVectorStoreIndex([TextNode(text="a dog runs on the beach"),
                                        ImageNode(image_path="dog.jpg")],
                                       embed_model=emb, image_embed_model=emb)
    retriever = GapFusionRetriever(index, corrector="corrector.json", k=10)
    nodes = retriever.retrieve("a dog on the sand")   # NodeWithScore, fused score

Needs ``llama-index-core`` (``pip install 'mindgap[llamaindex]'``).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

try:
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.embeddings import MultiModalEmbedding
    from llama_index.core.schema import NodeWithScore, QueryBundle
    from pydantic import PrivateAttr
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    from ..errors import MissingDependency

    raise MissingDependency("the LlamaIndex adapter needs llama-index-core: pip install 'mindgap[llamaindex]'",
                            item="llama-index-core") from exc

from ..errors import InputError
from ..gap.portable import FusedHit, PortableCorrector, as_portable, fuse


class MindgapEmbedding(MultiModalEmbedding):
    """A mindgap encoder (spec or instance) as LlamaIndex's text *and* image embedding model.

    Embeddings are L2-normalised, so the vector store's similarity is the raw cosine a
    corrector expects. Query embeddings are memoised (``query_cache`` strings): LlamaIndex's
    multimodal retriever embeds the same query once per modality.
    """

    _encoder: Any = PrivateAttr()
    _memo: Any = PrivateAttr()
    _memo_size: int = PrivateAttr()

    def __init__(self, encoder: Any = None, *, query_cache: int = 1024, embed_batch_size: int = 32,
                 **kwargs: Any) -> None:
        from ..encoders import DEFAULT_OFFLINE_SPEC, load_encoder

        enc = load_encoder(encoder or DEFAULT_OFFLINE_SPEC) if encoder is None or isinstance(encoder, str) else encoder
        super().__init__(model_name=str(getattr(enc, "name", "mindgap")), embed_batch_size=embed_batch_size, **kwargs)
        self._encoder = enc
        self._memo = OrderedDict()
        self._memo_size = int(query_cache)

    @classmethod
    def class_name(cls) -> str:
        return "MindgapEmbedding"

    @property
    def encoder(self) -> Any:
        """The wrapped mindgap encoder."""
        return self._encoder

    def prime_queries(self, queries: list[str], vectors: np.ndarray | None = None) -> None:
        """Embed many queries in one batch (or take their ``vectors``) into the query memo."""
        vecs = np.asarray(self._encoder.encode_text(list(queries), show_progress=False) if vectors is None
                          else vectors, np.float32)
        if len(vecs) != len(queries):
            raise InputError(f"{len(queries)} queries but {len(vecs)} vectors", item="vectors")
        for q, v in zip(queries, vecs):
            self._remember(q, v)

    def _remember(self, q: str, v: np.ndarray) -> list[float]:
        out = np.asarray(v, np.float32).tolist()
        self._memo[q] = out
        self._memo.move_to_end(q)
        while len(self._memo) > self._memo_size:
            self._memo.popitem(last=False)
        return out

    def _get_query_embedding(self, query: str) -> list[float]:
        got = self._memo.get(query)
        if got is not None:
            return got
        return self._remember(query, self._encoder.encode_text([query], show_progress=False)[0])

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return np.asarray(self._encoder.encode_text(list(texts), show_progress=False), np.float32).tolist()

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)

    def _get_image_embedding(self, img_file_path: Any) -> list[float]:
        return self._get_image_embeddings([img_file_path])[0]

    def _get_image_embeddings(self, img_file_paths: list[Any]) -> list[list[float]]:
        imgs = [str(p) if isinstance(p, Path) else p for p in img_file_paths]
        return np.asarray(self._encoder.encode_image(imgs, show_progress=False), np.float32).tolist()

    async def _aget_image_embedding(self, img_file_path: Any) -> list[float]:
        return await asyncio.to_thread(self._get_image_embedding, img_file_path)


class GapFusionRetriever(BaseRetriever):
    """Text and image nodes merged through a fitted gap corrector (instead of fixed quotas).

    Args:
        index: a ``MultiModalVectorStoreIndex`` (its text store and image store are searched
            separately), or ``None`` with ``text_retriever`` / ``image_retriever``.
        corrector: a corrector file path, a store's manifest or folder, a parsed corrector
            JSON, a :class:`~mindgap.gap.portable.PortableCorrector` or a fitted corrector.
        k: nodes returned.
        depth: candidates fetched per modality (default: the corrector's list depth, at least ``k``).
        min_prob: drop nodes whose P(relevant) is below it (``calibrated`` correctors).
        text_retriever / image_retriever: any LlamaIndex retrievers returning one modality's
            nodes with cosine scores (instead of ``index``); set their top-k to ``depth``.
        pass_query_embedding: give the corrector the query embedding (``qnorm``, soft routing);
            it is the index's text embedding of the query.

    The returned ``NodeWithScore.score`` is the corrected score; :meth:`retrieve_fused` returns
    the :class:`~mindgap.gap.portable.FusedHit` s (cosine, score, probability, modality; the
    original ``NodeWithScore`` as ``payload``).
    """

    def __init__(self, index: Any = None, corrector: Any = None, *, k: int = 10, depth: int | None = None,
                 min_prob: float | None = None, text_retriever: Any = None, image_retriever: Any = None,
                 pass_query_embedding: bool = False, **kwargs: Any) -> None:
        if corrector is None:
            raise InputError("GapFusionRetriever needs a fitted corrector (a file from `mindgap fit-gap --out`, "
                             "a store, or mindgap.gap.portable.fit_corrector)", item="corrector")
        self.corrector = as_portable(corrector)
        if isinstance(k, bool) or int(k) < 1:
            raise InputError(f"k must be >= 1, got {k!r}", item="k")
        self.k = int(k)
        self.depth = int(depth) if depth is not None else max(self.k, int(getattr(self.corrector.corrector,
                                                                                   "list_depth", None) or 0))
        self.min_prob = min_prob
        self.pass_query_embedding = bool(pass_query_embedding)
        if index is not None:
            if text_retriever is not None or image_retriever is not None:
                raise InputError("give an index or text/image retrievers, not both", item="index")
            both = index.as_retriever(similarity_top_k=self.depth, image_similarity_top_k=self.depth)
            self._text = both.text_retrieve
            self._image = both.text_to_image_retrieve
            self._embed = getattr(index, "_embed_model", None)
        else:
            if text_retriever is None and image_retriever is None:
                raise InputError("give a MultiModalVectorStoreIndex or text_retriever / image_retriever", item="index")
            self._text = None if text_retriever is None else text_retriever.retrieve
            self._image = None if image_retriever is None else image_retriever.retrieve
            self._embed = None
        super().__init__(**kwargs)

    def retrieve_fused(self, query: str | QueryBundle) -> list[FusedHit]:
        """The fused hits (payload: the original ``NodeWithScore`` with its cosine)."""
        qb = QueryBundle(query) if isinstance(query, str) else query
        cands: dict[str, list[tuple[str, float, Any]]] = {}
        for mod, fn in (("text", self._text), ("image", self._image)):
            if fn is None:
                continue
            # each call gets its own bundle: LlamaIndex overwrites the bundle's embedding per modality
            got = fn(QueryBundle(qb.query_str, image_path=qb.image_path, custom_embedding_strs=qb.custom_embedding_strs,
                                 embedding=qb.embedding))
            cands[mod] = [(n.node.node_id, float(n.score if n.score is not None else -1.0), n) for n in got]
        qvec = None
        if self.pass_query_embedding:
            qvec = qb.embedding
            if qvec is None and self._embed is not None:
                qvec = self._embed.get_agg_embedding_from_queries(qb.embedding_strs)
        return fuse(cands, self.corrector, k=self.k, min_prob=self.min_prob,
                    query=None if qvec is None else np.asarray(qvec, np.float32))

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [NodeWithScore(node=h.payload.node, score=h.score) for h in self.retrieve_fused(query_bundle)]


__all__ = ["MindgapEmbedding", "GapFusionRetriever"]
