"""zscore vs naive, batch of 100 at 1M items: interleaved timings and a cProfile of each (the
benchmark's goal-ratio rounds were bimodal on the shared machine; this shows where time goes).

Run: python benchmarks/gap_profile.py
"""
import sys, time, cProfile, pstats
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parent))
import numpy as np
import search as S
base = S.base_embeddings()
items, vecs = S.make_corpus(base, 1_000_000)
q = np.ascontiguousarray(base["queries"][:100])
r = S.gap_retriever(items, vecs, q)
for g in ("naive", "zscore"):
    r.search_vectors(q, k=10, gap=g, fetch=False)
t = {"naive": [], "zscore": []}
for i in range(8):
    for g in (("naive", "zscore") if i % 2 else ("zscore", "naive")):
        t0 = time.perf_counter(); r.search_vectors(q, k=10, gap=g, fetch=False); t[g].append(time.perf_counter() - t0)
for g in t: print(g, [round(x, 3) for x in t[g]], "median", round(float(np.median(t[g])), 3))
for g in ("naive", "zscore"):
    pr = cProfile.Profile(); pr.enable(); r.search_vectors(q, k=10, gap=g, fetch=False); pr.disable()
    print("==", g); pstats.Stats(pr).sort_stats("cumulative").print_stats(8)
