#!/usr/bin/env bash
# Reproduce docs/results/integrations/ (issue 17, part 7): LlamaIndex's MultiModalVectorStoreIndex
# retriever (fixed quotas) vs. the same index through mindgap.integrations.llamaindex, on the Flickr8k
# test mixed benchmark. Needs `pip install -e '.[llamaindex]'` and the shared data (flickr8k_224).
# Embeddings come from mindgap's cache (~/.cache/mindgap; the first run encodes ~3,400 images and
# ~4,000 captions). Writes results.json and report.md next to this script.
set -euo pipefail
PY=${PYTHON:-python}
cd "$(dirname "$0")/../../.."
nice $PY docs/results/integrations/llamaindex_vs_adapter.py
