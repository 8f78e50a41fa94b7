"""Hybrid lexical + dense search (issue 15) on real data and real stores.

* an exact-title query returns the image that carries the title first (MMQA images, titled
  with their Wikipedia entity, among passages about the same entities);
* a photo with no text still surfaces for a visual query with hybrid on (Flickr8k);
* the side index follows ingestion, deletes and restarts on every backend;
* a SIGKILL mid-ingest never leaves lexical entries without vectors, and the next open
  brings the two into agreement (slow).
"""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mindgap.errors import InputError
from mindgap.hybrid import DEFAULT_FUSION, parse_rule
from mindgap.lexical import LexicalIndex, item_names, item_text, lexical_dir
from mindgap.retriever import Retriever
from mindgap.types import MODALITIES, Item, Modality

pytest.importorskip("tantivy")

#: MMQA images whose Wikipedia title the tests query by: passages in the store mention each name
TITLED = {"39b35178165c4a5e874d012773193712": "Celine Dion", "ef0079178ab409c6b157c7d080ca7600": "Diana Ross",
          "e8b7721210938b667952f0a4454734b3": "Asha Bhosle"}
#: an image whose title is also a passage's title (both are "the" Santa Anita Park)
SAME_TITLE = ("117d500aaa630023c4038b8268b309c0", "Santa Anita Park")
NAMES = [*TITLED.values(), SAME_TITLE[1]]


def _mmqa_items(mmqa_dir: Path, n_img: int = 16, n_txt: int = 40) -> list[Item]:
    recs = [json.loads(line) for line in (mmqa_dir / "captions.jsonl").read_text().splitlines()]
    special = {*TITLED, SAME_TITLE[0]}
    want = [r for r in recs if r["image_id"] in special] + [r for r in recs if r["image_id"] not in special][:n_img]
    items = [Item(id=r["image_id"], modality=Modality.IMAGE, uri=str(mmqa_dir / r["image"]), text=r["title"],
                  metadata={"title": r["title"]}) for r in want]
    with gzip.open(mmqa_dir / "subset_dev100/MMQA_texts_n100.jsonl.gz", "rt") as fh:
        texts = [json.loads(line) for line in fh]
    same = [t for t in texts if any(w in t["title"] or w in t["text"] for w in NAMES)]
    pick = same + [t for t in texts if t not in same][: n_txt - len(same)]
    items += [Item(id=t["id"], modality=Modality.TEXT, text=f"{t['title']}. {t['text']}", metadata={"title": t["title"]})
              for t in pick]
    return items


@pytest.fixture(scope="module")
def mmqa_store(tmp_path_factory, mmqa_dir, offline_encoder) -> str:
    uri = f"exact:{tmp_path_factory.mktemp('hyb') / 'mmqa'}"
    with Retriever(uri, encoder=offline_encoder) as r:
        r.enable_lexical()  # what `mindgap index --lexical` does: the side index on disk, in step
        rep = r.index(_mmqa_items(mmqa_dir), progress=False, batch_size=32)
        assert not rep.skipped
        from mindgap.gap.auto import fit_auto

        fit_auto(r)
    return uri


def _tree(d: Path) -> dict[str, bytes]:
    return {str(f.relative_to(d)): f.read_bytes() for f in sorted(d.rglob("*")) if f.is_file()}


def test_hybrid_search_is_a_read(tmp_path, mmqa_dir, offline_encoder) -> None:
    """A store indexed without --lexical: a hybrid search answers from a transient in-memory index
    and writes nothing into the store (no lexical/ folder, manifest unchanged)."""
    d = tmp_path / "plain"
    with Retriever(f"exact:{d}", encoder=offline_encoder) as r:
        r.index(_mmqa_items(mmqa_dir, n_img=4, n_txt=10), progress=False)
        from mindgap.gap.auto import fit_auto

        fit_auto(r)  # as `mindgap index` does
    before = _tree(d)
    with Retriever(f"exact:{d}", encoder=offline_encoder) as r:
        hits = r.search("Diana Ross", k=3, hybrid=True)
        assert hits[0].id == "ef0079178ab409c6b157c7d080ca7600"
        assert r.lexical_index().path is None
    assert _tree(d) == before and not (d / "lexical").exists()


def test_default_fusion_is_fitted() -> None:
    # the out-of-the-box weights come from a committed fit (docs/results/hybrid/results.json)
    assert DEFAULT_FUSION is not None and DEFAULT_FUSION["coef"]["image"][1] != 0
    committed = json.loads((Path(__file__).parents[1] / "docs/results/hybrid/results.json").read_text())
    fit = committed["default_fusion"]
    for key in ("coef", "intercept", "no_text"):
        assert DEFAULT_FUSION[key] == fit[key], key


@pytest.mark.parametrize("image_id", sorted(TITLED))
def test_exact_title_returns_that_image_first(mmqa_store, offline_encoder, image_id) -> None:
    title = TITLED[image_id]
    with Retriever(mmqa_store, encoder=offline_encoder) as r:
        texts_about_it = [h for h in r.search(title, k=50, hybrid="lexical") if h.modality == Modality.TEXT]
        assert texts_about_it, "the store must hold passages sharing the title's words"
        hits = r.search(title, k=5, hybrid=True)
        assert hits[0].id == image_id and hits[0].modality == Modality.IMAGE, [(h.id, h.text) for h in hits]


def test_same_title_image_and_passage_both_on_top(mmqa_store, offline_encoder) -> None:
    # a passage titled exactly like the image is as much "the" answer: both lead, dense evidence orders them
    image_id, title = SAME_TITLE
    with Retriever(mmqa_store, encoder=offline_encoder) as r:
        hits = r.search(title, k=5, hybrid=True)
        assert image_id in [h.id for h in hits[:2]], [(h.id, h.text) for h in hits]
        assert all((h.text or "").startswith(title) for h in hits[:2])
        assert image_id not in [h.id for h in r.search(title, k=5)]


def test_batch_threads_and_in_line_give_the_same_hits(mmqa_store, offline_encoder, monkeypatch) -> None:
    """The BM25 side runs in line, on one worker thread or split over the pool (a batch); every way
    gives the same hits for the same queries."""
    import mindgap.hybrid as hyb

    queries = [*NAMES, "the venue of the Shorty Awards", "who sang in the film", "a horse race at a park",
               "the logo of the racetrack", "songs of a singer born in 1929", "an album cover", "a theater in New York",
               "a Canadian singer", "Motown records", "Bollywood playback", "the Kentucky Derby", "a concert stage",
               "the 1976 film"]
    with Retriever(mmqa_store, encoder=offline_encoder) as r:
        key = lambda hits: [[(h.id, h.score, h.rank, h.modality_rank) for h in hs] for hs in hits]
        batch = key(r.search_many(queries, k=8, hybrid=True))  # 17 queries: split over the 2 workers
        monkeypatch.setattr(hyb, "_spare_core", lambda: False)
        in_line = key([[*r.search(t, k=8, hybrid=True)] for t in queries])
        monkeypatch.setattr(hyb, "_spare_core", lambda: True)
        threaded = key([[*r.search(t, k=8, hybrid=True)] for t in queries])
    assert in_line == threaded  # the same arithmetic, wherever BM25 ran
    # a batch encodes and scans as matrices: the same hits, scores equal to float32 rounding
    assert [[h[:1] + h[2:] for h in hs] for hs in batch] == [[h[:1] + h[2:] for h in hs] for hs in in_line]
    assert np.allclose([h[1] for hs in batch for h in hs], [h[1] for hs in in_line for h in hs], rtol=1e-5, atol=1e-7)
    assert any(h[0] in TITLED for hs in batch for h in hs)  # the queries reach the titled images


def test_delete_removes_from_both_and_survives_restart(mmqa_store, offline_encoder, tmp_path) -> None:
    import shutil

    src = Path(mmqa_store.split(":", 1)[1])
    uri = f"exact:{tmp_path / 'copy'}"
    shutil.copytree(src, tmp_path / "copy")
    gone = SAME_TITLE[0]
    with Retriever(uri, encoder=offline_encoder) as r:
        assert gone in r.lexical_index().ids()
        assert r.delete([gone]) == 1
        assert not r.store.has([gone]) and gone not in r.lexical_index(sync=False).ids()
        assert gone not in [h.id for h in r.search("Santa Anita Park", k=20, hybrid=True)]
    with Retriever(uri, encoder=offline_encoder) as r:  # a restart: the side index is on disk, in step
        assert r.manifest.lexical["library"] == "tantivy"
        lex = LexicalIndex(lexical_dir(uri))
        assert sorted(lex.ids()) == sorted(i for m in MODALITIES for i in r.store.vectors(m)[0])
        assert gone not in [h.id for h in r.search("Santa Anita Park", k=20, hybrid=True)]


def test_photo_without_text_still_surfaces(tmp_path, flickr_test, offline_encoder) -> None:
    photos, passages = flickr_test[:24], flickr_test[24:60]
    items = [Item(f"img:{x.image_id}", Modality.IMAGE, uri=str(x.path)) for x in photos]
    items += [Item(f"txt:{x.image_id}", Modality.TEXT, text=x.captions[0]) for x in passages]
    with Retriever(f"exact:{tmp_path / 'f'}", encoder=offline_encoder) as r:
        r.index(items, progress=False, batch_size=32)
        from mindgap.gap.auto import fit_auto

        fit_auto(r)
        assert r.lexical_index().no_text_ids() == {it.id for it in items[:24]}  # their signal is missing
        # a photo dense finds in its top 5 is never buried under passages by hybrid (still in the top 10),
        # and nearly all stay in the top 5 (one may swap places with a passage at the edge)
        kept = found = buried = 0
        for x in photos:
            q = x.captions[1]
            dense = [h.id for h in r.search(q, k=5)]
            hyb = [h.id for h in r.search(q, k=10, hybrid=True)]
            if f"img:{x.image_id}" in dense:
                found += 1
                kept += f"img:{x.image_id}" in hyb[:5]
                buried += f"img:{x.image_id}" not in hyb
        assert kept >= 5 and kept >= 0.9 * found and buried == 0, (kept, found, buried)


def test_item_text_and_rules() -> None:
    it = Item("a", Modality.IMAGE, uri="/p/IMG_0042.jpg", text=None, metadata={"alt": "red kite", "credit": "Bo"})
    assert item_text(it) == "red kite"
    assert item_text(it, ["credit"]) == "red kite Bo"
    assert item_text(Item("b", Modality.IMAGE, uri="/p/4f7d7ce270.jpg")) == ""
    assert parse_rule(True) == "calibrated" and parse_rule(False) is None and parse_rule("rrf") == "rrf"
    with pytest.raises(InputError) as e:
        parse_rule("bm42")
    assert e.value.item == "hybrid"


def test_linked_names_second_hop() -> None:
    """An item whose name a query's best passage mentions is linked (the passage itself is not;
    a name of stop words only is not; a trailing disambiguator is dropped), with that passage's score."""
    items = [Item("img:pst", Modality.IMAGE, uri="/p/a1b2c3.jpg", text="PlayStation Theater"),
             Item("img:carrie", Modality.IMAGE, text="Carrie (1976 film)"),
             Item("img:the", Modality.IMAGE, text="The"),
             Item("img:other", Modality.IMAGE, text="Theater Royal"),
             Item("img:bare", Modality.IMAGE, uri="/p/4f7d7ce270.jpg"),
             Item("txt:shorty", Modality.TEXT, text="Shorty Awards. The 11th Shorty Awards were held at the "
                                                   "PlayStation Theater in New York City; Carrie hosted."),
             Item("txt:else", Modality.TEXT, text="An unrelated passage about the royal family and the weather.")]
    assert item_names(items[1]) == ["Carrie"] and item_names(items[4]) == []
    assert item_names(items[5]) == []  # a passage is too long to be a name
    lex = LexicalIndex()
    lex.add(items)
    top = lex.search("the venue of the 11th Shorty Awards", 5, Modality.TEXT)
    assert top[0][0] == "txt:shorty"
    got = lex.linked(top)
    assert set(got) == {"img:pst", "img:carrie"}, got  # not "The", not "Theater Royal" (no phrase), no self
    assert got["img:pst"] == (top[0][1], "image")
    assert lex.linked([]) == {} and lex.linked([("no-such-id", 3.0)]) == {}


def test_side_index_of_an_older_schema_is_rebuilt(tmp_path) -> None:
    """A side index written by an older mindgap (body not stored, no name field) is derived state:
    opening it starts a fresh index, which the store's sync then fills."""
    import tantivy as tv

    sb = tv.SchemaBuilder()
    sb.add_text_field("id", stored=True, tokenizer_name="raw")
    sb.add_text_field("body", stored=False, tokenizer_name="en_stem")
    (tmp_path / "lexical").mkdir()
    old = tv.Index(sb.build(), path=str(tmp_path / "lexical"), reuse=True)
    w = old.writer(50_000_000, 1)
    w.add_document(tv.Document(id="x", body="old words"))
    w.commit()
    del w, old
    lex = LexicalIndex(tmp_path / "lexical")
    assert lex.count() == 0
    lex.add([Item("img", Modality.IMAGE, text="Santa Anita Park"),
             Item("txt", Modality.TEXT, text="A.P. Warrior raced in the Santa Anita Derby at Santa Anita Park.")])
    assert set(lex.linked(lex.search("A.P. Warrior", 5, Modality.TEXT, with_body=True))) == {"img"}


def test_hit_ids_come_from_the_key_column_and_stay_right(tmp_path, monkeypatch) -> None:
    """Search hits get their ids from the ``key`` fast field through an in-memory table; the table
    follows adds, replacements and deletes, a document another writer added is still named right
    (read from the store of documents), and ids that share a key (forced here) are never confused."""
    import mindgap.lexical as lexmod

    def docs(n: int, tag: str) -> list[Item]:
        return [Item(f"{tag}{i}", Modality.TEXT, text=f"harbour crane number {i} {tag}") for i in range(n)]

    lex = LexicalIndex(tmp_path / "lex")
    lex.add(docs(30, "a"))
    want = {f"a{i}" for i in range(30)}
    assert {h[0] for h in lex.search("harbour crane", 100)} == want
    lex.delete(["a3"])
    lex.add([Item("a4", Modality.TEXT, text="a lighthouse instead")])  # replaced: same id, new text
    got = lex.search("harbour crane", 100)
    assert {h[0] for h in got} == want - {"a3", "a4"} and lex.search("lighthouse", 5)[0][0] == "a4"
    # another writer on the same folder (as another process would be): its documents are not in this
    # instance's table, and are still named by their stored id
    other = LexicalIndex(tmp_path / "lex")
    other.add(docs(5, "b"))
    for ix in lex._ix.values():
        ix.reload()
    assert {h[0] for h in lex.search("harbour crane", 100)} == (want - {"a3", "a4"}) | {f"b{i}" for i in range(5)}
    # every id on one key: the table cannot tell them apart, so the stored ids decide
    monkeypatch.setattr(lexmod, "id_key", lambda iid: 7)
    clash = LexicalIndex()
    clash.add(docs(12, "c"))
    hits = clash.search("harbour crane 5", 12, with_body=2)
    assert hits[0][0] == "c5" and {h[0] for h in hits} == {f"c{i}" for i in range(12)}
    assert hits[0][2] == "harbour crane number 5 c" and hits[2][2] is None  # text of the best 2 only


def test_side_index_without_the_key_column_is_rebuilt(tmp_path) -> None:
    """A per-modality side index of the previous schema (no ``key`` column) is rebuilt when opened,
    then filled by the store's sync."""
    import tantivy as tv

    sb = tv.SchemaBuilder()
    for f, tok in (("id", "raw"), ("modality", "raw"), ("has_text", "raw"), ("body", "en_stem"), ("name", "en_stem")):
        sb.add_text_field(f, stored=f != "has_text", tokenizer_name=tok)
    (tmp_path / "lexical" / "text").mkdir(parents=True)
    old = tv.Index(sb.build(), path=str(tmp_path / "lexical" / "text"), reuse=True)
    w = old.writer(50_000_000, 1)
    w.add_document(tv.Document(id="x", modality="text", has_text="1", body="old words", name=[]))
    w.commit()
    del w, old
    lex = LexicalIndex(tmp_path / "lexical")
    assert lex.count() == 0
    lex.add([Item("t", Modality.TEXT, text="old words again")])
    assert lex.search("old words", 5) == [("t", pytest.approx(lex.search("old words", 5)[0][1]))]


def test_hybrid_reaches_an_image_through_the_passage_that_names_it(mmqa_dir, offline_encoder, tmp_path) -> None:
    """A real MMQA dev question that never names its gold image's title ("PlayStation Theater"):
    the hybrid search finds it through the passage about the Shorty Awards (linked evidence);
    BM25 + dense alone (the same fusion without the linked feature) ranks it lower."""
    from mindgap.hybrid import FusionModel, fuse, gather, rank_hits

    recs = [json.loads(line) for line in (mmqa_dir / "captions.jsonl").read_text().splitlines()]
    gold = "4c844c3471073fa8895306cd677cde01"
    recs = [x for x in recs if x["image_id"] == gold] + [x for x in recs if x["image_id"] != gold][:40]
    items = [Item(id=x["image_id"], modality=Modality.IMAGE, uri=str(mmqa_dir / x["image"]), text=x["title"])
             for x in recs]
    with gzip.open(mmqa_dir / "subset_dev100/MMQA_texts_n100.jsonl.gz", "rt") as fh:
        texts = [json.loads(line) for line in fh]
    # the passages that mention the awards or the venue, and 150 others
    about = [t for t in texts if "Shorty" in t["text"] or "PlayStation" in t["text"]]
    items += [Item(id=t["id"], modality=Modality.TEXT, text=f"{t['title']}. {t['text']}")
              for t in about + [t for t in texts if t not in about][:150]]
    q = "The venue where the 11th annual Shorty Awards was held has how many faces on its billboard?"
    with Retriever(f"exact:{tmp_path / 'mm'}", encoder=offline_encoder) as r:
        r.index(items, progress=False, batch_size=64)
        from mindgap.gap.auto import fit_auto

        fit_auto(r)
        assert any(h.id == gold for h in r.search(q, k=10, hybrid=True)), "linked evidence should reach the image"
        corr, name = r.gap(r.gap_name(None)), r.gap_name(None)
        qv = r.encoder.encode_text([q])
        (c,) = gather(r, qv, Modality.TEXT, [q], gap_name=name, corr=corr, depth=20, mods=list(MODALITIES))
        assert c.link is not None and c.link[c.ids.index(gold)] > 0
        (c0,) = gather(r, qv, Modality.TEXT, [q], gap_name=name, corr=corr, depth=20, mods=list(MODALITIES),
                       link=False)
        no_link = FusionModel.from_dict({**DEFAULT_FUSION, "coef": {m: v[:3] for m, v in DEFAULT_FUSION["coef"].items()}})
        top0 = [h.id for h in rank_hits(c0, fuse(c0, "calibrated", no_link, coverage=corr.coverage)[0], 50)]
        top1 = [h.id for h in rank_hits(c, fuse(c, "calibrated", r.fusion_model(), coverage=corr.coverage)[0], 50)]
        assert gold in top1[:3] and (gold not in top0 or top0.index(gold) > top1.index(gold)), (top0, top1)


@pytest.mark.parametrize("backend", ["exact", "lancedb", "faiss",
                                     pytest.param("qdrant", marks=pytest.mark.slow),
                                     pytest.param("milvus", marks=pytest.mark.slow)])
def test_side_index_beside_every_backend(backend, tmp_path, offline_encoder) -> None:
    if backend != "exact":
        pytest.importorskip({"milvus": "milvus_lite", "qdrant": "qdrant_client"}.get(backend, backend))
    uri = {"milvus": f"milvus:{tmp_path}/kb.db"}.get(backend, f"{backend}:{tmp_path / 'kb'}")
    rng = np.random.default_rng(0)
    words = ["harbour crane", "red kite", "glacier lake", "tram depot", "olive grove", "salt marsh"]
    items = [Item(f"t{i}", Modality.TEXT, text=f"a note about the {w}") for i, w in enumerate(words)]
    items += [Item(f"i{i}", Modality.IMAGE, uri=f"/x/{w.replace(' ', '_')}.jpg") for i, w in enumerate(words)]
    items.append(Item("blank", Modality.IMAGE, uri="/x/00af31.jpg"))
    v = rng.normal(size=(len(items), offline_encoder.dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    with Retriever(uri, encoder=offline_encoder) as r:
        r.enable_lexical()
        r.add_embedded(items, v)
        assert r.lexical_index(sync=False).count() == len(items)
        assert r.delete(["i2"]) == 1
    with Retriever(uri, encoder=offline_encoder) as r:
        lex = r.lexical_index(sync=False)
        assert lex.count() == r.store.count() == len(items) - 1
        assert [i for i, _ in lex.search("glacier lake", 5)] == ["t2"]
        assert [i for i, _ in lex.search("olive grove", 5, Modality.IMAGE)] == ["i4"]
        assert lex.no_text_ids() == {"blank"}
    assert lexical_dir(uri) is not None and lexical_dir(uri).is_dir()


# -- crash safety (slow): SIGKILL a real `mindgap index --lexical` midway -------------------------------
@pytest.mark.slow
def test_sigkill_mid_ingest_lexical_agrees(tmp_path, flickr_test, offline_encoder) -> None:
    from test_ingest_kill import B, kill_midway

    src = tmp_path / "kb.jsonl"
    ids = []
    with src.open("w") as fh:
        for x in flickr_test[:60]:
            for rec in ({"id": f"img:{x.image_id}", "image": str(x.path), "caption": x.captions[0]},
                        {"id": f"txt:{x.image_id}", "text": x.captions[1]}):
                fh.write(json.dumps(rec) + "\n")
                ids.append(rec["id"])
    uri = f"exact:{tmp_path / 'store'}"
    # the CLI with --lexical: the kill helper runs `mindgap index SRC --store URI --batch-size B`
    import test_ingest_kill as tik

    old = tik.CLI
    tik.CLI = ("import sys; from mindgap.cli import main; "
               "sys.exit(main(sys.argv[1:] + ['--lexical', '--no-auto-gap']))")
    try:
        kill_midway(src, uri, at_least=3 * B)
    finally:
        tik.CLI = old
    from mindgap.stores import open_store

    st = open_store(uri)
    stored = {i for m in MODALITIES for i in st.vectors(m)[0]}
    st.close()
    raw = set(LexicalIndex(lexical_dir(uri)).ids())  # as the kill left it, before any repair
    assert raw <= stored, sorted(raw - stored)  # never a lexical entry without its vectors
    assert len(stored - raw) <= B  # at most the one batch committed between the two commits
    with Retriever(uri, encoder=offline_encoder) as r:  # opening brings them into agreement
        assert set(r.lexical_index().ids()) == stored
    rc = subprocess.run([*tik.sys.executable.split(), "-c", tik.CLI, "index", str(src), "--store", uri,
                         "--batch-size", str(B), "--no-progress", "--lexical"], cwd=tmp_path).returncode
    assert rc == 0
    with Retriever(uri, encoder=offline_encoder) as r:
        assert r.store.count() == len(ids)
        assert set(LexicalIndex(lexical_dir(uri)).ids()) == set(ids)  # in step without a repair


def test_server_search_hybrid_field_and_web_toggle(mmqa_store, offline_encoder) -> None:
    pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    from mindgap.server import create_app, serve_in_thread

    app = create_app(mmqa_store, encoder=offline_encoder, generator="extractive")
    with serve_in_thread(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        spec = c.get("/openapi.json").json()
        names = [p["name"] for p in spec["paths"]["/search"]["get"]["parameters"]]
        assert "hybrid" in names  # in the request schema, so in OpenAPI
        q = "Santa Anita Park"
        d = c.get("/search", params={"query": q, "k": 5, "hybrid": "true"}).json()
        assert d["hybrid"] is True
        ref = Retriever(mmqa_store, encoder=offline_encoder).search(q, k=5, hybrid=True)
        assert [h["id"] for h in d["hits"]] == [h.id for h in ref]
        assert c.get("/search", params={"query": q, "k": 5}).json()["hybrid"] is False
        bad = c.get("/search", params={"query": q, "hybrid": "maybe"})
        assert bad.status_code == 422 and "hybrid" in bad.text
        page = c.get("/").text
        assert 'id="hybrid"' in page


def test_cli_search_hybrid(mmqa_store, offline_encoder, capsys) -> None:
    from mindgap.cli import main
    from mindgap.cli import index as cli_index

    cli_index._ENCODERS[offline_encoder.name] = offline_encoder
    assert main(["search", mmqa_store, "Diana Ross", "--hybrid", "-k", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hybrid"] == "calibrated" and out["hits"][0]["id"] == "ef0079178ab409c6b157c7d080ca7600"
    assert main(["search", mmqa_store, "Diana Ross", "--hybrid", "--fusion", "bm42"]) != 0
    assert "hybrid" in capsys.readouterr().err


def test_cli_fit_hybrid_records_weights_and_reset(mmqa_store, mmqa_dir, offline_encoder, tmp_path, capsys) -> None:
    """`mindgap fit-hybrid STORE --pairs F` fits the store's fusion weights on labelled text queries and
    records them in the manifest (searches then use them); a gold outside the store is an error naming
    the line; `--reset` brings the built-in weights back."""
    from mindgap.cli import main
    from mindgap.cli import index as cli_index

    cli_index._ENCODERS[offline_encoder.name] = offline_encoder
    pas = [it for it in _mmqa_items(mmqa_dir) if it.modality == Modality.TEXT][:6]
    pairs = [{"query": title, "gold_id": iid} for iid, title in [*TITLED.items(), SAME_TITLE]]
    pairs += [{"query": it.metadata["title"], "gold_id": it.id} for it in pas]
    f = tmp_path / "pairs.jsonl"
    f.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    try:
        assert main(["fit-hybrid", mmqa_store, "--pairs", str(f), "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["queries"] == len({p["query"] for p in pairs}) and out["fusion"]["positives"]["image"] >= 3
        with Retriever(mmqa_store, encoder=offline_encoder) as r:
            assert "pairs.jsonl" in r.fusion_model().fitted_on
            assert r.search("Diana Ross", k=3, hybrid=True)[0].id == "ef0079178ab409c6b157c7d080ca7600"
        bad = tmp_path / "bad.jsonl"
        bad.write_text(json.dumps({"query": "x", "gold_id": "no-such-item"}) + "\n")
        assert main(["fit-hybrid", mmqa_store, "--pairs", str(bad)]) != 0
        err = capsys.readouterr().err
        assert "line 1" in err and "no-such-item" in err
    finally:
        assert main(["fit-hybrid", mmqa_store, "--reset"]) == 0
    with Retriever(mmqa_store, encoder=offline_encoder) as r:
        assert r.fusion_model().fitted_on == DEFAULT_FUSION["fitted_on"]


def test_hybrid_hits_report_raw_cosines_under_the_hub_term(mmqa_store, offline_encoder) -> None:
    """auto (calibrated) ranks cosine − a per-item hubness term; a hit still reports q · v."""
    with Retriever(mmqa_store, encoder=offline_encoder) as r:
        assert r.gap("auto").adjusts_items
        for text in (NAMES[0], "a horse race at a park"):
            q = r.encoder.encode_text([text], show_progress=False)[0]
            for hybrid in (True, False):
                hits = r.search(text, k=8, hybrid=hybrid)
                assert hits
                for m in (Modality.TEXT, Modality.IMAGE):
                    mh = [h for h in hits if h.modality == m]
                    _, v = r.store.vectors(m, [h.id for h in mh])
                    np.testing.assert_allclose([h.cosine for h in mh], v @ q if len(mh) else [], atol=1e-5)
