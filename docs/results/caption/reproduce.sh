#!/usr/bin/env bash
# Reproduce docs/results/caption/{report.md,results.json} on CPU.
# Measured wall time: ~1 h on a 2-core machine shared with other jobs (load average ~12);
# most of it is SmolLM2 generating ~400 captions (2-11 s each there, depending on the load). Embeddings are cached (~/.cache/mindgap),
# so a second run spends almost all its time in the generator.
# Models and per-run evaluations go to runs/caption/ (git-ignored).
set -euo pipefail
MG=${MINDGAP:-mindgap}
R=${RUNS:-runs/caption}
D=flickr8k_224
GEN=local:smollm2          # SmolLM2-135M-Instruct (GGUF), greedy, one-shot prompt
N=${N:-100}                # images (the first N test images by id) that get generated captions
PY=${PYTHON:-python}
mkdir -p $R

# 1. fit on val: all 1000 images / 5000 pairs (800 of them trained the encoder), and the 200
#    held-out calib images only (never seen by the encoder)
$MG caption fit --data $D --split val --ridge 0    --out $R/val-ols0
$MG caption fit --data $D --split val --ridge auto --out $R/val-ols
$MG caption fit --data $D --split val --kind procrustes --out $R/val-procrustes
$MG caption fit --data $D --split val --images calib --ridge auto --out $R/calib-ols

# 2. evaluate on test: retrieval rows on all 1000 test images, generator rows on the first $N
$MG caption eval --model $R/val-ols0        --generator none  --out $R/eval-val-ols0
$MG caption eval --model $R/val-procrustes  --generator none  --out $R/eval-val-procrustes
$MG caption eval --model $R/calib-ols       --generator none  --out $R/eval-calib-ols
$MG caption eval --model $R/val-ols   --generator $GEN --gen-limit $N --order s2d --out $R/eval-val-ols-s2d
$MG caption eval --model $R/val-ols   --generator $GEN --gen-limit $N --order d2s --out $R/eval-val-ols-d2s

# 3. one refinement iteration: validation = 30 val images (leave-one-out), synthetic captions
#    for 60 other val images, kept when their CIDEr-D beats the validation mean; --keep-last
#    keeps the refitted model even if validation did not improve ("after one iteration")
$MG caption refine --model $R/val-ols --out $R/val-ols-refined1 --generator $GEN --max-iter 1 --keep-last \
    --train-size 60 --val-size 30 --log $R/refine-val-ols.json
$MG caption eval --model $R/val-ols-refined1 --generator $GEN --gen-limit $N --order s2d --out $R/eval-val-ols-refined1

# 4. is it the encoder having seen the pairs, or the number of pairs? 200 calib images (held out
#    from the encoder) vs 200 of the encoder's own training images, OLS and Procrustes; paired
#    bootstrap of nDCG@10 mapped − raw on the 1000 test images (numbers quoted in notes.md)
$MG caption fit --data $D --split val --images calib --kind procrustes --out $R/calib-procrustes
$PY - <<'PY' > $R/train200-ids.txt
import random
from mindgap.datasets import load_caption_set
from mindgap.encoders.dual import DEFAULT_OFFLINE_MODEL, resolve_model_dir
from mindgap.encoders.dual_model import DualEncoderModel
cfg = DualEncoderModel.read_config(resolve_model_dir(DEFAULT_OFFLINE_MODEL))
val = {r.image_id for r in load_caption_set("flickr8k_224", split="val")}
tr = [t for t in sorted(cfg["training"]["data"]["train_images"]) if t in val]
random.Random(0).shuffle(tr)
print("\n".join(sorted(tr[:200])))
PY
for k in ols procrustes; do
  $MG caption fit --data $D --split val --images $R/train200-ids.txt --kind $k --ridge auto --out $R/train200-$k
done
$PY docs/results/caption/gap_ci.py $R/val-ols0 $R/val-ols $R/val-procrustes $R/calib-ols $R/calib-procrustes \
    $R/train200-ols $R/train200-procrustes > $R/gap_ci.jsonl

# 5. merge (notes.md holds the reading of the numbers)
$MG caption report \
    "val OLS λ=0=$R/eval-val-ols0/results.json" \
    "val Procrustes=$R/eval-val-procrustes/results.json" \
    "calib OLS λ=CV=$R/eval-calib-ols/results.json" \
    "val OLS λ=CV=$R/eval-val-ols-s2d/results.json" \
    "val OLS λ=CV, order d2s=$R/eval-val-ols-d2s/results.json" \
    "val OLS λ=CV + 1 refinement=$R/eval-val-ols-refined1/results.json" \
    --extra $R/refine-val-ols.json --notes docs/results/caption/notes.md --out docs/results/caption
