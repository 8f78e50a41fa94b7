"""Progress bars for real work only: no "Loading weights" bar when a model is read from disk."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mindgap.progress import quiet_model_loading


def test_hook_hides_only_weight_loading_bars():
    tlog = pytest.importorskip("transformers.utils.logging")
    with quiet_model_loading():
        assert tlog.tqdm(range(3), desc="Loading weights").disable
        assert not tlog.tqdm(range(3), desc="Downloading").disable
    assert not tlog.tqdm(range(3), desc="Loading weights").disable  # restored after the block


def test_cli_embed_prints_no_loading_bar(tmp_path):
    code = "import sys; from mindgap.cli import main; sys.exit(main(sys.argv[1:]))"
    p = subprocess.run([sys.executable, "-c", code, "embed", "-t", "a dog", "-o", str(tmp_path / "e.npy")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "Loading weights" not in p.stderr and "%|" not in p.stderr


def test_local_llm_load_prints_no_loading_bar():
    """The local generator reads its converted weights from the cache: no "Loading weights"
    bar (eval-rag and caption runs printed one per process)."""
    code = ("from mindgap.rag.generators import load_generator; g = load_generator('local:smollm2'); g.load(); "
            "print(g.load_source)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "cache"  # the installer converts it once
    assert "Loading weights" not in p.stderr and "%|" not in p.stderr
