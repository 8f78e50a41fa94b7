#!/usr/bin/env bash
# Reproduce docs/results/prompting/{report.md,results.json,*.png} (CPU, offline model;
# ~15 min on 2 busy cores: ~17k encoder passes). Deterministic for a seed.
set -euo pipefail
MG=${MINDGAP:-mindgap}
OUT=docs/results/prompting
$MG prompt-bench --seed 0 --out $OUT   # the default bundled model
# put the hand-written interpretation (notes.md) into the report without re-measuring
$MG prompt-bench --from-results $OUT/results.json --notes $OUT/notes.md --out $OUT
# the same command with a real CLIP (needs the weights in the local HF cache):
#   $MG prompt-bench --encoder hf:openai/clip-vit-base-patch32 --out runs/prompt-bench-clip
