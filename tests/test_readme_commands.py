"""Every README command block runs, in order, as written, in a fresh folder beside the shared data.

Slow (tens of minutes: it indexes MMQA, evaluates, fits the caption map, runs the benchmarks);
CI runs it with the slow set. Lines are run exactly as the README shows them, with only these
exceptions, each with its reason:

* ``bash scripts/install.sh && X`` — the install is what created the environment running this
  test; ``X`` runs (unless it is the test command itself, which would recurse);
* servers (``mindgap serve``, ``mindgap llm-serve``) start, answer their health route, and are stopped.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECURSIVE = "bash scripts/test.sh"
SERVERS = {"mindgap serve": "/healthz", "mindgap llm-serve": "/v1/models"}


def readme_blocks() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        lines = [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        out.append(lines)
    return out


def _command(line: str) -> str | None:
    if line.startswith("bash scripts/install.sh && "):
        rest = line.split("&& ", 1)[1]
        return None if rest.strip() == RECURSIVE else rest
    return line


def _port(line: str, default: int) -> int:
    m = re.search(r"--port\s+(\d+)", line)
    return int(m.group(1)) if m else default


def _serve(line: str, env: dict, cwd: Path) -> None:
    import httpx

    path = next(p for k, p in SERVERS.items() if line.startswith(k))
    port = _port(line, 8001 if "llm-serve" in line else 8000)
    proc = subprocess.Popen(["bash", "-c", line], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        deadline = time.time() + 600
        while True:
            assert proc.poll() is None, f"{line!r} exited: {proc.stdout.read()[-3000:]}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, f"{line!r} did not answer {path}"
            time.sleep(1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.timeout(5400)
def test_readme_commands_run_in_order(tmp_path, shared_data):
    work = tmp_path / "repo"
    work.mkdir()
    (tmp_path / "shared").symlink_to(shared_data.parent)  # README: `../shared/data` beside the repository
    (work / ".venv").symlink_to(ROOT / ".venv" if (ROOT / ".venv").exists() else Path(sys.prefix))
    (work / "runs").mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "COLUMNS": "80"}
    ran = []
    for block in readme_blocks():
        for line in block:
            cmd = _command(line)
            if cmd is None:
                continue
            if any(cmd.startswith(k) for k in SERVERS):
                _serve(cmd, env, work)
            else:
                p = subprocess.run(["bash", "-c", f"set -eo pipefail; . .venv/bin/activate; {cmd}"], cwd=work,
                                   env=env, capture_output=True, text=True, timeout=3600)
                assert p.returncode == 0, f"README command failed: {cmd}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
            ran.append(cmd)
    assert len(ran) >= 20
