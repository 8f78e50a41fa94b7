"""Bad command lines get click's one-paragraph usage error and exit 2 — never a traceback.

Newer typer versions vendor their own click (``typer._click``), whose exceptions are not
``click.ClickException``; this once turned every mistyped option into a traceback.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from mindgap.cli import main


@pytest.mark.parametrize("argv, says", [
    (["eval", "flickr8k", "--no-such-option"], "No such option: --no-such-option"),
    (["search"], "Missing argument"),
    (["no-such-command"], "No such command"),
    (["search", "exact:", "q", "-k", "ten"], "Invalid value for '-k'"),
])
def test_usage_errors_are_one_message(argv, says, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_console_script_usage_error_has_no_traceback():
    p = subprocess.run([sys.executable, "-c", "import sys; from mindgap.cli import run; sys.argv[0] = 'mindgap'; run()",
                        "index", "--bogus"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "No such option: --bogus" in p.stderr and "Traceback" not in p.stderr
