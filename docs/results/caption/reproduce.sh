#!/usr/bin/env bash
# Reproduce docs/results/caption/{report.md,results.json} (CPU; ~1 h on 2 shared cores).
# Models and per-run evaluations go to runs/caption/ (git-ignored).
set -euo pipefail
MG=${MINDGAP:-mindgap}
R=${RUNS:-runs/caption}
D=flickr8k_224
GEN=local:smollm2          # SmolLM2-135M-Instruct (GGUF), greedy, one-shot prompt
N=100                      # images (the first N test images by id) that get generated captions
mkdir -p $R

# 1. fit: all of val (1000 images / 5000 pairs; 800 of them trained the encoder) and calib only (200)
$MG caption fit --data $D --split val --ridge 0    --out $R/val-ols0
$MG caption fit --data $D --split val --ridge auto --out $R/val-ols
$MG caption fit --data $D --split val --kind procrustes --out $R/val-procrustes
$MG caption fit --data $D --split val --images calib --ridge auto --out $R/calib-ols

# 2. evaluate on test: retrieval-only rows on all 1000 images, generator rows on the first $N
$MG caption eval --model $R/val-ols0        --generator none  --out $R/eval-val-ols0
$MG caption eval --model $R/val-procrustes  --generator none  --out $R/eval-val-procrustes
$MG caption eval --model $R/val-ols   --generator $GEN --gen-limit $N --order s2d --out $R/eval-val-ols-s2d
$MG caption eval --model $R/val-ols   --generator $GEN --gen-limit $N --order d2s --out $R/eval-val-ols-d2s
$MG caption eval --model $R/calib-ols --generator $GEN --gen-limit $N --order s2d --out $R/eval-calib-ols

# 3. one refinement iteration (validation: 50 val images, leave-one-out; 100 synthetic captions)
$MG caption refine --model $R/val-ols --out $R/val-ols-refined1 --generator $GEN --max-iter 1 --keep-last \
    --train-size 100 --val-size 50 --log $R/refine-val-ols.json
$MG caption eval --model $R/val-ols-refined1 --generator $GEN --gen-limit $N --order s2d --out $R/eval-val-ols-refined1

# 4. merge
$MG caption report \
    "val OLS λ=0=$R/eval-val-ols0/results.json" \
    "val Procrustes=$R/eval-val-procrustes/results.json" \
    "val OLS λ=CV, s2d=$R/eval-val-ols-s2d/results.json" \
    "val OLS λ=CV, d2s=$R/eval-val-ols-d2s/results.json" \
    "calib OLS λ=CV=$R/eval-calib-ols/results.json" \
    "val OLS λ=CV + 1 refinement=$R/eval-val-ols-refined1/results.json" \
    --extra $R/refine-val-ols.json --notes docs/results/caption/notes.md --out docs/results/caption
