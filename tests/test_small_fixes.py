"""Issue 16's smaller items: k must be an integer, an empty X-API-Key hides no Bearer token,
the banner says whether auth is on, /healthz hides the store without a key, allowed Host
names, a port in use fails before "serving on", an empty source leaves nothing behind,
``--append true`` is accepted."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mindgap.cli import flag_values, main

KEY = "k3y-for-tests"


@pytest.fixture(scope="module")
def srv(offline_encoder, tmp_path_factory):
    pytest.importorskip("fastapi")
    from mindgap.server import create_app, serve_in_thread
    from mindgap.server.security import default_allowed_hosts

    d = tmp_path_factory.mktemp("srv") / "kb"
    app = create_app(f"exact:{d}", encoder=offline_encoder, create=True, api_key=KEY,
                     allowed_hosts=default_allowed_hosts("127.0.0.1"))
    with serve_in_thread(app) as h:
        h.store_dir = d
        yield h


def test_k_true_is_refused(srv):
    import httpx

    r = httpx.post(srv.url + "/ask", headers={"X-API-Key": KEY}, json={"question": "a dog?", "k": True})
    assert r.status_code == 422 and r.json()["error"]["item"] == "k", r.text


def test_empty_x_api_key_does_not_hide_bearer(srv):
    import httpx

    from mindgap.server.security import Unauthorized, check_api_key

    check_api_key(KEY, f"Bearer {KEY}", "")
    with pytest.raises(Unauthorized):
        check_api_key(KEY, None, "")
    r = httpx.get(srv.url + "/stats", headers={"Authorization": f"Bearer {KEY}", "X-API-Key": ""})
    assert r.status_code == 200, r.text


def test_healthz_hides_store_without_key(srv):
    import httpx

    anon = httpx.get(srv.url + "/healthz").json()
    assert anon["status"] == "ok" and anon["store"] is None and str(srv.store_dir) not in json.dumps(anon)
    keyed = httpx.get(srv.url + "/healthz", headers={"X-API-Key": KEY}).json()
    assert str(srv.store_dir) in keyed["store"]


def test_allowed_hosts(srv):
    import httpx

    from mindgap.server.security import default_allowed_hosts

    r = httpx.get(srv.url + "/healthz", headers={"Host": "evil.example:8000"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_host"
    port = srv.url.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "[::1]", "LOCALHOST"):
        assert httpx.get(srv.url + "/healthz", headers={"Host": host}).status_code == 200, host
    assert default_allowed_hosts("0.0.0.0") == ["*"] and "localhost" in default_allowed_hosts("::1")


def test_banner_says_auth():
    from mindgap.cli.serve_cmd import serve_banner

    assert "auth: on" in serve_banner("kb", 1, "e", "127.0.0.1", 8000, True, ["localhost"])
    assert "auth: off" in serve_banner("kb", 1, "e", "0.0.0.0", 8000, False, ["*"])


def test_port_in_use_fails_before_serving_banner(tmp_path):
    pytest.importorskip("uvicorn")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code = "import sys; from mindgap.cli import main; sys.exit(main(sys.argv[1:]))"
        p = subprocess.run([sys.executable, "-c", code, "serve", f"exact:{tmp_path / 'kb'}", "--create",
                            "--port", str(port)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    assert "already in use" in p.stderr and "serving" not in p.stderr and "Traceback" not in p.stderr


def test_empty_jsonl_leaves_nothing(tmp_path, capsys):
    src = tmp_path / "empty.jsonl"
    src.write_text("\n  \n")
    store = tmp_path / "kb"
    assert main(["index", str(src), "--store", f"exact:{store}", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "the file is empty" in err and str(src) in err
    assert not store.exists()


def test_all_bad_lines_leave_no_new_store(tmp_path, capsys, offline_encoder):
    from mindgap.cli import index as cli_index

    cli_index._ENCODERS[offline_encoder.name] = offline_encoder
    src = tmp_path / "bad.jsonl"
    src.write_text('{"id": 1}\nnot json\n')
    store = tmp_path / "kb"
    assert main(["index", str(src), "--store", f"exact:{store}", "--no-progress"]) == 2
    assert "nothing could be indexed" in capsys.readouterr().err
    assert not store.exists()


def test_append_true_accepted(tmp_path, capsys, offline_encoder):
    from mindgap.cli import index as cli_index

    cli_index._ENCODERS[offline_encoder.name] = offline_encoder
    assert flag_values(["index", "a", "--append=false", "--json", "true"]) == ["index", "a", "--json"]
    assert flag_values(["search", "kb", "true"]) == ["search", "kb", "true"]  # a query, not a flag value
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"id": "a", "text": "a dog"}\n')
    b.write_text('{"id": "b", "text": "a cat"}\n')
    store = f"exact:{tmp_path / 'kb'}"
    assert main(["index", str(a), "--store", store, "--no-progress", "true"]) == 0
    assert main(["index", str(b), "--store", store, "--append", "true", "--no-progress"]) == 0, capsys.readouterr().err
    assert main(["index", str(a), "--store", store, "--append", "false", "--no-progress", "true"]) == 0


def test_longest_schema_valid_query_gets_an_answer(srv):
    """GET /search takes 20,000 characters: percent-encoded (180 KB) the server still answers, never resets."""
    import requests

    q = "%E0%A0%80" * 20000  # U+0800 (3 UTF-8 bytes) x 20,000
    r = requests.get(srv.url + "/search?k=1001&query=" + q, headers={"X-API-Key": KEY}, timeout=120)
    assert r.status_code == 422 and r.json()["error"]["item"] == "query.k"
