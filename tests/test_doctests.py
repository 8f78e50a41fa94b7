"""The docstring examples run: every module of the package whose docstrings hold ``>>>`` examples.

Examples marked ``# doctest: +SKIP`` need a model or a store on disk and are documentation only.
"""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"


def _modules_with_examples() -> list[str]:
    out = []
    for p in sorted((SRC / "mindgap").rglob("*.py")):
        if ">>>" in p.read_text(encoding="utf-8"):
            rel = p.relative_to(SRC).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out.append(".".join(parts))
    return out


MODULES = _modules_with_examples()


def test_examples_found():
    assert "mindgap.registry" in MODULES and len(MODULES) >= 20


FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    # the dev install has every extra: a module that cannot be imported is a failure, not a skip
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=FLAGS, verbose=False, report=True)
    assert res.failed == 0, f"{res.failed} of {res.attempted} docstring example(s) of {name} failed (see output)"


@pytest.mark.slow
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_in_a_fresh_process(name):
    """Each module alone, as a reader would try it: an example must not depend on what other modules imported."""
    code = (f"import doctest, importlib, sys; m = importlib.import_module({name!r}); "
            f"sys.exit(doctest.testmod(m, optionflags={int(FLAGS)}).failed)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
