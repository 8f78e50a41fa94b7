"""Deletions are recorded and free what they leave unused; batched image queries live in the Retriever."""

from __future__ import annotations

import base64
import json

import pytest

from mindgap.cli import main
from mindgap.retriever import Retriever
from mindgap.stores import open_store
from mindgap.types import Item, Modality


def test_rm_is_recorded_in_the_manifest_sources(tmp_path, offline_encoder, capsys):
    from mindgap.cli import index as cli_index

    cli_index._ENCODERS[offline_encoder.name] = offline_encoder
    src = tmp_path / "kb.jsonl"
    src.write_text("".join(json.dumps({"id": f"t{i}", "text": f"passage number {i}"}) + "\n" for i in range(3)))
    store = f"exact:{tmp_path / 'kb'}"
    assert main(["index", str(src), "--store", store, "--no-progress"]) == 0
    assert main(["rm", store, "t0", "t2", "nope"]) == 0
    sources = open_store(store).manifest.sources
    assert sources[0].startswith("jsonl:") and sources[-1].startswith("deleted:")
    assert sources[-1].endswith(":2 item(s): t0, t2")
    # the log entry is no source: re-indexing the same source needs no --append, and adds back what was removed
    capsys.readouterr()
    assert main(["index", str(src), "--store", store, "--no-progress", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["added"]["text"] == 2


def test_search_many_images_equals_single(tmp_path, offline_encoder, flickr_test):
    r = Retriever("exact:", encoder=offline_encoder)
    recs = flickr_test[:6]
    r.index([Item(f"i{j}", Modality.IMAGE, uri=str(x.path)) for j, x in enumerate(recs)]
            + [Item(f"t{j}", Modality.TEXT, text=x.captions[0]) for j, x in enumerate(recs)], progress=False)
    many = r.search_many_images([str(x.path) for x in recs[:4]], k=3, batch_size=3)
    for x, hits in zip(recs[:4], many):
        from mindgap.images import load_image

        assert [h.id for h in hits] == [h.id for h in r.search(image=load_image(str(x.path)), k=3)]


def test_server_delete_frees_unreferenced_uploads(tmp_path, offline_encoder, flickr_test):
    httpx = pytest.importorskip("httpx")
    from mindgap.server import create_app, serve_in_thread

    a, b = (base64.b64encode(x.path.read_bytes()).decode() for x in flickr_test[:2])
    app = create_app(f"exact:{tmp_path / 'kb'}", encoder=offline_encoder, create=True)
    with serve_in_thread(app) as srv:
        items = [{"id": "a1", "modality": "image", "image_base64": a}, {"id": "a2", "modality": "image",
                 "image_base64": a}, {"id": "b1", "modality": "image", "image_base64": b}]
        assert httpx.post(srv.url + "/items", json={"items": items}, timeout=60).status_code == 200
        folder = app.state.mg.upload_dir
        assert len(list(folder.iterdir())) == 2  # a1 and a2 share one content-addressed file
        assert httpx.delete(srv.url + "/items/a1").status_code == 200
        assert len(list(folder.iterdir())) == 2  # a2 still uses it
        assert httpx.get(srv.url + "/items/a2/image").status_code == 200
        assert httpx.delete(srv.url + "/items/a2").status_code == 200
        assert len(list(folder.iterdir())) == 1  # its last user gone: freed
        assert httpx.delete(srv.url + "/items/b1").status_code == 200
        assert list(folder.iterdir()) == []
        # uploading the same bytes again works (the file is written anew)
        assert httpx.post(srv.url + "/items", json={"items": items[:1]}, timeout=60).status_code == 200
        assert httpx.get(srv.url + "/items/a1/image").status_code == 200


def _import_graph() -> dict[str, set[str]]:
    """mindgap module → the mindgap modules it imports (top-level *and* inside functions; not
    under ``if TYPE_CHECKING``). ``from .pkg import name`` counts as ``pkg.name`` when that is a
    module, else as ``pkg`` (its ``__init__``)."""
    import ast
    from pathlib import Path

    import mindgap

    root = Path(mindgap.__file__).resolve().parent
    mods: dict[str, tuple[Path, bool]] = {}
    for p in root.rglob("*.py"):
        parts = ["mindgap", *p.relative_to(root).with_suffix("").parts]
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)

    def owner(name: str) -> str:
        while name not in mods and "." in name:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = {id(s) for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)
                for c in n.body for s in ast.walk(c)}
        pkg = name if is_pkg else name.rpartition(".")[0]
        edges: set[str] = set()
        for n in ast.walk(tree):
            if id(n) in skip:
                continue
            if isinstance(n, ast.Import):
                edges |= {owner(a.name) for a in n.names if a.name.split(".")[0] == "mindgap"}
            elif isinstance(n, ast.ImportFrom):
                if n.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - (n.level - 1)]
                    target = ".".join(base + ([n.module] if n.module else []))
                else:
                    target = n.module or ""
                if target.split(".")[0] != "mindgap":
                    continue
                edges |= {f"{target}.{a.name}" if f"{target}.{a.name}" in mods else owner(target) for a in n.names}
        graph[name] = edges - {name}
    return graph


def test_no_import_cycles_among_mindgap_modules():
    """Layering: no two mindgap modules import each other, directly or round a loop — lazy
    imports inside functions included (they hide a cycle, they do not remove it)."""
    graph = _import_graph()
    assert "mindgap.eval.plots" in graph and "mindgap.eval.reports" in graph["mindgap.eval.diagnose"]
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == [], "import cycles: " + "; ".join(" ↔ ".join(c) for c in cycles)


def test_plot_helpers_live_in_eval_plots():
    """One home for the PNG helpers; nobody imports a private name of ``eval.reports``."""
    import re
    from pathlib import Path

    import mindgap
    from mindgap.eval import plots, reports, tradeoff

    assert reports.plot_pca is plots.plot_pca and tradeoff.plot_tradeoff is plots.plot_tradeoff
    root = Path(mindgap.__file__).resolve().parent
    private = [f"{p.relative_to(root)}: {m.group(0)}" for p in root.rglob("*.py")
               for m in re.finditer(r"from \S*reports import [^\n]*\b_\w+", p.read_text(encoding="utf-8"))]
    assert private == []
