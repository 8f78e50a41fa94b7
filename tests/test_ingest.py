"""Ingestion: sources → items (ids, metadata, skips with reasons) and the indexing pipeline.

Real data: Flickr8k images and captions copied into tmp folders, the MMQA dev slice, and
the real offline encoder for what gets embedded.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mindgap.errors import InputError
from mindgap.ingest import count_source, detect_kind, iter_source, resolve_source
from mindgap.retriever import Retriever
from mindgap.types import Item, Modality


def split(entries):
    items = [e for e in entries if isinstance(e, Item)]
    skips = {s: r for s, r in (e for e in entries if isinstance(e, tuple))}
    return items, skips


@pytest.fixture()
def mixed_folder(tmp_path: Path, flickr_test) -> Path:
    """4 real images + 3 real caption texts, and one of every kind of bad entry."""
    root = tmp_path / "kb"
    (root / "sub").mkdir(parents=True)
    recs = flickr_test[:5]
    for r in recs[:4]:
        shutil.copyfile(r.path, root / r.path.name)
    (root / "dog.txt").write_text(recs[0].captions[0] + " " + recs[0].captions[1], encoding="utf-8")
    (root / "sub" / "beach.md").write_text("# Notes\n\n" + recs[1].captions[0], encoding="utf-8")
    data = recs[4].path.read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (root / "notimage.png").write_bytes(b"this is not a png at all")
    (root / "empty.txt").write_bytes(b"")
    (root / "blank.md").write_text("  \n\t\n", encoding="utf-8")
    (root / "latin1.txt").write_bytes("café crème".encode("latin-1"))
    (root / "table.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (root / ".hidden.txt").write_text("hidden", encoding="utf-8")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("a secret passage from elsewhere", encoding="utf-8")
    (root / "escape.txt").symlink_to(outside / "secret.txt")
    (root / "escape_dir").symlink_to(outside, target_is_directory=True)
    (root / "broken.txt").symlink_to(root / "missing.txt")
    (root / "alias.txt").symlink_to(root / "dog.txt")  # inside the folder: allowed
    os.mkfifo(root / "pipe.txt")
    return root


EXPECTED_SKIPS = {
    "empty.txt": "empty file",
    "blank.md": "only whitespace",
    "latin1.txt": "not valid UTF-8",
    "table.csv": "extension '.csv'",
    "escape.txt": "outside the folder",
    "escape_dir": "outside the folder",
    "broken.txt": "broken symlink",
    "pipe.txt": "not a regular file",
}


def test_folder_items_ids_metadata_and_skips(mixed_folder: Path, flickr_test) -> None:
    entries = list(iter_source(mixed_folder))
    items, skips = split(entries)
    ids = {it.id for it in items}
    imgs = {r.path.name for r in flickr_test[:4]}
    assert ids == imgs | {"dog.txt", "sub/beach.md", "alias.txt", "truncated.jpg", "notimage.png"}
    for name, why in EXPECTED_SKIPS.items():
        assert why in skips[name], (name, skips[name])
    assert "latin1.txt" in skips["latin1.txt"] or "0xe9" in skips["latin1.txt"]
    assert ".hidden.txt" not in ids and ".hidden.txt" not in skips
    assert len(entries) == count_source(mixed_folder) == len(items) + len(skips)
    by = {it.id: it for it in items}
    img = by[flickr_test[0].path.name]
    assert img.modality == Modality.IMAGE and Path(img.uri).is_absolute() and Path(img.uri).is_file()
    assert img.metadata == {"path": img.id, "size": flickr_test[0].path.stat().st_size}
    assert by["sub/beach.md"].modality == Modality.TEXT
    assert flickr_test[1].captions[0] in by["sub/beach.md"].text
    assert by["alias.txt"].text == by["dog.txt"].text
    assert "secret" not in " ".join(it.text or "" for it in items)  # nothing leaked through the symlinks
    assert detect_kind(mixed_folder) == "folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "locked.txt").write_text("private", encoding="utf-8")
    os.chmod(tmp_path / "locked.txt", 0)
    _, skips = split(list(iter_source(tmp_path)))
    assert "permission denied" in skips["locked.txt"]


def test_folder_index_skips_bad_and_loses_nothing(mixed_folder: Path, offline_encoder, flickr_test, tmp_path) -> None:
    r = Retriever(f"exact:{tmp_path / 'store'}", encoder=offline_encoder)
    rep = r.index_source(mixed_folder, batch_size=4, progress=False)
    imgs = [x.path.name for x in flickr_test[:4]]
    assert rep.added == {"text": 3, "image": 4}
    skipped = dict(rep.skipped)
    assert "corrupt or truncated" in skipped["truncated.jpg"] and "truncated.jpg" in skipped["truncated.jpg"]
    assert "not an image" in skipped["notimage.png"]
    assert set(EXPECTED_SKIPS) | {"truncated.jpg", "notimage.png"} == set(skipped)
    assert r.store.count() == 7 and r.store.has(imgs + ["dog.txt", "sub/beach.md", "alias.txt"]) == set(
        imgs + ["dog.txt", "sub/beach.md", "alias.txt"])
    # what was stored is exactly what the encoder gives for each item on its own
    got, mat = r.store.vectors(Modality.IMAGE, imgs)
    want = offline_encoder.encode_image([str(mixed_folder / i) for i in got], show_progress=False)
    np.testing.assert_allclose(mat, want, atol=1e-5)
    assert r.store.get(["dog.txt"])[0].metadata["path"] == "dog.txt"
    assert r.manifest.sources == [f"folder:{mixed_folder.resolve()}"]
    # re-indexing the same source adds nothing twice
    again = r.index_source(mixed_folder, batch_size=4, progress=False)
    assert again.added == {"text": 0, "image": 0} and again.already_present == 7
    assert again.present == {"text": 3, "image": 4} and r.store.count() == 7
    # a different source needs append
    other = tmp_path / "other"
    other.mkdir()
    (other / "note.txt").write_text(flickr_test[5].captions[0], encoding="utf-8")
    with pytest.raises(InputError, match="--append"):
        r.index_source(other, progress=False)
    assert r.index_source(other, append=True, progress=False).added == {"text": 1, "image": 0}
    assert r.store.count() == 8


def test_decode_threads_do_not_change_the_store(tmp_path, offline_encoder, flickr_test) -> None:
    """1 decode thread without prefetch vs 3 threads two batches ahead: identical stores."""
    src = tmp_path / "imgs"
    src.mkdir()
    for x in flickr_test[10:18]:
        shutil.copyfile(x.path, src / x.path.name)
    (src / "cap.txt").write_text(flickr_test[10].captions[0], encoding="utf-8")
    stores = []
    for workers, prefetch in ((1, 0), (3, 2)):
        r = Retriever("exact:", encoder=offline_encoder)
        rep = r.index(iter_source(src), batch_size=3, progress=False, workers=workers, prefetch=prefetch)
        assert rep.added == {"text": 1, "image": 8} and not rep.skipped
        stores.append(r.store)
    for m in Modality:
        a_ids, a = stores[0].vectors(m)
        b_ids, b = stores[1].vectors(m)
        assert a_ids == b_ids
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_text_mode_sentences_vs_truncate(offline_encoder) -> None:
    long = ("A man rides a bike down a hill. Two dogs play in the snow near a red fence. "
            "A child in a yellow shirt jumps into a swimming pool. An old woman sells flowers at a market.")
    items = [Item("p", Modality.TEXT, text=long.strip())]
    vs = {}
    for mode in ("sentences", "truncate"):
        r = Retriever("exact:", encoder=offline_encoder, text_mode=mode)
        r.index(items, progress=False)
        vs[mode] = r.store.vectors(Modality.TEXT, ["p"])[1][0]
    np.testing.assert_allclose(vs["truncate"], offline_encoder.encode_text([long.strip()], show_progress=False)[0],
                               atol=1e-5)
    assert float(vs["sentences"] @ vs["truncate"]) < 0.999  # the mean of 4 distinct sentences is not the prefix


# -- JSONL --------------------------------------------------------------------------------
def test_jsonl_records_metadata_and_line_errors(tmp_path: Path, flickr_test) -> None:
    img = flickr_test[0].path
    (tmp_path / "pics").mkdir()
    shutil.copyfile(img, tmp_path / "pics" / "a.jpg")
    lines = [
        json.dumps({"id": "t1", "text": flickr_test[0].captions[0], "source": "flickr", "year": 2013}),
        json.dumps({"id": 7, "image": "pics/a.jpg", "caption": "a caption", "metadata": {"license": "research"}}),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"text": "no id here"}),
        json.dumps({"id": "both", "text": "x", "image": "pics/a.jpg"}),
        json.dumps({"id": "neither", "title": "nothing to index"}),
        json.dumps({"id": "blank", "text": "   "}),
        json.dumps({"id": "t1", "text": "same id again"}),
        json.dumps({"id": "gone", "image": "pics/missing.jpg"}),
        json.dumps({"id": "wrongmod", "text": "x", "modality": "image"}),
        "",
        json.dumps({"id": "abs", "image": str(img)}),
    ]
    f = tmp_path / "kb.jsonl"
    f.write_bytes(("\n".join(lines) + "\n").encode() + b'{"id": "bad\xff", "text": "x"}\n')
    assert detect_kind(f) == "jsonl"
    entries = list(iter_source(f))
    items, skips = split(entries)
    assert [it.id for it in items] == ["t1", "7", "abs"]
    t1, seven, ab = items
    assert t1.metadata == {"source": "flickr", "year": 2013}
    assert seven.modality == Modality.IMAGE and seven.uri == str((tmp_path / "pics" / "a.jpg").resolve())
    assert seven.text == "a caption" and seven.metadata == {"caption": "a caption", "license": "research"}
    assert ab.uri == str(img.resolve())
    want = {3: "not valid JSON", 4: "expected a JSON object", 5: "missing or empty 'id'",
            6: "both 'text' and 'image'", 7: "neither 'text' nor 'image'", 8: "empty text",
            9: "duplicate id 't1' (first on line 1)", 10: "not found", 11: "modality", 14: "not valid UTF-8"}
    assert set(skips) == {f"kb.jsonl:{n}" for n in want}
    for n, why in want.items():
        reason = skips[f"kb.jsonl:{n}"]
        assert reason.startswith(f"line {n}: ") and why in reason, (n, reason)
    assert count_source(f) == len(entries) == 13
    # gzip works the same
    gz = tmp_path / "kb.jsonl.gz"
    gz.write_bytes(gzip.compress(f.read_bytes()))
    assert [it.id for it in split(list(iter_source(gz)))[0]] == ["t1", "7", "abs"]


# -- MMQA and image–caption folders ------------------------------------------------------
def test_mmqa_counts_ids_metadata(mmqa_dir: Path) -> None:
    from mindgap.eval.benchmarks import build_mmqa_benchmark

    assert detect_kind(mmqa_dir) == "mmqa" and resolve_source("mmqa") == mmqa_dir.resolve()
    items, skips = split(list(iter_source(mmqa_dir)))
    assert not skips
    n = {m: sum(it.modality == m for it in items) for m in Modality}
    assert n == {Modality.TEXT: 925, Modality.IMAGE: 257}
    assert len({it.id for it in items}) == 1182 == count_source(mmqa_dir)
    # same ids and texts as the benchmark corpus, so eval and `mindgap index mmqa` share stores
    corpus = {c["id"]: c for c in build_mmqa_benchmark(mmqa_dir).corpus}
    for it in items:
        assert it.id in corpus
        if it.modality == Modality.TEXT:
            assert it.text == corpus[it.id]["text"]
        else:
            assert Path(it.uri).is_file() and it.uri.endswith(corpus[it.id]["image"].split("/")[-1])
    img = next(it for it in items if it.modality == Modality.IMAGE)
    assert img.metadata["title"] and img.metadata["url"].startswith("https://") and img.text == img.metadata["title"]
    assert sum(bool(it.metadata["gold_for_qids"]) for it in items if it.modality == Modality.IMAGE) == 28
    assert all(it.metadata["referenced_by_qids"] for it in items if it.modality == Modality.IMAGE)
    with_tables, _ = split(list(iter_source(mmqa_dir, tables=True)))
    tables = [it for it in with_tables if it.metadata.get("mmqa_part") == "table"]
    assert len(tables) == 30 and len(with_tables) == 1212 == count_source(mmqa_dir, tables=True)
    ben = next(t for t in tables if t.metadata["title"] == "Ben Piazza")
    assert ben.modality == Modality.TEXT and ben.text.startswith("Ben Piazza. Filmography.")
    assert "Year: 1957; Title: A Dangerous Age; Role: David." in ben.text


def test_caption_folder_split_and_caption_passages(flickr_dir: Path) -> None:
    assert detect_kind(flickr_dir) == "captions"
    entries = list(iter_source(flickr_dir, split="test", limit=10, captions_as_text=True))
    items, skips = split(entries)
    assert not skips and len(items) == 10
    img, cap = items[0], items[1]
    assert img.modality == Modality.IMAGE and img.metadata["split"] == "test" and len(img.metadata["captions"]) == 5
    assert cap.id == f"{img.id}#0" and cap.text == img.metadata["captions"][0] == img.text
    assert count_source(flickr_dir, split="test") == 1000
    assert count_source(flickr_dir, split="test", captions_as_text=True) == 2000


def test_bad_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="source not found"):
        list(iter_source(tmp_path / "nope"))
    (tmp_path / "x.csv").write_text("a,b", encoding="utf-8")
    with pytest.raises(InputError, match="expected a folder or a .jsonl"):
        list(iter_source(tmp_path / "x.csv"))
    with pytest.raises(InputError, match="unknown source kind"):
        list(iter_source(tmp_path, kind="pdf"))


def test_failing_source_keeps_the_whole_batches_it_gave(offline_encoder, flickr_test) -> None:
    """A source that raises midway: every batch it completed is committed (prefetch or not), no half batch."""
    items = [Item(f"c{i}", Modality.TEXT, text=r.captions[0]) for i, r in enumerate(flickr_test[:20])]

    def broken():
        for i, it in enumerate(items):
            if i == 13:
                raise OSError("disk went away")
            yield it

    r = Retriever("exact:", encoder=offline_encoder)
    with pytest.raises(OSError, match="disk went away"):
        r.index(broken(), batch_size=4, progress=False, prefetch=2)
    assert sorted(r.store.has([it.id for it in items])) == sorted(it.id for it in items[:12])
    assert sum(r.index(items, batch_size=4, progress=False).added.values()) == 8  # the resume adds the rest
