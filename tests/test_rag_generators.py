"""Generators without a language model: the OpenAI-compatible client against real HTTP
servers on 127.0.0.1 (sleeping, failing, rate-limiting), the mindgap OpenAI server, and the
extractive baseline."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mindgap.errors import InputError, SpecError
from mindgap.rag.generators import GeneratorError, load_generator
from mindgap.rag.generators.extractive import extract_span

OK_BODY = {"id": "x", "object": "chat.completion", "model": "m",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 11, "completion_tokens": 1, "total_tokens": 12}}


class Behaviour:
    """What the scripted server does for request n (0-based): a list of (status, body, headers, delay)."""

    def __init__(self, script: list[tuple[int, object, dict, float]]) -> None:
        self.script = script
        self.requests: list[dict] = []
        self.lock = threading.Lock()

    def next(self, body: dict) -> tuple[int, object, dict, float]:
        with self.lock:
            self.requests.append(body)
            i = min(len(self.requests) - 1, len(self.script) - 1)
            return self.script[i]


@pytest.fixture()
def scripted_server():
    servers = []

    def start(script: list[tuple[int, object, dict, float]]) -> tuple[str, Behaviour]:
        beh = Behaviour(script)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # noqa: ANN002 - silence
                pass

            def do_POST(self):  # noqa: N802
                n = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(n) or b"{}")
                status, out, headers, delay = beh.next(body)
                if delay:
                    time.sleep(delay)
                data = json.dumps(out).encode() if not isinstance(out, bytes) else out
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/v1", beh

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


MSG = [{"role": "user", "content": "What is the capital of France?"}]


def test_openai_client_success_and_usage(scripted_server):
    url, beh = scripted_server([(200, OK_BODY, {}, 0)])
    g = load_generator(f"openai:m@{url}", api_key="k", context_window=4096)
    out = g.generate(MSG, max_tokens=5, temperature=0, stop=["\n"])
    assert out.text == "Paris" and out.tokens == 1 and out.prompt_tokens == 11 and out.retries == 0
    sent = beh.requests[0]
    assert sent["model"] == "m" and sent["max_tokens"] == 5 and sent["stop"] == ["\n"]
    assert g.context_window == 4096


def test_openai_timeout_is_retried_then_clear_error(scripted_server):
    url, beh = scripted_server([(200, OK_BODY, {}, 2.0)])
    g = load_generator(f"openai:m@{url}", timeout=0.3, max_retries=2, backoff=0.01)
    t0 = time.perf_counter()
    with pytest.raises(GeneratorError) as ei:
        g.generate(MSG)
    msg = str(ei.value)
    assert "timed out after 0.3 s" in msg and "3 attempt(s)" in msg and url in msg
    assert len(beh.requests) == 3 and g.stats["retries"] == 2 and g.stats["failures"] == 1
    assert time.perf_counter() - t0 < 5


def test_openai_500_retried_with_backoff_then_error(scripted_server):
    url, beh = scripted_server([(500, {"error": {"message": "model crashed"}}, {}, 0)])
    g = load_generator(f"openai:m@{url}", max_retries=3, backoff=0.05, max_backoff=1.0)
    t0 = time.perf_counter()
    with pytest.raises(GeneratorError, match=r"HTTP 500: model crashed.*4 attempt\(s\) \(3 retries"):
        g.generate(MSG)
    assert len(beh.requests) == 4 and g.stats["retries"] == 3
    assert time.perf_counter() - t0 >= 0.05 + 0.1 + 0.2 - 0.02  # exponential back-off slept


def test_openai_429_then_success_honours_retry_after(scripted_server):
    url, beh = scripted_server([(429, {"error": {"message": "slow down"}}, {"Retry-After": "0.3"}, 0),
                                (200, OK_BODY, {}, 0)])
    g = load_generator(f"openai:m@{url}", backoff=0.01)
    t0 = time.perf_counter()
    out = g.generate(MSG)
    assert out.text == "Paris" and out.retries == 1 and len(beh.requests) == 2
    assert time.perf_counter() - t0 >= 0.3


def test_openai_401_not_retried_and_hints(scripted_server):
    url, beh = scripted_server([(401, {"error": {"message": "bad key"}}, {}, 0)])
    g = load_generator(f"openai:m@{url}", max_retries=3)
    with pytest.raises(GeneratorError, match="HTTP 401: bad key.*API key"):
        g.generate(MSG)
    assert len(beh.requests) == 1


def test_openai_connection_refused_is_clear():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    g = load_generator(f"openai:m@http://127.0.0.1:{port}/v1", max_retries=1, backoff=0.01)
    with pytest.raises(GeneratorError, match="cannot reach the server.*2 attempt"):
        g.generate(MSG)


def test_openai_images_as_data_urls(scripted_server, tmp_path):
    from PIL import Image

    p = tmp_path / "red.png"
    Image.new("RGB", (4, 4), (255, 0, 0)).save(p)
    url, beh = scripted_server([(200, OK_BODY, {}, 0)])
    msgs = [{"role": "user", "content": [{"type": "text", "text": "What colour?"}, {"type": "image", "path": str(p)}]}]
    with pytest.raises(InputError, match="supports_images"):
        load_generator(f"openai:m@{url}", supports_images=False).generate(msgs)
    load_generator(f"openai:m@{url}", supports_images=True).generate(msgs)
    part = beh.requests[0]["messages"][0]["content"][1]
    assert part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/png;base64,")
    assert base64.b64decode(part["image_url"]["url"].split(",", 1)[1]) == p.read_bytes()


def test_openai_spec_and_env(monkeypatch):
    monkeypatch.setenv("MINDGAP_OPENAI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    g = load_generator("openai:gpt-4o-mini")
    assert g.base_url == "http://127.0.0.1:9/v1" and g.api_key == "sk-test" and g.supports_images
    assert not load_generator("openai:smollm2").supports_images
    monkeypatch.delenv("MINDGAP_OPENAI_MODEL", raising=False)
    with pytest.raises(SpecError, match="model"):
        load_generator("openai:")
    with pytest.raises(SpecError, match="unknown generator"):
        load_generator("nope:x")


def test_extractive_picks_the_right_span():
    passages = ["Ben Piazza was an American actor. He was born in Little Rock, Arkansas in 1933.",
                "Mask is a 1985 film. Ben Piazza played Mr. Simms in Mask, directed by Peter Bogdanovich.",
                "The Bad News Bears is a 1976 sports comedy film about baseball."]
    span, idx, _ = extract_span("For which film did Ben Piazza play the role of Mr. Simms?", passages)
    assert idx == 1 and span == "Ben Piazza played Mr. Simms in Mask, directed by Peter Bogdanovich."
    span, idx, _ = extract_span("Which sport is The Bad News Bears about?", passages)
    assert idx == 2 and "baseball" in span
    assert extract_span("zzz qqq?", passages) == ("", -1, 0.0)
    long = " ".join(["filler"] * 60 + ["the", "Eiffel", "tower", "is", "in", "Paris"] + ["filler"] * 60) + "."
    span, _, _ = extract_span("Where is the Eiffel tower?", [long], max_words=10)
    assert len(span.split()) == 10 and "Eiffel" in span


def test_extractive_reads_the_prompt_without_structured_context():
    g = load_generator("extractive")
    prompt = ("Answer the following question referencing the following texts or images.\n"
              "Question: Who directed Mask?\nReference text 1: Mask was directed by Peter Bogdanovich.\n"
              "Reference text 2: Cher starred in Mask as well.")
    out = g.generate([{"role": "user", "content": prompt}])
    assert out.text == "Mask was directed by Peter Bogdanovich." and out.extra["source_index"] == 0


def test_mindgap_openai_server_roundtrip_and_errors():
    """The real FastAPI server on 127.0.0.1 (extractive backend: no model load) ↔ the httpx client."""
    import httpx

    from mindgap.rag.openai_server import create_app, serve_in_thread

    app = create_app("extractive", model_name="ex", api_key="secret")
    with serve_in_thread(app) as srv:
        g = load_generator(f"openai:ex@{srv.base_url}", api_key="secret")
        out = g.generate([{"role": "user", "content": "Question: Who wrote Hamlet?\nReference text 1: "
                                                      "Hamlet was written by William Shakespeare."}])
        assert out.text == "Hamlet was written by William Shakespeare." and out.tokens > 0
        assert g.context_window == 1_000_000  # read from /v1/models
        r = httpx.get(srv.base_url + "/models", headers={"Authorization": "Bearer secret"})
        assert r.json()["data"][0]["id"] == "ex"
        assert httpx.get(srv.base_url + "/models").status_code == 401
        bad = httpx.post(srv.base_url + "/chat/completions", headers={"Authorization": "Bearer secret"},
                         json={"model": "ex", "messages": [], "stream": False})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages"
        img = httpx.post(srv.base_url + "/chat/completions", headers={"Authorization": "Bearer secret"},
                         json={"model": "ex", "messages": [{"role": "user", "content": [
                             {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]})
        assert img.status_code == 400 and img.json()["error"]["code"] == "images_not_supported"
        with pytest.raises(GeneratorError, match="HTTP 404.*not found"):
            load_generator(f"openai:other@{srv.base_url}", api_key="secret").generate(MSG)
