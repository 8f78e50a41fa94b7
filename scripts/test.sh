#!/usr/bin/env bash
# The tests CI runs (.ci/run calls exactly this): the default suite, then the slow set
# (SIGKILL crash tests of every store, the server's "acknowledged writes survive a kill",
# the caption-map claim, the lab, the long fuzz run, each docstring example in a fresh process).
# Developers: `.venv/bin/python -m pytest -q` alone is the quick default suite (~5 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest -q "$@"
.venv/bin/python -m pytest -q -m slow "$@"
