"""The composition root: encoder + store + gap correctors. The CLI, server and RAG use it.

Example:
    >>> from mindgap import Retriever
    >>> with Retriever("lancedb:/tmp/kb") as r:                               # doctest: +SKIP
    ...     r.index(items)
    ...     r.fit_gap("zscore", pseudo_queries=["a dog on grass", ...])
    ...     hits = r.search("a dog running on the beach", k=10, gap="zscore")
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ImageError, InputError, StoreError
from .gap import FitData, GapCorrector, corrector_from_dict, make_corrector
from .gap.base import fit_checked
from .encoders.base import weights_fingerprint
from .manifest import Manifest, encoder_training_info
from .stores import VectorStore, open_store
from .stores.base import best_first, topk_rows
from .ingest.report import IngestReport
from .text import check_unicode, embed_long_texts
from .types import MODALITIES, Hit, Item, Modality

log = logging.getLogger(__name__)

#: How deletions are recorded in the manifest's ``sources`` log (never a source key).
DELETED_PREFIX = "deleted:"
#: a corrector with a per-item term (``calibrated:hub``) ranks a modality by cosine − term. The
#: exact store does so over all its items (the terms read by row); a store without ``search_rows``
#: (an ANN index) is asked for this many times the corrector's list depth by cosine, re-ranked by
#: the corrected score and cut: the top 10 of its search is the same for every k up to that many
HUB_FETCH = 2
#: Largest modality whose per-item terms are kept as arrays aligned with the exact store's rows
#: (:meth:`Retriever._row_terms`; the corrector's own table keeps as many); above it the exact
#: store takes the ANN stores' path.
ROW_TERMS_MAX = 200_000


def item_term_fetch(corr: GapCorrector, depth: int) -> int:
    """How deep a corrector with a per-item term fetches by cosine for a ``depth``-long list."""
    return max(int(depth), HUB_FETCH * int(getattr(corr, "list_depth", None) or depth))


def resolve_encoder_spec(manifest: Manifest | None, requested: str | None = None) -> str:
    """The encoder spec a store is used with — the one place this is decided (Retriever, CLI, server).

    ``requested`` when given, else the store's (its manifest), else the bundled offline
    model. A requested spec other than the store's is refused here, before any model loads.

    Example:
        >>> m = Manifest(encoder_spec="hf:some/clip", dim=512)
        >>> resolve_encoder_spec(m)
        'hf:some/clip'
        >>> resolve_encoder_spec(m, "onnx:/other")
        Traceback (most recent call last):
        ...
        mindgap.errors.EncoderMismatch: this store was built with encoder 'hf:some/clip' (dim 512); ...
    """
    if manifest is not None:
        if requested and requested != manifest.encoder_spec:
            manifest.check_encoder(requested, manifest.dim)  # raises EncoderMismatch naming both
        return manifest.encoder_spec
    if requested:
        return requested
    from .encoders import DEFAULT_OFFLINE_SPEC

    return DEFAULT_OFFLINE_SPEC


class TrainingOverlapError(InputError):
    """Fitting pairs overlap the encoder's recorded training data."""

    code = "training_overlap"


class Retriever:
    """Gap-aware search over a mixed text + image store.

    Args:
        store: a store URI (``lancedb:/path``, ``milvus:/file.db``, ``faiss:/dir``,
            ``exact:``; a bare path = LanceDB) or an open :class:`VectorStore`.
        encoder: an encoder spec or instance. ``None`` = the one recorded in the store's
            manifest. A different one than the store was built with is refused.
        text_mode: ``sentences`` (mean of sentence embeddings) or ``truncate``; new stores only.
    """

    def __init__(self, store: str | VectorStore, encoder: Any = None, *, text_mode: str = "sentences") -> None:
        self.store: VectorStore = open_store(store) if isinstance(store, str) else store
        self._encoder = None if encoder is None or isinstance(encoder, str) else encoder
        m = self.store.manifest
        self._encoder_spec = resolve_encoder_spec(m, encoder if isinstance(encoder, str) else None)
        if self._encoder is not None:
            self._encoder_spec = self._encoder.name
            self._check_encoder(m)
        self.text_mode = m.text_mode if m is not None else text_mode
        self._gaps: dict[str, GapCorrector] = {}
        self._item_cache: dict[tuple[str, str], tuple[int, list[str], np.ndarray]] = {}
        self._lock = threading.RLock()
        self._lex: Any = None
        self._terms_dirty: set[str] = set()  # correctors whose item terms grew since they were saved
        self._terms_synced: set[str] = set()  # correctors whose saved table holds what memory does
        self._row_term_cache: dict[tuple[str, str], tuple[int, GapCorrector, tuple[np.ndarray, np.ndarray]]] = {}
        # each corrector's RowTerms per modality (None: no per-item term), by name; a refit replaces
        self._row_term_fns: dict[str, tuple[GapCorrector, dict[Modality, Any] | None]] = {}

    # -- encoder / manifest ------------------------------------------------------------------
    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from .encoders import load_encoder

            self._encoder = load_encoder(self._encoder_spec)
            self._check_encoder(self.store.manifest)
        return self._encoder

    def _check_encoder(self, m: Manifest | None) -> None:
        """Refuse an encoder that did not build the store: spec, dim, weights (:meth:`Manifest.check_encoder`)."""
        if m is not None:
            m.check_encoder(self._encoder.name, self._encoder.dim, weights_fingerprint(self._encoder))

    @property
    def encoder_spec(self) -> str:
        return str(self._encoder_spec)

    @property
    def manifest(self) -> Manifest:
        m = self.store.manifest
        if m is None:
            m = Manifest(encoder_spec=self.encoder.name, dim=self.encoder.dim,
                         encoder_training=encoder_training_info(self.encoder),
                         encoder_weights=weights_fingerprint(self.encoder), text_mode=self.text_mode,
                         index={"uri": self.store.uri})
            self.store.save_manifest(m)
        return m

    # -- ingestion --------------------------------------------------------------------------
    def embed_items(self, items: Sequence[Item], *, decoded: dict[str, Any] | None = None, encoder: Any = None
                    ) -> tuple[list[Item], np.ndarray, list[tuple[str, str]]]:
        """Embed items; bad ones are returned as ``(id, reason)`` instead of failing the batch.

        Args:
            items: text and image items.
            decoded: image id → already decoded PIL image (or the ``ImageError`` decoding
                raised), from the ingestion pipeline's decode threads; others are decoded here.
            encoder: encode with this stand-in for the store's encoder (same name and dim;
                the server's runs chunks on its model thread).

        Returns:
            ``(embedded items, their (n, d) vectors in that order, skipped (id, reason))``.
        """
        from .images import load_image

        enc = encoder if encoder is not None else self.encoder
        ok: list[Item] = []
        vecs: list[np.ndarray] = []
        skipped: list[tuple[str, str]] = []
        texts = [it for it in items if it.modality == Modality.TEXT]
        images = [it for it in items if it.modality == Modality.IMAGE]
        good_t = []
        for it in texts:
            if not (it.text or "").strip():
                skipped.append((it.id, "empty text"))
            else:
                good_t.append(it)
        if good_t:
            vecs.append(embed_long_texts([it.text or "" for it in good_t], lambda t: self._encode_text_plain(t, enc),
                                         mode=self.text_mode))
            ok.extend(good_t)
        pil, good_i = [], []
        for it in images:
            try:
                img = decoded.get(it.id) if decoded else None
                if img is None:
                    if not it.uri:
                        raise ImageError("image item has no file path (uri)", item=it.id)
                    img = load_image(it.uri, name=it.uri)
                if isinstance(img, Exception):
                    raise img
                pil.append(img)
                good_i.append(it)
            except ImageError as exc:
                skipped.append((it.id, str(exc)))
        if pil:
            vecs.append(enc.encode_image(pil, show_progress=False))
            ok.extend(good_i)
        mat = np.concatenate(vecs) if vecs else np.zeros((0, enc.dim), np.float32)
        return ok, mat, skipped

    def _encode_text_plain(self, texts: list[str], encoder: Any = None) -> np.ndarray:
        # Encode in length order so each encoder batch pads to similar lengths (1.3–2.3x faster
        # on MMQA passages' sentences, measured on the shared machine; results equal to ~1e-7),
        # then restore the order.
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = (encoder or self.encoder).encode_text([texts[i] for i in order], show_progress=False)
        res = np.empty_like(out)
        res[order] = out
        return res

    def index(self, items: Iterable[Item | tuple[str, str]], *, batch_size: int = 64, progress: bool = True,
              total: int | None = None, source: str | None = None, workers: int | None = None,
              prefetch: int = 2) -> IngestReport:
        """Embed and add items in committed batches; ids already in the store are skipped.

        Each batch is one atomic ``store.add``: a killed process leaves exactly the batches
        that committed, and re-running completes the rest (stable ids). Images of the next
        ``prefetch`` batches are decoded by ``workers`` threads while the encoder runs
        (:mod:`mindgap.ingest.pipeline`). ``(source, reason)`` tuples in ``items`` are skip
        records (from :func:`mindgap.ingest.iter_source`) and go straight to the report.
        """
        from .ingest.pipeline import run_index

        try:
            return run_index(self, items, batch_size=batch_size, progress=progress, total=total, source=source,
                             workers=workers, prefetch=prefetch)
        finally:
            self._item_cache.clear()
            self.save_item_terms()

    def add_embedded(self, items: Sequence[Item], vectors: np.ndarray,
                     skipped: Sequence[tuple[str, str]] = ()) -> IngestReport:
        """Commit items embedded beforehand (:meth:`embed_items`) in one atomic ``store.add``.

        Ids the store already holds (or repeated in ``items``) are reported as present, never
        overwritten. The caller holds whatever write lock it needs; embedding happens before.
        """
        report = IngestReport(skipped=list(skipped))
        self.manifest  # noqa: B018 - a new store gets its manifest (encoder spec, dim) before the first batch
        present = self.store.has([it.id for it in items])
        seen: set[str] = set()
        keep: list[int] = []
        for i, it in enumerate(items):
            if it.id in present or it.id in seen:
                report.mark_present(it)
            else:
                seen.add(it.id)
                keep.append(i)
        if keep:
            fresh = [items[i] for i in keep]
            self.store.add(fresh, np.asarray(vectors)[keep])
            self.lexical_added(fresh)
            self._terms_added(fresh, np.asarray(vectors)[keep])
            for it in fresh:
                report.added[it.modality.value] += 1
            self._item_cache.clear()
        return report

    def index_source(self, source: str | Path, *, append: bool = False, **options: Any) -> IngestReport:
        """Ingest a folder, JSONL file, MMQA folder or image–caption folder (the CLI's ``mindgap index``).

        Re-indexing the same source adds only what is missing; a different source into a
        non-empty store needs ``append=True``. Options: see :func:`mindgap.ingest.index_source`.
        """
        from .ingest import index_source

        return index_source(self, source, append=append, **options)

    def delete(self, ids: Sequence[str], *, log: bool = False) -> int:
        """Delete items by id (one atomic commit); returns how many the store held.

        Args:
            ids: item ids.
            log: also record the deletion in the manifest's ``sources`` log (``mindgap rm``
                does), as ``deleted:<UTC time>:<n> item(s): <ids>`` — the log then tells what
                the store holds, not only what was once ingested.
        """
        ids = list(ids)
        n = self.store.delete(ids)
        self._item_cache.clear()
        if n and self._lexical_enabled():
            self.lexical_index(sync=False).delete(ids)  # store first, index second: a kill between is synced on open
        m = self.store.manifest
        if log and n and m is not None:
            shown = ", ".join(ids[:5]) + (f", … (+{len(ids) - 5})" if len(ids) > 5 else "")
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            m.sources.append(f"{DELETED_PREFIX}{when}:{n} item(s): {shown}")
            self.store.save_manifest(m)
        return n

    # -- the lexical side index (hybrid search, :mod:`mindgap.lexical`) ----------------------
    def _lexical_enabled(self) -> bool:
        m = self.store.manifest
        return self._lex is not None or (m is not None and m.lexical is not None)

    def enable_lexical(self, fields: Sequence[str] | None = None) -> Any:
        """Build (or open) the store's lexical side index and record it in the manifest.

        Args:
            fields: metadata fields to index besides the defaults (title, caption, alt text, ...);
                ``None`` keeps the recorded ones.
        """
        from .lexical import LexicalIndex, lexical_dir

        with self._lock:
            m = self.manifest
            rec = dict(m.lexical or {})
            want = list(rec.get("fields") or []) if fields is None else [str(f) for f in fields]
            if self._lex is not None and self._lex.fields == want and (self._lex.path is not None or
                                                                       lexical_dir(self.store.uri) is None):
                return self._lex
            lex = LexicalIndex(lexical_dir(self.store.uri), want)
            if rec and list(rec.get("fields") or []) != want:  # other fields: re-derive every entry
                lex.delete(lex.ids())
            lex.sync(self.store)
            rec.update(lex.info())
            m.lexical = rec
            self.store.save_manifest(m)
            self._lex = lex
            return lex

    def lexical_index(self, *, sync: bool = True) -> Any:
        """The store's lexical side index, in step with the vectors when ``sync`` (a count check;
        an id diff when the counts differ).

        A store indexed without one (no ``lexical`` entry in its manifest) gets a transient
        in-memory index built from its committed items, for this process only: a search is a
        read, so it writes nothing into the store (``mindgap index STORE --lexical`` /
        :meth:`enable_lexical` keeps one on disk, in step with ingestion)."""
        if self._lex is None:
            m = self.store.manifest
            if m is not None and m.lexical is not None:
                self.enable_lexical()
            else:
                from .lexical import LexicalIndex

                with self._lock:
                    if self._lex is None:
                        log.info("no lexical index recorded for %s: building one in memory for this process "
                                 "(`mindgap index STORE --lexical` keeps one on disk)", self.store.uri)
                        lex = LexicalIndex(None, [])
                        lex.sync(self.store)
                        self._lex = lex
        lex = self._lex
        if sync:
            lex.sync(self.store)
        return lex

    def lexical_added(self, items: Sequence[Item]) -> None:
        """Called after a committed ``store.add``: index the batch when the store has a lexical index."""
        if items and self._lexical_enabled():
            self.lexical_index(sync=False).add(items)

    def fusion_model(self) -> Any:
        """The hybrid fusion weights recorded for this store (:class:`mindgap.hybrid.FusionModel`),
        else :data:`mindgap.hybrid.DEFAULT_FUSION`."""
        from .hybrid import DEFAULT_FUSION, FusionModel

        m = self.store.manifest
        rec = (m.lexical or {}).get("fusion") if m is not None else None
        return FusionModel.from_dict(rec or DEFAULT_FUSION)

    def save_fusion_model(self, model: Any) -> bool:
        """Record fitted hybrid fusion weights in the manifest (:func:`mindgap.hybrid.fit_fusion`);
        ``None`` drops the recorded ones (back to :data:`mindgap.hybrid.DEFAULT_FUSION`). Returns
        whether the manifest changed."""
        m = self.manifest
        if model is None:
            if not (m.lexical or {}).get("fusion"):
                return False
            m.lexical = {k: v for k, v in (m.lexical or {}).items() if k != "fusion"}
        else:
            self.enable_lexical()
            m = self.manifest
            m.lexical = {**(m.lexical or {}), "fusion": model.to_dict()}
        self.store.save_manifest(m)
        return True

    # -- queries ----------------------------------------------------------------------------
    def embed_query(self, text: str | None = None, image: Any = None) -> tuple[np.ndarray, Modality]:
        """Embed one text or one image query → ``((1, d), modality)``."""
        if (text is None or not str(text).strip()) and image is None:
            raise InputError("give a query text or a query image", item="query")
        if text is not None and str(text).strip() and image is not None:
            raise InputError("give a query text or a query image, not both", item="query")
        check_unicode(text, "query")
        if image is not None:
            return self.encoder.encode_image([image], show_progress=False), Modality.IMAGE
        return self.encoder.encode_text([str(text)], show_progress=False), Modality.TEXT

    def gap_name(self, name: str | None = None) -> str:
        """The corrector a search uses: ``name``, else the store's default, else ``naive``
        (reads the manifest without creating one)."""
        m = self.store.manifest
        return name or (m.default_gap if m is not None else None) or "naive"

    def gap(self, name: str | None = None) -> GapCorrector:
        """The fitted corrector ``name`` from the manifest (``naive`` needs no fitting)."""
        name = self.gap_name(name)
        with self._lock:
            if name not in self._gaps:
                entry = self.manifest.gap.get(name)
                if entry is not None:
                    self._gaps[name] = corrector_from_dict(entry)
                    self._load_terms(name, self._gaps[name])
                else:
                    c = make_corrector(name)
                    if c.needs_pairs or type(c).fit is not GapCorrector.fit:  # fitted ones must be in the manifest
                        fitted = sorted(self.manifest.gap) + ["naive"]
                        raise InputError(
                            f"gap corrector {name!r} is not fitted for this store (fitted: {', '.join(fitted)}); "
                            f"run `mindgap fit-gap STORE --gap {name} ...`", item="gap")
                    self._gaps[name] = c
            return self._gaps[name]

    def _items_matrix(self, corr: GapCorrector, gap_name: str, modality: Modality) -> tuple[list[str], np.ndarray]:
        key = (gap_name, modality.value)
        n = self.store.count(modality)
        cached = self._item_cache.get(key)
        if cached is None or cached[0] != n:
            ids, mat = self.store.vectors(modality)
            cached = (n, ids, corr.transform_items(mat, modality) if len(ids) else mat)
            self._item_cache[key] = cached
        return cached[1], cached[2]

    def dense_candidates(self, corr: GapCorrector, gap_name: str, q: np.ndarray, qmod: Modality, m: Modality,
                         depth: int) -> tuple[np.ndarray, list[list[tuple[str, float]]]]:
        """Each query's best ``depth`` items of modality ``m`` with their cosines, in the space the
        corrector searches (its prepared query; its transformed items when it transforms them)
        → ``(prepared queries, per-query [(id, cosine), ...])``."""
        qm = corr.prepare_query(q, qmod, m)
        if corr.transforms_items:
            ids, mat = self._items_matrix(corr, gap_name, m)
            idx, vals = topk_rows(qm @ mat.T, depth)
            return qm, [[(ids[j], float(s)) for j, s in zip(ri, rv)] for ri, rv in zip(idx, vals)]
        if getattr(corr, "adjusts_items", False):
            search_rows = getattr(self.store, "search_rows", None)  # the exact store: terms by row, exact
            if search_rows is not None and self.store.count(m) <= ROW_TERMS_MAX:
                return qm, search_rows(qm, depth, m, terms=self._terms_by_row(corr, gap_name)[m])[0]
            return qm, self._item_adjusted(corr, m, self.store.search(qm, item_term_fetch(corr, depth), m), depth)
        return qm, self.store.search(qm, depth, m)

    def _terms_by_row(self, corr: GapCorrector, gap_name: str) -> dict[Modality, Any] | None:
        """:data:`mindgap.stores.exact.RowTerms` of the corrector's terms per modality (``None``:
        a corrector without a per-item term), made once per corrector: each returns the valid
        table of :attr:`_row_term_cache` without another call, else builds it (:meth:`_row_terms`)."""
        got = self._row_term_fns.get(gap_name)
        if got is None or got[0] is not corr:
            fns = None
            if getattr(corr, "adjusts_items", False):
                fns = {m: self._row_terms_fn(corr, gap_name, m) for m in MODALITIES}
            got = self._row_term_fns[gap_name] = (corr, fns)
        return got[1]

    def _row_terms_fn(self, corr: GapCorrector, gap_name: str, m: Modality) -> Any:
        table_key, tables = (gap_name, m.value), self._row_term_cache

        def terms(version: int, ids: list[str], mat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            hit = tables.get(table_key)  # (every search asks: the valid table, without another call)
            if hit is not None and hit[0] == version and hit[1] is corr:
                return hit[2]
            return self._row_terms(corr, gap_name, m, version, ids, mat)

        return terms

    def _row_terms(self, corr: GapCorrector, gap_name: str, m: Modality, version: int, ids: list[str],
                   mat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The corrector's per-item terms aligned with the rows of the store's matrix of modality
        ``m`` (a store with ``search_rows``), rebuilt when the store changed (its version) or the
        corrector was refitted: a search then reads its candidates' terms by row. The terms come
        from the corrector's table: known ones (:meth:`warm_gap`, a saved table, items indexed
        through this retriever) are looked up, the others computed here — on a store whose terms
        were never computed, the first search pays for all of them (``search.py --gap-overhead``
        times it: ``item_terms``), in memory only: a search writes nothing beside the store
        (:meth:`warm_gap` saves them). ``ids``, ``mat``: the store's rows of that version (what the
        store's search hands :data:`~mindgap.stores.exact.RowTerms`, which calls this when its table
        is missing or stale). → the terms as float64 and as float32."""
        key = (gap_name, m.value)
        with self._lock:
            before = corr.terms_computed()
            t64 = np.asarray(self._terms_of(corr, m, ids, mat), np.float64)
            if corr.terms_computed() != before:
                self._terms_synced.discard(gap_name)  # (memory only: warm_gap / close after indexing save)
            table = (t64, t64.astype(np.float32))
            self._row_term_cache[key] = (version, corr, table)
        return table

    def _item_adjusted(self, corr: GapCorrector, m: Modality, res: list[list[tuple[str, float]]],
                       depth: int) -> list[list[tuple[str, float, float]]]:
        """Candidates of a corrector with a per-item term (``calibrated:hub``) from a store without
        ``search_rows`` (an ANN index): each list, fetched ``HUB_FETCH`` × the corrector's list
        depth deep by cosine, re-ranked by ``cosine − corr.item_offsets(vector)`` (ties by id), cut
        to ``depth``, as ``(id, corrected score, cosine)``; the candidates' vectors are read from
        the store by id. (The exact store ranks by cosine − term over all its items.)"""
        if not any(res):
            return [[] for _ in res]
        ids = [i for r in res for i, _ in r]
        uniq = list(dict.fromkeys(ids))
        got, mat = self.store.vectors(m, uniq)
        found = dict(zip(got, np.asarray(corr.item_offsets(mat, m, ids=got), np.float64).tolist()))
        off = np.fromiter((found.get(i, 0.0) for i in ids), np.float64, len(ids))
        out = []
        at = 0
        for r in res:
            cos = np.fromiter((s for _, s in r), np.float64, len(r))
            score = cos - off[at : at + len(r)]
            at += len(r)
            order = best_first(score, lambda o, r=r: [r[j][0] for j in o.tolist()], depth).tolist()
            out.append([(r[j][0], sc, r[j][1]) for j, sc in zip(order, score[order].tolist())])
        return out

    def search_vectors(self, queries: np.ndarray, query_modality: Modality | str = Modality.TEXT, *,
                       k: int = 10, gap: str | None = None, modality: Modality | str | None = None,
                       fetch: bool = True, texts: Sequence[str] | None = None,
                       min_prob: float | None = None, hybrid: bool | str | None = None) -> list[list[Hit]]:
        """Gap-corrected exact top-k for a batch of query embeddings.

        Per modality: top-k by cosine (the store's index, or a scan of transformed vectors
        for embedding-level correctors), rescored by the corrector, merged on the score.
        ``texts`` (the query strings) reach correctors that route on text (``modal-clf:bert``).
        ``min_prob`` drops candidates whose P(relevant) is below it (probability correctors
        such as ``calibrated`` only): "nothing here is likely relevant" becomes an empty list.
        ``hybrid`` (``True`` = ``"calibrated"``, or a peer rule ``weighted``/``rrf``/``minmax``/``dbsf``/
        ``lexical``) adds BM25 evidence from the store's lexical side index to text queries (``texts``
        needed; :mod:`mindgap.hybrid`); image queries carry no words and search dense only.
        """
        if int(k) < 1:
            raise InputError("k must be >= 1", item="k")
        qmod = Modality.parse(query_modality)
        gap_name = self.gap_name(gap)
        corr = self.gap(gap_name)
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if min_prob is not None and not getattr(corr, "gives_probability", False):
            raise InputError(f"min_prob needs a probability corrector (e.g. calibrated); {gap_name!r} gives scores, "
                             "not probabilities", item="min_prob")
        from .hybrid import hybrid_search, parse_rule

        rule = parse_rule(hybrid)
        if rule is not None and qmod == Modality.TEXT:
            out = hybrid_search(self, q, qmod, texts, k=int(k), rule=rule, gap_name=gap_name, corr=corr,
                                modality=modality, min_prob=min_prob)
            if fetch:
                self._fill(out, q, qmod, corr)
            return out
        depth = max(int(k), int(getattr(corr, "list_depth", None) or 0))  # list-level correctors score a fixed depth
        mods = [Modality.parse(modality)] if modality else list(MODALITIES)
        if len(q) == 1 and min_prob is None:
            one = self._search_single(corr, gap_name, q[0], qmod, int(k), depth, mods)
            if one is not None:
                if fetch:
                    self._fill([one], q, qmod, corr)
                return [one]
        routes = corr.route(q, qmod, texts=texts) if getattr(corr, "uses_query_text", False) else corr.route(q, qmod)
        adjusts = getattr(corr, "adjusts_items", False)
        per_query: list[list[tuple[float, float, str, Modality, int]]] = [[] for _ in range(len(q))]
        jobs: list[tuple[Modality, list[int], list[list[tuple[str, float]]], np.ndarray]] = []
        for m in mods:
            if self.store.count(m) == 0:
                continue
            _, res = self.dense_candidates(corr, gap_name, q, qmod, m, depth)
            live = [qi for qi, hits in enumerate(res) if hits and (routes is None or m in routes[qi])]
            if not live:
                continue
            if len({len(res[qi]) for qi in live}) == 1:  # equal list lengths (the rule): score the batch at once
                groups = [live]
            else:
                groups = [[qi] for qi in live]
            dtype = np.float64 if adjusts else np.float32  # (cosine − term: a float64 difference)
            for g in groups:
                jobs.append((m, g, res, np.array([[c[1] for c in res[qi]] for qi in g], dtype=dtype)))
        lists = [(sims, q[g], qmod, m) for m, g, _, sims in jobs]
        # correctors that can score several lists in one pass (calibrated: both modalities at once);
        # the lists are best first (the store contract; topk_rows for transformed items)
        scored = (corr.score_lists(lists, best_first=True) if hasattr(corr, "score_lists")
                  else [corr.score_query(*j) for j in lists])
        for (m, g, res, sims), scores in zip(jobs, scored):
            scores = np.asarray(scores)
            probs = None if min_prob is None else corr.probability(sims, q[g], qmod, m)
            n = scores.shape[1]  # a group's lists share their length
            # scores fall along a modality's list, so only its best k (ties kept) can enter the merge
            scores = scores.astype(np.float64, copy=False)
            rows = scores.tolist()
            kth = None  # each row's k-th best score: one list's by a Python sort (no NaN in it), else numpy's
            if n > k:
                if len(rows) == 1 and not math.isnan(sum(rows[0])):
                    kth = [sorted(rows[0])[n - k]]
                else:
                    kth = np.partition(scores, n - k, axis=1)[:, n - k].tolist()
            for gi, (qi, sc) in enumerate(zip(g, rows)):
                hits = res[qi]
                # (the positions j with sc[j] >= the k-th best)
                keep = range(n) if kth is None else itertools.compress(range(n), map(kth[gi].__le__, sc))
                for j in keep:
                    if probs is None or probs[gi][j] >= min_prob:
                        per_query[qi].append((sc[j], hits[j][-1], hits[j][0], m, j + 1))  # [-1]: the cosine
        out: list[list[Hit]] = []
        for qi, cands in enumerate(per_query):
            cands.sort(key=lambda c: (-c[0], c[2]))
            top = cands[:k]
            hits = [Hit(id=iid, modality=m, cosine=sim, score=sc, rank=i + 1, modality_rank=r)
                    for i, (sc, sim, iid, m, r) in enumerate(top)]
            out.append(hits)
        if fetch:
            self._fill(out, q, qmod, corr)
        return out

    def _search_single(self, corr: GapCorrector, gap_name: str, q: np.ndarray, qmod: Modality, k: int,
                       depth: int, mods: list[Modality]) -> list[Hit] | None:
        """One query on a store with ``search_one`` (the exact store) under a corrector with a
        :meth:`~mindgap.gap.base.GapCorrector.head_scorer` (``naive``, ``zscore``, ``calibrated``):
        the general path's result — each modality's ``depth``-long list (``calibrated:hub``: by
        cosine − term, the terms read by row), scored, the best ``k`` merged — without its
        per-candidate Python work: a modality's scores fall along its list, so only its first
        ``k`` are scored and merged. ``None``: not this path."""
        search_one = getattr(self.store, "search_one", None)
        if search_one is None:
            return None
        row_terms = self._terms_by_row(corr, gap_name)
        cands: list[tuple[float, float, str, Modality, int]] = []
        for m in mods:
            n = self.store.count(m)
            if n == 0:
                continue
            head = corr.head_scorer(qmod, m)
            if head is None:
                return None
            terms = None if row_terms is None else row_terms[m]
            if terms is not None and n > ROW_TERMS_MAX:
                return None
            ids, cos, sims = search_one(q, k, m, depth=depth, terms=terms)
            cands.extend(zip(head(sims, k), cos, ids, itertools.repeat(m), range(1, k + 1)))
        cands.sort(key=lambda c: (-c[0], c[2]))
        return [Hit(id=iid, modality=m, cosine=sim, score=sc, rank=i + 1, modality_rank=r)
                for i, (sc, sim, iid, m, r) in enumerate(cands[:k])]

    def _fill(self, results: list[list[Hit]], q: np.ndarray, qmod: Modality, corr: GapCorrector) -> None:
        """Attach stored text/uri/metadata; report the *raw* cosine when the corrector moved vectors."""
        ids = sorted({h.id for hits in results for h in hits})
        if not ids:
            return
        items = dict(zip(ids, self.store.get(ids)))
        raw_needed = corr.transforms_items or type(corr).prepare_query is not GapCorrector.prepare_query
        vec: dict[str, np.ndarray] = {}
        if raw_needed:
            for m in MODALITIES:
                got, mat = self.store.vectors(m, [i for i in ids if items.get(i) and items[i].modality == m])
                vec.update(zip(got, mat))
        for qi, hits in enumerate(results):
            for h in hits:
                it = items.get(h.id)
                if it is not None:
                    h.text, h.uri, h.metadata = it.text, it.uri, it.metadata
                if raw_needed and h.id in vec:
                    h.cosine = float(q[qi] @ vec[h.id])

    def search(self, text: str | None = None, *, image: Any = None, k: int = 10, gap: str | None = None,
               modality: Modality | str | None = None, min_prob: float | None = None,
               hybrid: bool | str | None = None) -> list[Hit]:
        """Search with one text or image query. See :meth:`search_vectors` (``hybrid``: add BM25 evidence)."""
        q, qmod = self.embed_query(text, image)
        texts = [str(text)] if qmod == Modality.TEXT else None
        return self.search_vectors(q, qmod, k=k, gap=gap, modality=modality, texts=texts, min_prob=min_prob,
                                   hybrid=hybrid)[0]

    def search_many(self, texts: Sequence[str], *, k: int = 10, gap: str | None = None,
                    modality: Modality | str | None = None, batch_size: int = 256,
                    min_prob: float | None = None, hybrid: bool | str | None = None) -> list[list[Hit]]:
        """Batched text queries (encoder and store both batched); ``hybrid`` as in :meth:`search_vectors`."""
        check_unicode(list(texts), "queries")
        out: list[list[Hit]] = []
        for s in range(0, len(texts), batch_size):
            q = self.encoder.encode_text(list(texts[s : s + batch_size]), show_progress=False)
            out.extend(self.search_vectors(q, Modality.TEXT, k=k, gap=gap, modality=modality,
                                           texts=list(texts[s : s + batch_size]), min_prob=min_prob,
                                           hybrid=hybrid))
        return out

    def search_many_images(self, images: Sequence[Any], *, k: int = 10, gap: str | None = None,
                           modality: Modality | str | None = None, batch_size: int = 64,
                           min_prob: float | None = None) -> list[list[Hit]]:
        """Batched image queries (paths, bytes or PIL images): decoded, encoded and searched batch by batch.

        A path that is not a usable image raises :class:`~mindgap.errors.ImageError` naming it.
        """
        from .images import load_image

        out: list[list[Hit]] = []
        for s in range(0, len(images), batch_size):
            pil = [load_image(x, name=str(x) if isinstance(x, (str, Path)) else f"images[{s + j}]")
                   for j, x in enumerate(images[s : s + batch_size])]
            q = self.encoder.encode_image(pil, show_progress=False)
            out.extend(self.search_vectors(q, Modality.IMAGE, k=k, gap=gap, modality=modality, min_prob=min_prob))
        return out

    # -- fitting gap correctors ----------------------------------------------------------
    def pseudo_pairs(self, queries: np.ndarray, query_modality: Modality | str = Modality.TEXT) -> FitData:
        """Label-free fitting pairs: each query's top-1 item of each modality stands in for its gold."""
        qs, golds, gm = [], [], []
        for m in MODALITIES:
            if self.store.count(m) == 0:
                continue
            res = self.store.search(queries, 1, m)
            top_ids = [r[0][0] for r in res]
            got, mat = self.store.vectors(m, top_ids)
            lookup = dict(zip(got, mat))
            for qi, iid in enumerate(top_ids):
                qs.append(queries[qi])
                golds.append(lookup[iid])
                gm.append(m.value)
        if not qs:
            raise StoreError("the store is empty: nothing to pair the queries with", item=self.store.uri)
        return FitData(queries=np.stack(qs), gold=np.stack(golds), gold_modality=np.array(gm),
                       query_modality=Modality.parse(query_modality).value, pairs="pseudo")

    def corpus_sample(self, n: int = 5000, seed: int = 0) -> dict[str, np.ndarray]:
        """A random sample of stored vectors per modality (for corpus-statistics correctors)."""
        rng = np.random.default_rng(seed)
        out = {}
        for m in MODALITIES:
            if self.store.count(m) == 0:
                continue
            ids, mat = self.store.vectors(m)
            if len(ids) > n:
                mat = mat[np.sort(rng.choice(len(ids), n, replace=False))]
            out[m.value] = mat
        return out

    def check_training_overlap(self, image_ids: Iterable[str], *, allow: bool = False) -> None:
        """Refuse (or, with ``allow``, loudly warn about) fitting on the encoder's training images."""
        info = self.manifest.encoder_training or {}
        train = set(info.get("image_ids") or [])
        overlap = sorted(set(image_ids) & train)
        if not overlap:
            return
        msg = (f"{len(overlap)} fitting pair(s) use images the encoder was trained on (e.g. {overlap[0]}); "
               "an encoder overfits its training images (matched cosine far higher than on unseen data), "
               "so statistics fitted there are wrong. Fit on held-out data (the model's calib images).")
        if not allow:
            raise TrainingOverlapError(msg, item="pairs")
        warnings.warn(msg, stacklevel=2)
        log.warning(msg)

    def fit_gap(self, spec: str, data: FitData | None = None, *, pseudo_queries: Sequence[str] | None = None,
                corpus_sample: int = 5000, name: str | None = None, save: bool = True,
                make_default: bool = False, warm: bool = True) -> GapCorrector:
        """Fit a gap corrector and store it in the manifest under ``name`` (default: the spec).

        Args:
            spec: corrector spec (``zscore``, ``linear:procrustes``, ``linear+zscore``, ...).
            data: labelled pairs (and/or corpus sample). Built from ``pseudo_queries`` when absent.
            pseudo_queries: query texts for label-free pseudo pairs.
            corpus_sample: size of the per-modality corpus sample added to the fitting data.
            warm: a corrector with per-item terms (``calibrated``) computes them for every
                item now (:meth:`warm_gap`), and saves them beside the store when ``save``.
        """
        corr = make_corrector(spec)
        if data is None:
            if pseudo_queries is not None:
                q = self.encoder.encode_text(list(pseudo_queries), show_progress=False)
                data = self.pseudo_pairs(q, Modality.TEXT)
            else:
                data = FitData()
        if not data.corpus:
            data.corpus = self.corpus_sample(corpus_sample)
        if not data.counts:
            data.counts = {m.value: self.store.count(m) for m in MODALITIES}
        fit_checked(corr, data, spec)
        key = name or spec
        if save:
            m = self.manifest
            m.gap[key] = corr.to_dict()
            if make_default:
                m.default_gap = key
            self.store.save_manifest(m)
        with self._lock:
            self._gaps[key] = corr
            self._item_cache = {k: v for k, v in self._item_cache.items() if k[0] != key}
            self._terms_dirty.discard(key)
            self._terms_synced.discard(key)
        if warm and getattr(corr, "adjusts_items", False):
            self.warm_gap(key, save=save)
        return corr

    # -- per-item terms (calibrated's hubness term), computed once per store -------------------
    def _terms_path(self, name: str) -> Path | None:
        from .gap.terms import terms_path

        return terms_path(self.store.uri, name) if self.store.uri else None

    def _load_terms(self, name: str, corr: GapCorrector) -> None:
        if getattr(corr, "adjusts_items", False) and (path := self._terms_path(name)) is not None:
            from .gap.terms import load_terms

            if load_terms(corr, path):
                self._terms_synced.add(name)

    def warm_gap(self, name: str | None = None, *, save: bool = True, chunk: int = 8192) -> dict[str, int]:
        """Compute the per-item terms of corrector ``name`` (default: the store's) for every item
        the store holds, so no search pays for them (``calibrated``'s hubness term; other
        correctors have none: ``{}``), and save the table beside the store (``save``; local
        stores). Terms already known (loaded from the saved table) are only looked up. A
        modality with more items than the in-memory table keeps
        (:data:`mindgap.gap.calibrated.HUB_CACHE_MAX`) is left to be computed as searches meet
        its items. → ``{"known": n, "computed": n, "saved": n}``."""
        from .gap.calibrated import HUB_CACHE_MAX

        name = self.gap_name(name)
        corr = self.gap(name)
        if not getattr(corr, "adjusts_items", False):
            return {}
        before = corr.terms_computed()
        known = 0
        keep: set[str] = set()
        for m in MODALITIES:
            n = self.store.count(m)
            if n == 0 or n > HUB_CACHE_MAX:
                continue
            rows = getattr(self.store, "rows", None)  # the exact store's matrix itself, not a copy
            if rows is not None and n <= ROW_TERMS_MAX:  # its searches read the terms by row: build that table now
                version, ids, mat = rows(m)
                self._terms_by_row(corr, name)[m](version, ids, mat)  # (built unless already valid)
            else:
                ids, mat = rows(m)[1:] if rows is not None else self.store.vectors(m)
                self._terms_of(corr, m, ids, mat, chunk)
            keep.update(ids)
            known += len(ids)
        out = {"known": known, "computed": corr.terms_computed() - before, "saved": 0}
        path = self._terms_path(name) if save else None
        if path is not None and (out["computed"] or name not in self._terms_synced):
            out["saved"] = self._save_terms(name, corr, path, keep) or 0
            with self._lock:
                self._terms_dirty.discard(name)
        return out

    @staticmethod
    def _terms_of(corr: GapCorrector, m: Modality, ids: Sequence[str], mat: np.ndarray,
                  chunk: int = 8192) -> np.ndarray:
        """``corr``'s per-item term of each row of ``mat`` (``ids``: the rows' ids), chunk by chunk:
        known terms are looked up, the others computed and kept by the corrector."""
        out = np.zeros(len(ids), np.float64)
        for b in range(0, len(ids), chunk):
            out[b : b + chunk] = corr.item_offsets(mat[b : b + chunk], m, ids=ids[b : b + chunk])
        return out

    def _save_terms(self, name: str, corr: GapCorrector, path: Path, keep: set[str] | None = None) -> int | None:
        """Write ``name``'s table of terms beside the store → how many; ``None`` (logged) when the
        store's folder cannot be written (a read-only store still searches; the terms stay in memory)."""
        from .gap.terms import save_terms

        try:
            n = save_terms(corr, path, keep)
        except OSError as exc:
            log.warning("item terms of %s not saved to %s: %s", name, path, exc)
            return None
        self._terms_synced.add(name)
        return n

    def _terms_added(self, items: Sequence[Item], vectors: np.ndarray) -> None:
        """New items' terms for the loaded correctors that have them (the vectors are at hand)."""
        with self._lock:
            loaded = [(n, c) for n, c in self._gaps.items() if getattr(c, "adjusts_items", False)]
        if not loaded:
            return
        for m in MODALITIES:
            sel = [j for j, it in enumerate(items) if it.modality == m]
            if not sel:
                continue
            for name, corr in loaded:
                corr.item_offsets(vectors[sel], m, ids=[items[j].id for j in sel])
                with self._lock:
                    self._terms_dirty.add(name)
                    self._terms_synced.discard(name)

    def save_item_terms(self) -> int:
        """Save the item terms that grew since they were loaded or saved (after indexing; on
        :meth:`close`) → how many tables were written."""
        with self._lock:
            dirty, self._terms_dirty = sorted(self._terms_dirty), set()
        n = 0
        for name in dirty:
            corr, path = self._gaps.get(name), self._terms_path(name)
            if corr is None or path is None or name not in (self.store.manifest.gap if self.store.manifest else {}):
                continue
            n += self._save_terms(name, corr, path) is not None
        return n

    def stats(self) -> dict[str, Any]:
        m = self.store.manifest
        return {"store": self.store.uri, "encoder": self.encoder_spec,
                "counts": {mm.value: self.store.count(mm) for mm in MODALITIES},
                "gap_correctors": sorted(m.gap) if m else [], "default_gap": m.default_gap if m else "naive",
                "text_mode": self.text_mode}

    def close(self) -> None:
        self.save_item_terms()
        self.store.close()

    def __enter__(self) -> "Retriever":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def resolve_path(p: str | Path) -> Path:
    return Path(p).expanduser().resolve()
