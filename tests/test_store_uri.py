"""Store URIs: an unknown scheme is one line, a store opens only with the backend that built it
(its manifest says which), and read-only commands create nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from mindgap.cli import main
from mindgap.errors import SpecError, StoreError
from mindgap.retriever import Retriever
from mindgap.stores import open_store, recorded_backend, split_store_uri
from mindgap.types import Item, Modality


@pytest.fixture(scope="module")
def lance_store(tmp_path_factory, offline_encoder) -> Path:
    pytest.importorskip("lancedb")
    from mindgap.cli import index as cli_index

    cli_index._ENCODERS[offline_encoder.name] = offline_encoder
    d = tmp_path_factory.mktemp("lance") / "kb"
    r = Retriever(f"lancedb:{d}", encoder=offline_encoder)
    r.index([Item(f"t{i}", Modality.TEXT, text=t) for i, t in enumerate(["a dog on grass", "a red car", "two kids"])],
            progress=False)
    r.close()
    return d


def _tree(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


def test_unknown_scheme_is_one_line_and_creates_nothing(tmp_path, monkeypatch, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a dog")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    with pytest.raises(SpecError, match="unknown store scheme 'fais'"):
        split_store_uri("fais:runs/kb3")
    for argv in (["search", "fais:runs/kb3", "a dog"], ["info", "fais:runs/kb3"],
                 ["index", str(src), "--store", "fais:runs/kb3"]):
        assert main(argv) != 0
        err = capsys.readouterr().err.strip()
        assert "unknown store scheme 'fais'" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert list(cwd.iterdir()) == []
    # a bare path may hold a colon; a drive letter is not a scheme
    assert split_store_uri("runs/kb:2") == ("", "runs/kb:2") and split_store_uri("C:/kb") == ("", "C:/kb")


@pytest.mark.parametrize("scheme", ["exact", "faiss"])
def test_wrong_backend_refused_using_manifest(lance_store, scheme, capsys):
    if scheme == "faiss":
        pytest.importorskip("faiss")
    before = _tree(lance_store)
    assert recorded_backend(str(lance_store)) == "lancedb"
    with pytest.raises(StoreError, match="this is a lancedb store"):
        open_store(f"{scheme}:{lance_store}")
    assert main(["search", f"{scheme}:{lance_store}", "a dog"]) != 0
    err = capsys.readouterr().err.strip()
    assert "lancedb store" in err and len(err.splitlines()) == 1
    assert _tree(lance_store) == before  # no empty segments/ folder written into it


def test_right_backend_and_bare_path_open(lance_store, tmp_path, offline_encoder, capsys):
    import json

    for uri in (f"lancedb:{lance_store}", str(lance_store)):
        assert main(["search", uri, "a dog", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["hits"][0]["id"] == "t0"
    ex = tmp_path / "ex"
    Retriever(f"exact:{ex}", encoder=offline_encoder).index([Item("a", Modality.TEXT, text="a cat")], progress=False)
    st = open_store(str(ex))  # a bare path opens the backend that built it
    assert st.uri.startswith("exact:") and st.count() == 1


def test_read_only_commands_create_nothing(tmp_path, capsys):
    missing = tmp_path / "nope"
    for argv in (["search", str(missing), "a dog"], ["search", f"exact:{missing}", "a dog"], ["info", str(missing)],
                 ["rm", str(missing), "x"]):
        assert main(argv) != 0
        assert "no store at this path" in capsys.readouterr().err
    assert not missing.exists()
    with pytest.raises(StoreError):
        open_store(f"faiss:{missing}", create=False)
    assert not missing.exists()
