"""CI runs what the README says it runs, and that includes the slow tests."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Two commands.*?```bash\n(.*?)```", readme, re.S).group(1)
    cmds = [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]
    assert cmds[1] == "bash scripts/install.sh && bash scripts/test.sh"
    ci = [ln for ln in (ROOT / ".ci/run").read_text().splitlines() if ln.strip() and not ln.startswith(("#", "set ", "cd "))]
    assert ci == ["bash scripts/install.sh", "bash scripts/test.sh"]
    script = (ROOT / "scripts/test.sh").read_text()
    assert 'pytest -q "$@"' in script and "pytest -q -m slow" in script


def test_dev_extras_hold_the_reference_implementations():
    py = (ROOT / "pyproject.toml").read_text()
    dev = re.search(r"^dev = \[(.*?)\]$", py, re.S | re.M).group(1)
    for pkg in ("rouge_score", "pycocoevalcap", "schemathesis", "pytest-timeout"):
        assert pkg in dev, pkg


def test_every_env_var_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Environment variables"):]
    table = table[: table.index("\n## ")]
    listed = set(re.findall(r"^\| `(MINDGAP_[A-Z0-9_]+)` \|", table, re.M))
    used = set()
    for p in (ROOT / "src" / "mindgap").rglob("*.py"):
        used |= set(re.findall(r"\bMINDGAP_[A-Z][A-Z0-9_]*[A-Z0-9]\b", p.read_text(encoding="utf-8")))
    assert used <= listed, f"not in the README table: {sorted(used - listed)}"


def test_deprecated_api_key_alias(monkeypatch):
    import pytest

    from mindgap.env import api_key

    monkeypatch.delenv("MINDGAP_API_KEY", raising=False)
    monkeypatch.setenv("MINDGAP_SERVER_API_KEY", "old")
    with pytest.warns(DeprecationWarning, match="MINDGAP_API_KEY"):
        assert api_key() == "old"
    monkeypatch.setenv("MINDGAP_API_KEY", "new")
    assert api_key() == "new"
