#!/usr/bin/env bash
# Reproduce docs/results/fusion/ (issue 14: calibrated / query-adaptive fusion vs. quota, RRF,
# min-max, DBSF, zscore) with the default bundled offline model (DEFAULT_OFFLINE_SPEC), or
# ENCODER=spec. Writes report.md, results.json, reliability.png and the full harness reports
# flickr8k/ and mmqa/ (tradeoff.png: every method on the ImageQ/TextQ shift frontier).
# Embedded stores go to runs/fusion/ (git-ignored); embeddings are cached (~/.cache/mindgap).
# Then the QB-Norm probe and the search overhead of `calibrated` vs. naive (benchmarks/search.py
# --gap-overhead: 10k and 100k items, single queries and batches of 100), and the scripts listed below.
set -euo pipefail
PY=${PYTHON:-python}
OUT=${OUT:-docs/results/fusion}
$PY - <<PY
from mindgap.eval.fusion import run_fusion
import os
s = run_fusion("$OUT", encoder=os.environ.get("ENCODER") or None)
print("encoder:", s["encoder"])
for t in s["targets"]:
    print(("MET " if t["met"] else "miss") + f"  {t['method']}: {t['target']} ({t['value'][:80]})")
PY
$PY docs/results/fusion/qbnorm_probe.py   # QB-Norm / DIS with a query bank: measured, not kept
nice $PY benchmarks/search.py --gap-overhead --single 300 --overhead-gaps naive,zscore,calibrated:hub=0,calibrated \
  --out "$OUT/search_overhead.json"   # calibrated:hub=0: its scoring alone, without the hubness re-rank
$PY -c "from mindgap.eval.fusion import append_extras; append_extras('$OUT')"
# per-query paired bootstrap vs. every peer; the calib-only choices of λ/depth and of the hubness
# weight; the MMQA TextQ questions lost per λ; the per-item evidence probe (feedback vs. hubs)
if [ "$OUT" = docs/results/fusion ]; then
  $PY docs/results/fusion/headtohead.py > /dev/null
  $PY docs/results/fusion/select_on_calib.py
  $PY docs/results/fusion/select_on_calib.py --hub
  $PY docs/results/fusion/mmqa_textq_probe.py > /dev/null
  $PY docs/results/fusion/feedback_probe.py > /dev/null
  $PY docs/results/fusion/cover_none.py > /dev/null   # the coverage gain with / without cover_none
fi
