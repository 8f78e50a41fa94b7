"""Issue 17: the LlamaIndex and LangChain adapters, with the real packages, on a real index built
offline with mindgap's encoder as the embedding model (a 40-photo Flickr8k test slice + their
caption-#0 passages); the corrector is fitted on the model's held-out calib images only."""

from __future__ import annotations

import numpy as np
import pytest

from mindgap.gap.portable import fit_corrector, fuse

N = 40


@pytest.fixture(scope="module")
def corrector(flickr_embeddings):
    """calibrated, fitted on calib pairs (caption #1 → its photo, → its caption #0); the slice is the corpus."""
    c, t = flickr_embeddings["calib"], flickr_embeddings["test"]
    q = np.concatenate([c["captions"][:, 1], c["captions"][:, 1]])
    gold = np.concatenate([c["images"], c["captions"][:, 0]])
    gm = ["image"] * len(c["images"]) + ["text"] * len(c["images"])
    return fit_corrector("calibrated", queries=q, gold=gold, gold_modality=gm,
                         corpus={"text": t["captions"][:N, 0], "image": t["images"][:N]},
                         counts={"text": N, "image": N}, encoder="mindgap:flickr8k-effnet")


def _direct(flickr_embeddings, q: np.ndarray, depth: int) -> dict:
    """The same candidate lists, by numpy: per modality, the top ``depth`` cosines over the slice."""
    t = flickr_embeddings["test"]
    ids = t["ids"][:N]
    out = {}
    for m, mat, pre in (("text", t["captions"][:N, 0], "txt:"), ("image", t["images"][:N], "img:")):
        s = mat @ q
        top = np.argsort(-s, kind="stable")[:depth]
        out[m] = [(pre + ids[j], float(s[j])) for j in top]
    return out


def test_llamaindex_adapter_on_a_real_index(flickr_embeddings, offline_encoder, corrector):
    pytest.importorskip("llama_index.core")
    from llama_index.core.indices import MultiModalVectorStoreIndex
    from llama_index.core.schema import ImageNode, TextNode

    from mindgap.integrations.llamaindex import GapFusionRetriever, MindgapEmbedding

    recs = flickr_embeddings["test"]["records"][:N]
    emb = MindgapEmbedding(offline_encoder)
    nodes = [TextNode(text=r.captions[0], id_=f"txt:{r.image_id}") for r in recs] + [
        ImageNode(image_path=str(r.path), id_=f"img:{r.image_id}", metadata={"file_name": r.path.name}) for r in recs]
    index = MultiModalVectorStoreIndex(nodes, embed_model=emb, image_embed_model=emb, show_progress=False)
    # the index holds mindgap's embeddings (LlamaIndex embedded the photos and passages through the adapter)
    img_store = index.image_vector_store
    got = np.asarray(img_store.get(f"img:{recs[0].image_id}"), np.float32)
    assert np.allclose(got, flickr_embeddings["test"]["images"][0], atol=1e-4)

    quota = index.as_retriever(similarity_top_k=5, image_similarity_top_k=5)
    fused = GapFusionRetriever(index, corrector=corrector, k=10)
    assert fused.depth == 20
    mixes = set()
    for i in range(0, N, 4):
        text = recs[i].captions[1]
        q = offline_encoder.encode_text([text], show_progress=False)[0]
        base = quota.retrieve(text)
        assert [n.node.node_id[:4] for n in base] == ["txt:"] * 5 + ["img:"] * 5  # LlamaIndex: fixed 5 + 5
        hits = fused.retrieve_fused(text)
        want = fuse(_direct(flickr_embeddings, q, 20), corrector, k=10)
        assert [h.id for h in hits] == [h.id for h in want]
        assert np.allclose([h.score for h in hits], [h.score for h in want], atol=1e-4)
        nodes_out = fused.retrieve(text)
        assert [n.node.node_id for n in nodes_out] == [h.id for h in hits]
        assert [n.score for n in nodes_out] == sorted((n.score for n in nodes_out), reverse=True)
        mixes.add(sum(h.modality == "image" for h in hits))
    assert len(mixes) > 1  # the share of photos follows the query, not a quota
    # min_prob: only the likely-relevant nodes; the two-retriever form gives the same as the index form
    strict = GapFusionRetriever(index, corrector=corrector, k=10, min_prob=0.5)
    assert len(strict.retrieve(recs[0].captions[1])) < 10
    from llama_index.core.base.base_retriever import BaseRetriever

    both = index.as_retriever(similarity_top_k=20)

    class TextOnly(BaseRetriever):  # any retriever of one modality's nodes
        def _retrieve(self, query_bundle):
            return both.text_retrieve(query_bundle)

    two = GapFusionRetriever(text_retriever=TextOnly(), image_retriever=None, corrector=corrector, k=5)
    assert all(n.node.node_id.startswith("txt:") for n in two.retrieve(recs[0].captions[1]))


def test_langchain_adapter_on_real_vector_stores(flickr_embeddings, offline_encoder, corrector):
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document
    from langchain_core.vectorstores import InMemoryVectorStore

    from mindgap.errors import InputError
    from mindgap.integrations.langchain import GapFusionRetriever, MindgapEmbeddings

    recs = flickr_embeddings["test"]["records"][:N]
    texts = InMemoryVectorStore(MindgapEmbeddings(offline_encoder, modality="text"))
    texts.add_texts([r.captions[0] for r in recs], ids=[f"txt:{r.image_id}" for r in recs])
    images = InMemoryVectorStore(MindgapEmbeddings(offline_encoder, modality="image"))
    images.add_texts([str(r.path) for r in recs], ids=[f"img:{r.image_id}" for r in recs],
                     metadatas=[{"file_name": r.path.name} for r in recs])
    retr = GapFusionRetriever(text_store=texts, image_store=images, corrector=corrector, k=10)
    for i in (0, 9, 21):
        text = recs[i].captions[1]
        q = offline_encoder.encode_text([text], show_progress=False)[0]
        docs = retr.invoke(text)
        want = fuse(_direct(flickr_embeddings, q, 20), corrector, k=10)
        assert all(isinstance(d, Document) for d in docs)
        assert [d.id for d in docs] == [h.id for h in want]
        assert [d.metadata["modality"] for d in docs] == [h.modality for h in want]
        assert all(0 <= d.metadata["probability"] <= 1 for d in docs)
        img = [d for d in docs if d.metadata["modality"] == "image"]
        assert all(d.page_content.endswith(".jpg") and "file_name" in d.metadata for d in img)
    # a store that reports cosine distance: to_cosine converts it back
    class Distances:
        def similarity_search_with_score(self, query, k):
            return [(d, 1 - s) for d, s in texts.similarity_search_with_score(query, k=k)]

    a = GapFusionRetriever(text_store=Distances(), corrector=corrector, k=5, to_cosine=lambda d: 1 - d)
    b = GapFusionRetriever(text_store=texts, corrector=corrector, k=5)
    assert [d.id for d in a.invoke("a dog")] == [d.id for d in b.invoke("a dog")]
    with pytest.raises(InputError, match="corrector"):
        GapFusionRetriever(text_store=texts)
    with pytest.raises(InputError, match="changes embeddings"):
        GapFusionRetriever(text_store=texts, corrector={"name": "center", "params": {}, "state": {}}).invoke("x")


def test_extras_are_declared_and_in_dev():
    import re
    from pathlib import Path

    py = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert re.search(r'^llamaindex = \["llama-index-core', py, re.M)
    assert re.search(r'^langchain = \["langchain-core', py, re.M)
    dev = re.search(r"^dev = \[(.*?)\]$", py, re.S | re.M).group(1)
    assert "mindgap[llamaindex,langchain]" in dev


def test_readme_integration_snippets_run(tmp_path, monkeypatch, shared_data, offline_encoder, capsys):
    """The README's Python snippets (fuse, LlamaIndex, LangChain) run as written, from a folder
    beside the shared data, with runs/corrector.json = the format doc's example corrector."""
    import json
    import re
    from pathlib import Path

    from mindgap import encoders

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- readme-integration-snippet -->\s*```python\n(.*?)```", readme, re.S)
    assert len(blocks) == 3
    doc = (root / "docs" / "corrector-format.md").read_text(encoding="utf-8")
    example = re.search(r"<!-- example-corrector -->\s*```json\n(.*?)```", doc, re.S).group(1)
    work = tmp_path / "work"
    (work / "runs").mkdir(parents=True)
    (work / "runs" / "corrector.json").write_text(json.dumps(json.loads(example)))
    (tmp_path / "shared").symlink_to(shared_data.parent)
    monkeypatch.chdir(work)
    monkeypatch.setattr(encoders, "load_encoder", lambda spec, *a, **k: offline_encoder)  # loaded once per session
    for b in blocks:
        exec(compile(b, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "ImageNode" in out and "TextNode" in out and "image" in out and "text" in out


def test_committed_comparison_meets_the_target():
    """docs/results/integrations/results.json (reproduce.sh): the adapter is at least as good as
    LlamaIndex's fixed quotas on both@10, on the full 2,000-query benchmark."""
    import json
    from pathlib import Path

    s = json.loads((Path(__file__).resolve().parents[1] / "docs/results/integrations/results.json").read_text())
    assert s["queries"] == 2000 and s["corpus"] == {"text": 1000, "image": 1000}
    quota = s["systems"]["LlamaIndex fixed quota (5 text + 5 image)"]
    for name, m in s["systems"].items():
        if name.startswith("mindgap adapter"):
            assert m["both@10"] >= quota["both@10"], name
            assert m["results_per_query"] == 10
