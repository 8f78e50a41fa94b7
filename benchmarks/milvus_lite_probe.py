"""milvus-lite: is single-query time proportional to the rows searched, HNSW index or not?

Builds a 200K-item milvus-lite store with index=hnsw through mindgap, then times raw
MilvusClient.search calls per partition / filter. Run: python benchmarks/milvus_lite_probe.py (~2 min).
"""
import sys, time, tempfile
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parent))
import numpy as np
import search as S
from mindgap.stores import open_store
from mindgap.types import Modality
base = S.base_embeddings()
items, vecs = S.make_corpus(base, 200_000)
q = np.ascontiguousarray(base["queries"][:50])
d = tempfile.mkdtemp()
st = open_store(f"milvus:{d}/kb.db?index=hnsw")
t = time.time()
for b in range(0, len(items), 20_000):
    st.add(items[b:b+20_000], vecs[b:b+20_000])
st.build_index() if hasattr(st, "build_index") else None
print("build", round(time.time() - t, 1), flush=True)
c = st.client
def timeit(label, parts=("text",), **kw):
    ts = []
    for i in range(20):
        t = time.perf_counter(); c.search(st.col, data=[q[i].tolist()], limit=18, anns_field="vector", partition_names=list(parts) if parts else None, search_params={"metric_type": "IP", "params": {"ef": 128}}, **kw); ts.append(time.perf_counter() - t)
    print(label, "median ms", round(1e3 * float(np.median(ts)), 2), flush=True)
timeit("with vector output", output_fields=["vector"])
timeit("ids only", output_fields=[])
timeit("ids only, no partition", parts=None, output_fields=[])
timeit("ids only, modality filter", parts=None, output_fields=[], filter='modality == "text"')
timeit("ids only, image partition", parts=("image",), output_fields=[])
print(c.list_partitions(st.col))
print(c.get_collection_stats(st.col))
t = time.perf_counter(); st.search(q[:1], 10, Modality.TEXT); print("store.search single ms", round(1e3*(time.perf_counter()-t), 2))
print(c.describe_index(st.col, "vector") if hasattr(c, "describe_index") else "")
print(c.list_indexes(st.col))
