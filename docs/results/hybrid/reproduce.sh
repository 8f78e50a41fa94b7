#!/usr/bin/env bash
# Reproduce docs/results/hybrid/ (issue 15: hybrid lexical + dense search) with the default bundled
# offline model (DEFAULT_OFFLINE_SPEC), or ENCODER=spec.
#  1. the lexical library choice: bm25s vs. tantivy at 100K documents (lexical_choice.json / .md);
#  2. dense vs. lexical vs. hybrid vs. the peers' fusion rules on MMQA and Flickr8k (report.md, results.json);
#     stores in runs/fusion/ (shared with docs/results/fusion; git-ignored), embeddings cached;
#  3. hybrid vs. dense query latency and the lexical index build cost at 10K and 100K items
#     (benchmarks/search.py --hybrid → search_hybrid.json / .md).
set -euo pipefail
PY=${PYTHON:-python}
OUT=${OUT:-docs/results/hybrid}
$PY -c "import bm25s" 2>/dev/null || $PY -m pip install -q bm25s   # measured against tantivy, not a dependency
nice $PY benchmarks/lexical_choice.py --n 100000 --out "$OUT/lexical_choice.json"
$PY - <<PY
from mindgap.eval.hybrid import run_hybrid
import os
s = run_hybrid("$OUT", encoder=os.environ.get("ENCODER") or None)
for t in s["targets"]:
    print(("MET " if t["met"] else "miss") + f"  {t['target']} ({t['value']})")
PY
nice $PY benchmarks/search.py --hybrid --out "$OUT/search_hybrid.json"
# the same with numpy's BLAS on one thread (on 2 cores the BM25 thread then has a core of its own)
nice $PY benchmarks/search.py --hybrid --blas-threads 1 --out "$OUT/search_hybrid_blas1.json"
# the RAG pipeline's retrieval with and without BM25 (extractive generator: no LM; gold-in-prompt at k = 10)
mindgap eval-rag --store "exact:runs/fusion/mmqa-$(echo "${ENCODER:-mindgap:flickr8k-effnet}" | tr ':/' '__').store" \
  --gaps extractive:naive,extractive:calibrated,extractive:hybrid:calibrated --generator extractive \
  --gold-kinds TextQ,ImageQ,mixed --out "$OUT/rag"
nice $PY docs/results/hybrid/readme_section.py   # the README section, from these files
