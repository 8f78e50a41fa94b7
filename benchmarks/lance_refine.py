"""LanceDB IVF-PQ at 1M: does a larger exact re-rank pool (refine) lift recall past .95?

Run: python benchmarks/lance_refine.py  (prints recall@10 and batch QPS per refine; ~4 min)
"""
import sys, time, tempfile
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parent))
import numpy as np
import search as S
from mindgap.stores import open_store
from mindgap.types import Modality
base = S.base_embeddings()
items, vecs = S.make_corpus(base, 1_000_000)
q = np.ascontiguousarray(base["queries"][:300])
truth = S.ground_truth(items, vecs, q)
d = tempfile.mkdtemp()
st = open_store(f"lancedb:{d}/s?index=ivfpq")
t = time.time()
for b in range(0, len(items), 50_000):
    st.add(items[b:b+50_000], vecs[b:b+50_000])
st.build_index() if hasattr(st, "build_index") else st.close()
print("build", round(time.time() - t, 1), flush=True)
for refine in (8, 16, 32, 64):
    st.params.refine = refine
    for m in ("text", "image"):
        t = time.perf_counter(); res = []
        for s in range(0, len(q), 100):
            res += st.search(q[s:s+100], 10, Modality(m))
        dt = time.perf_counter() - t
        rec = np.mean([len({i for i, _ in h} & {i for i, _ in tr}) / 10 for h, tr in zip(res, truth[m])])
        print(f"refine={refine} {m}: recall@10 {rec:.4f}, batch QPS {len(q)/dt:.1f}", flush=True)
