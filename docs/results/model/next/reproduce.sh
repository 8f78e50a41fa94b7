#!/usr/bin/env bash
# The candidate next bundled model (the ablation's best calib row, `text-top1-ema`), measured in the
# issue-14 / issue-15 harnesses BEFORE it becomes the default — nothing else in docs/results uses it.
#
#   1. train it (~12 min on 2 idle cores): top MiniLM layer unfrozen + EMA 0.995, else the shipped recipe;
#   2. run_fusion (Flickr8k test mixed store + MMQA; fits on fit/calib splits only) → fusion/;
#   3. the per-query head-to-head with paired-bootstrap intervals → headtohead.{json,md};
#   4. run_hybrid (MMQA + Flickr8k, lexical side index) → hybrid/;
#   5. summary.py → README.md (the candidate next to the shipped model's committed files).
#
# Stores go to runs/fusion-next (git-ignored). Run from the repository root.
set -euo pipefail
PY=${PYTHON:-python}
OUT=docs/results/model/next
MODEL=${MODEL:-runs/model-next}
[ -f "$MODEL/model.safetensors" ] || mindgap train --out "$MODEL" --text-tune-layers 1 --ema 0.995
cp "$MODEL/README.md" "$OUT/card.md"
$PY - <<PY   # the training record without the image lists
import json
m = json.load(open("$MODEL/mindgap_model.json"))["training"]
keep = {k: m[k] for k in ("command", "train_seconds", "seconds_per_step", "steps", "final_temperature", "machine", "test_metrics")}
keep["recipe"] = {k: v for k, v in m["recipe"].items() if not isinstance(v, list) or len(v) < 20}
json.dump(keep, open("$OUT/training.json", "w"), indent=1)
PY
export ENCODER="mindgap:$(cd "$MODEL" && pwd)"
$PY - <<PY
import os
from mindgap.eval.fusion import run_fusion
from mindgap.eval.hybrid import run_hybrid
run_fusion("$OUT/fusion", encoder=os.environ["ENCODER"], runs="runs/fusion-next")
run_hybrid("$OUT/hybrid", encoder=os.environ["ENCODER"], runs="runs/fusion-next")
PY
OUT="$OUT" RUNS=runs/fusion-next $PY docs/results/fusion/headtohead.py
$PY "$OUT/summary.py"
