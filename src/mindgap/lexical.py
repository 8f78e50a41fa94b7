"""The lexical side index for hybrid search (issue 15): BM25 over every text an item carries.

Library: **tantivy** (tantivy-py), chosen by measurement (``benchmarks/lexical_choice.py``,
docs/results/hybrid/lexical_choice.md): at 100K documents it builds faster than bm25s, is
smaller on disk, answers faster and, unlike bm25s, adds documents incrementally (bm25s
rebuilds everything on each ingestion batch). LanceDB's full-text index is tantivy too, but
tied to the LanceDB backend.

What is indexed per item (one ``body`` field, English stemming): the passage text (or an
image's caption/title in ``Item.text``), the metadata fields in :data:`DEFAULT_FIELDS`
(``title``, ``caption(s)``, ``alt``/``alt_text``, ``name``, ``filename``, ``description``)
plus the fields the user names at index time, and the words of the file name (only
alphabetic words: camera names like ``IMG_0042`` and hex ids say nothing). Every item gets a
document, with or without text, so the index's per-modality counts equal the store's; an
item with no text is flagged (``has_text = "0"``) and its lexical signal is *missing*, not
zero (:mod:`mindgap.hybrid`).

Consistency with the vectors. The index is **derived state**: the store's committed items
are the truth. Writes go store first, index second (:class:`~mindgap.retriever.Retriever`
hooks ``add_embedded``, the ingestion pipeline and ``delete``), each a tantivy commit
(atomic). A kill between the two leaves the index one batch behind; :meth:`LexicalIndex.sync`
(run on open and before every hybrid search when the per-modality counts differ) diffs the
ids and applies the difference, so after any crash the next open agrees with the vectors.

Names and linked evidence. An item whose text (or metadata ``title`` / ``name``) is short — at
most :data:`NAME_MAX_WORDS` words once a trailing disambiguator such as ``(1976 film)`` is
dropped — also has a *name* (``name`` field): an image titled *PlayStation Theater*, a poster
titled *Carrie (1976 film)*. :meth:`LexicalIndex.linked` finds the items whose name the query's
best passages mention as a phrase: the second hop of a question that names a thing only
through a passage ("the venue of the 11th Shorty Awards" → the passage that says *PlayStation
Theater* → the image with that title). :mod:`mindgap.hybrid` turns it into one more feature of
the calibrated fusion. Passage bodies are stored in the index for this step.

One tantivy index per modality (``lexical/text``, ``lexical/image``): BM25 statistics are each
modality's own, and a per-modality search needs no filter.

Ids of hits without reading stored documents. Every document carries ``key``, a 64-bit hash
of its id in a fast (columnar) field; a search reads its hits' keys in one call and maps them
back to ids through an in-memory table (built on first use by one scan, kept up to date by
:meth:`LexicalIndex.add` / :meth:`~LexicalIndex.delete`). A key the table lacks (a document
another process wrote) or one two ids share is resolved from the stored document, as before.
Measured once at 100K items (50 hits per side): text side 0.42 → 0.30 ms (with the texts
of the 5 passages linking reads, instead of all 50), image side 0.21 → 0.16 ms; the hybrid
query end to end: ``benchmarks/search.py --hybrid``.

Where it lives: ``<store folder>/lexical/`` (exact, FAISS, LanceDB, Qdrant local),
``<file>.lexical/`` beside a milvus-lite file, in memory for in-memory and remote stores
(rebuilt from the store when opened). The manifest records it (``Manifest.lexical``).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .errors import InputError, StoreError
from .types import MODALITIES, Item, Modality

LIBRARY = "tantivy"
#: metadata keys whose values are indexed for every item (plus the user's ``fields``)
DEFAULT_FIELDS = ("title", "caption", "captions", "alt", "alt_text", "name", "filename", "description")
#: file-name words that carry no meaning
_FILE_STOP = {"img", "dsc", "dscn", "dcim", "image", "photo", "pic", "picture", "screenshot", "scan", "jpg", "jpeg",
              "png", "gif", "webp", "bmp", "tif", "tiff", "copy", "final", "edit", "edited"}
_WORD = re.compile(r"[A-Za-z]{2,}")
_HEAP = 50_000_000
#: the body analyzer: tantivy's ``en_stem`` (simple tokens, lowercase, Porter stemming), stop words kept
#: in the index (queries drop them: :meth:`LexicalIndex.search`). Tried and not kept (runs not
#: committed): dropping stop words from the index, and one search over both modalities instead of one
#: per modality — each lost MMQA golds from the candidate lists.
TOKENIZER = "en_stem"
#: the longest item text (in words) that is also a *name* passages can mention (module docstring)
NAME_MAX_WORDS = 8
#: a trailing disambiguator that passages do not repeat: "Carrie (1976 film)" → "Carrie"
_DISAMBIG = re.compile(r"\s*\([^()]*\)\s*$")
#: names made only of these (analysed) words are not linked: every passage mentions them
_STOP = frozenset("a an and are as at be by for from has he her his i in is it its of on or she that the their "
                  "there they this to was were will with you your".split())


def id_key(iid: str) -> int:
    """The 64-bit (signed) key of an id: the ``key`` fast field (module docstring)."""
    return int.from_bytes(hashlib.blake2b(iid.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little",
                          signed=True)


def _need_tantivy() -> Any:
    try:
        import tantivy
    except ImportError:
        raise InputError("hybrid search needs the lexical index library tantivy: pip install 'mindgap[lexical]'",
                         item="hybrid") from None
    return tantivy


def file_words(uri: str | None) -> str:
    """The meaningful words of a file name: ``"golden_retriever-02.jpg"`` → ``"golden retriever"``.

    Example:
        >>> file_words("/photos/IMG_0042.JPG"), file_words("/x/Santa_Anita_Park.png"), file_words("ab12cd.jpg")
        ('', 'Santa Anita Park', '')
    """
    if not uri:
        return ""
    stem = Path(str(uri)).stem
    words = [w for w in re.split(r"[\W_]+", stem) if w and w.isalpha() and len(w) >= 2 and w.lower() not in _FILE_STOP]
    return " ".join(words)


def _values(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, (list, tuple)):
        return [s for x in v for s in _values(x)]
    if isinstance(v, dict):
        return []
    s = str(v).strip()
    return [s] if s else []


def item_text(item: Item, fields: Sequence[str] = ()) -> str:
    """Everything lexical an item carries, joined (``""`` when it carries none).

    Example:
        >>> item_text(Item("a", Modality.IMAGE, uri="/p/Bengal_tiger.jpg", metadata={"alt": "a tiger", "n": 3}))
        'a tiger Bengal tiger'
    """
    parts = _values(item.text)
    md = item.metadata or {}
    for key in dict.fromkeys([*DEFAULT_FIELDS, *fields]):
        parts += [p for p in _values(md.get(key)) if p not in parts]
    fw = file_words(item.uri)
    if fw and fw not in parts:
        parts.append(fw)
    return " ".join(parts).strip()


def item_names(item: Item) -> list[str]:
    """The item's *names*: its text and metadata ``title`` / ``name`` values of at most
    :data:`NAME_MAX_WORDS` words, without a trailing parenthesised disambiguator.

    Example:
        >>> item_names(Item("a", Modality.IMAGE, text="Carrie (1976 film)", metadata={"title": "Carrie"}))
        ['Carrie']
        >>> item_names(Item("b", Modality.TEXT, text="A long passage about many things that goes on and on."))
        []
    """
    md = item.metadata or {}
    out: list[str] = []
    for v in [*_values(item.text), *_values(md.get("title")), *_values(md.get("name"))]:
        v = _DISAMBIG.sub("", v).strip()
        if v and len(v.split()) <= NAME_MAX_WORDS and v not in out:
            out.append(v)
    return out


def lexical_dir(uri: str) -> Path | None:
    """Where a store's side index lives (``None``: in memory — in-memory and remote stores)."""
    from .stores import side_dir

    return side_dir(uri, "lexical")


class LexicalIndex:
    """A tantivy BM25 index of a store's items (see the module docstring): one tantivy index per
    modality (``<folder>/text``, ``<folder>/image``), so a search of one modality is a plain
    disjunction over that index, with BM25 statistics (document frequencies, average length)
    of that modality's texts — no modality filter to intersect with every query (2.3 → 1.0 ms
    for the text side at 100K items; benchmarks/search.py --hybrid).

    Args:
        path: index folder (created), or ``None`` for an in-memory index.
        fields: user-named metadata fields indexed besides :data:`DEFAULT_FIELDS`.
    """

    def __init__(self, path: str | Path | None = None, fields: Sequence[str] = ()) -> None:
        tv = _need_tantivy()
        self._tv = tv
        self.path = Path(path) if path is not None else None
        self.fields = [str(f) for f in fields]
        sb = tv.SchemaBuilder()
        sb.add_text_field("id", stored=True, tokenizer_name="raw")
        sb.add_text_field("modality", stored=True, tokenizer_name="raw")
        sb.add_text_field("has_text", stored=False, tokenizer_name="raw")
        sb.add_text_field("body", stored=True, tokenizer_name=TOKENIZER)  # stored: the passages `linked` reads
        sb.add_text_field("name", stored=True, tokenizer_name=TOKENIZER)
        sb.add_integer_field("key", stored=False, indexed=False, fast=True)  # id_key(id): hits' ids without doc()
        self.schema = sb.build()
        self._ix: dict[str, Any] = {}
        if self.path is not None:
            import shutil

            self.path.mkdir(parents=True, exist_ok=True)
            if (self.path / "meta.json").exists():
                # the one-index layout of an older mindgap: derived state, rebuilt from the store (sync)
                shutil.rmtree(self.path)
                self.path.mkdir(parents=True)
            for m in MODALITIES:
                sub = self.path / m.value
                sub.mkdir(exist_ok=True)
                try:
                    self._ix[m.value] = tv.Index(self.schema, path=str(sub), reuse=True)
                except ValueError:
                    # another schema (an older mindgap) or a damaged folder: the index is derived
                    # state, so it is rebuilt from the store (sync) rather than refused
                    shutil.rmtree(sub)
                    sub.mkdir(parents=True)
                    self._ix[m.value] = tv.Index(self.schema, path=str(sub), reuse=True)
        else:
            self._ix = {m.value: tv.Index(self.schema) for m in MODALITIES}
        # the same chain as en_stem, to tell a query without words (no lexical evidence) up front
        self._analyzer = (tv.TextAnalyzerBuilder(tv.Tokenizer.simple()).filter(tv.Filter.remove_long(40))
                          .filter(tv.Filter.lowercase()).filter(tv.Filter.stemmer("english")).build())
        self._counts: dict[str, int] | None = None
        self._lock = threading.RLock()
        self._no_text: set[str] | None = None
        # per modality: key -> id (None: a key two ids share); built by _id_map on first use
        self._by_key: dict[str, dict[int, str | None]] = {}
        for ix in self._ix.values():
            ix.reload()

    def _mods(self, modality: Modality | str | None) -> list[str]:
        return [m.value for m in MODALITIES] if modality is None else [Modality.parse(modality).value]

    # -- writes ------------------------------------------------------------------------
    def _write(self, m: str, fill: Any) -> None:
        w = self._ix[m].writer(heap_size=_HEAP, num_threads=1)
        fill(w)
        w.commit()
        w.wait_merging_threads()
        self._ix[m].reload()
        self._counts = None

    def add(self, items: Iterable[Item]) -> int:
        """Index items (one tantivy commit per modality); an id already indexed is replaced, never doubled."""
        items = list(items)
        if not items:
            return 0
        with self._lock:
            for m in MODALITIES:
                part = [it for it in items if it.modality == m]
                if not part:
                    continue

                def fill(w: Any, part: list[Item] = part) -> None:
                    for it in part:
                        w.delete_documents_by_term("id", it.id)
                        body = item_text(it, self.fields)
                        doc = self._tv.Document(id=it.id, modality=it.modality.value, has_text="1" if body else "0",
                                                body=body, name=item_names(it))
                        doc.add_integer("key", id_key(it.id))
                        w.add_document(doc)
                        if self._no_text is not None:
                            (self._no_text.discard if body else self._no_text.add)(it.id)

                self._write(m.value, fill)
                if m.value in self._by_key:
                    self._map_ids(self._by_key[m.value], (it.id for it in part))
        return len(items)

    @staticmethod
    def _map_ids(table: dict[int, str | None], ids: Iterable[str]) -> None:
        for i in ids:
            key = id_key(i)
            if table.get(key, i) != i:
                table[key] = None  # two ids, one key: resolved from the stored documents
            else:
                table[key] = i

    def _id_map(self, m: str) -> dict[int, str | None]:
        """``key -> id`` of modality ``m``'s documents (one scan of the stored ids on first use)."""
        table = self._by_key.get(m)
        if table is None:
            with self._lock:
                table = self._by_key.get(m)
                if table is None:
                    table = {}
                    self._map_ids(table, self.ids(m))
                    self._by_key[m] = table
        return table

    def _hit_ids(self, m: str, s: Any, addrs: Sequence[Any]) -> list[str]:
        """The ids of hits (their addresses in searcher ``s`` of modality ``m``'s index)."""
        if not addrs:
            return []
        table = self._id_map(m)
        got = [table.get(key) for key in s.fast_field_values("key", list(addrs))]
        return [i if i is not None else s.doc(a)["id"][0] for i, a in zip(got, addrs)]

    def delete(self, ids: Iterable[str]) -> None:
        """Remove ids (one commit per modality index)."""
        ids = [str(i) for i in ids]
        if not ids:
            return
        with self._lock:
            for m in self._mods(None):
                def fill(w: Any) -> None:
                    for i in ids:
                        w.delete_documents_by_term("id", i)

                self._write(m, fill)
                table = self._by_key.get(m)
                if table is not None:
                    for i in ids:
                        key = id_key(i)
                        if table.get(key) == i:
                            del table[key]
            if self._no_text is not None:
                self._no_text.difference_update(ids)

    # -- reads ---------------------------------------------------------------------------
    def count(self, modality: Modality | str | None = None) -> int:
        """Indexed documents (of one modality); cached until the next write of this index."""
        with self._lock:
            if self._counts is None:
                self._counts = {m: int(self._ix[m].searcher().num_docs) for m in self._mods(None)}
            counts = self._counts
        return sum(counts[m] for m in self._mods(modality))

    def ids(self, modality: Modality | str | None = None) -> list[str]:
        """Every indexed id (of one modality)."""
        out: list[str] = []
        for m in self._mods(modality):
            n = self.count(m)
            if n:
                s = self._ix[m].searcher()
                out += [s.doc(a)["id"][0] for _, a in s.search(self._tv.Query.all_query(), n).hits]
        return out

    def no_text_ids(self) -> set[str]:
        """Ids of items that carry no text (their lexical signal is missing)."""
        with self._lock:
            if self._no_text is None:
                got: set[str] = set()
                for m in self._mods(None):
                    s = self._ix[m].searcher()
                    q = self._tv.Query.term_query(self.schema, "has_text", "0")
                    n = int(s.search(q, 1, count=True).count)
                    if n:
                        got |= {s.doc(a)["id"][0] for _, a in s.search(q, n).hits}
                self._no_text = got
            return self._no_text

    def search(self, query: str, k: int = 100, modality: Modality | str | None = None, *,
               with_body: bool | int = False) -> list[Any]:
        """BM25 top ``k`` ``(id, score)`` for a text query, best first (ties by id); only items that match.
        ``with_body``: ``(id, score, indexed text)`` (what :meth:`linked` reads); an ``int`` n gives
        the text of the best n hits only (``None`` for the rest: each text is a stored-document read).
        Without ``modality`` the two modalities' lists are merged by score (each scored within its
        own modality).

        The query is its analysed words (stemmed, lowercase), OR-ed; stop words are dropped when
        other words remain — they match nearly every document, so their posting lists were most of
        a query's cost (text side at 100K items 1.0 → 0.27 ms), for a BM25 weight near zero. No
        query syntax: quotes, ``field:`` or ``+``/``-`` are words like any other."""
        if int(k) < 1:
            raise InputError("k must be >= 1", item="k")
        toks = self._tokens(str(query))
        if not toks:
            return []  # no words: no lexical evidence
        q = self._any_of("body", dict.fromkeys([t for t in toks if t not in _STOP] or toks))
        found: list[tuple[str, float, Any, Any]] = []
        for m in self._mods(modality):
            s = self._ix[m].searcher()
            hits = [(sc, a) for sc, a in s.search(q, int(k), count=False).hits if sc > 0]
            found += [(i, float(sc), a, s) for i, (sc, a) in zip(self._hit_ids(m, s, [a for _, a in hits]), hits)]
        found.sort(key=lambda h: (-h[1], h[0]))
        found = found[: int(k)]
        if with_body is False:
            return [(i, sc) for i, sc, _, _ in found]
        n = len(found) if with_body is True else int(with_body)
        return [(i, sc, (s.doc(a).get_first("body") or "") if j < n else None)
                for j, (i, sc, a, s) in enumerate(found)]

    def _tokens(self, text: str) -> list[str]:
        return list(self._analyzer.analyze(str(text)))

    def _any_of(self, field: str, words: Iterable[str]) -> Any:
        """A query matching documents whose ``field`` holds any of the (analysed) ``words``, BM25-scored."""
        tv = self._tv
        return tv.Query.boolean_query([(tv.Occur.Should, tv.Query.term_query(self.schema, field, w)) for w in words])

    def _body_of(self, iid: str) -> str | None:
        for m in self._mods(None):
            s = self._ix[m].searcher()
            hit = s.search(self._tv.Query.term_query(self.schema, "id", iid), 1).hits
            if hit:
                return s.doc(hit[0][1]).get_first("body") or ""
        return None

    def linked(self, passages: Sequence[tuple[Any, ...]], *, limit: int = 20) -> dict[str, tuple[float, str]]:
        """Items whose name (:func:`item_names`) the ``passages`` mention.

        ``passages``: ``(id, score)`` or ``(id, score, text)`` of indexed items (a query's best BM25
        passages, e.g. :meth:`search` ``with_body=True``; without the text it is read from the index). An item is
        linked when one of its names occurs in a passage as a contiguous phrase of analysed words
        (stemmed, lowercase), the passage itself excluded and names made only of stop words
        skipped. Returns ``{id: (strength, modality)}``, strength = the best score among the
        passages that mention it. At most ``limit`` name candidates per modality are checked (the
        names sharing the most — by BM25 — of the passages' words).
        """
        if not passages:
            return {}
        own = {str(p[0]) for p in passages}
        seqs: list[tuple[str, float]] = []
        words: set[str] = set()
        for pas in passages:
            body = str(pas[2]) if len(pas) > 2 and pas[2] is not None else self._body_of(str(pas[0]))
            if body is None:
                continue
            toks = self._tokens(body)
            if toks:
                seqs.append((" " + " ".join(toks) + " ", float(pas[1])))
                words.update(t for t in toks if t not in _STOP)
        if not words:
            return {}
        q = self._any_of("name", sorted(words))
        out: dict[str, tuple[float, str]] = {}
        for m in self._mods(None):
            s = self._ix[m].searcher()
            addrs = [a for _, a in s.search(q, int(limit), count=False).hits]
            for iid, addr in zip(self._hit_ids(m, s, addrs), addrs):
                if iid in own:
                    continue
                doc = s.doc(addr)
                best = 0.0
                for name in doc["name"]:
                    toks = self._tokens(name)
                    if not toks or all(t in _STOP for t in toks):
                        continue
                    phrase = " " + " ".join(toks) + " "
                    best = max([best] + [sc for seq, sc in seqs if phrase in seq])
                if best > 0:
                    out[iid] = (best, m)
        return out

    # -- keeping in step with the store ----------------------------------------------------
    def in_step(self, store: Any) -> bool:
        """Whether the per-modality counts equal the store's (cheap; :meth:`sync` diffs ids)."""
        return all(self.count(m) == store.count(m) for m in MODALITIES)

    def sync(self, store: Any, *, force: bool = False) -> dict[str, int]:
        """Make the index hold exactly the store's committed items: add the missing, drop the extra.

        Runs a full id diff when the counts differ (or ``force``). Returns ``{"added", "removed"}``.
        """
        with self._lock:
            if not force and self.in_step(store):
                return {"added": 0, "removed": 0}
            have = set(self.ids())
            want: list[str] = []
            for m in MODALITIES:
                if store.count(m):
                    want += store.vectors(m)[0]
            want_set = set(want)
            extra = sorted(have - want_set)
            missing = [i for i in want if i not in have]
            self.delete(extra)
            for s in range(0, len(missing), 4096):
                part = missing[s : s + 4096]
                self.add([it for it in store.get(part) if it is not None])
            return {"added": len(missing), "removed": len(extra)}

    def info(self) -> dict[str, Any]:
        """What the manifest records."""
        import tantivy

        return {"library": LIBRARY, "version": getattr(tantivy, "__version__", "?"), "fields": list(self.fields),
                "default_fields": list(DEFAULT_FIELDS),
                "path": self.path.name if self.path is not None else None}

    def size_bytes(self) -> int:
        if self.path is None:
            return 0
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())


__all__ = ["DEFAULT_FIELDS", "LIBRARY", "LexicalIndex", "NAME_MAX_WORDS", "file_words", "item_names", "item_text",
           "id_key", "lexical_dir"]
