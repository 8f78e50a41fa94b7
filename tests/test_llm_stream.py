"""Streaming chat completions: the official ``openai`` client against a real ``llm-serve`` app
on 127.0.0.1 (extractive generator: no model load), the raw SSE wire format, and the delta
cleaner that keeps streamed text equal to the plain answer."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from mindgap.rag.generators import load_generator
from mindgap.rag.generators.base import Generation
from mindgap.rag.generators.streaming import DeltaCleaner, chunk_text, generate_streaming
from mindgap.rag.openai_server import create_app, serve_in_thread

PROMPT = ("Question: Who wrote Hamlet?\nReference text 1: Hamlet was written by William Shakespeare around 1600, "
          "in London, for the Lord Chamberlain's Men.\nReference text 2: Paris is in France.")
MSGS = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": PROMPT}]


@pytest.fixture(scope="module")
def server():
    with serve_in_thread(create_app("extractive", model_name="ex", api_key="secret")) as srv:
        yield srv


def _client(srv) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base_url, api_key="secret", max_retries=0, timeout=30)


def test_openai_client_streams_chunks_that_join_to_the_plain_answer(server):
    client = _client(server)
    plain = client.chat.completions.create(model="ex", messages=MSGS)
    answer = plain.choices[0].message.content
    assert answer.startswith("Hamlet was written by William Shakespeare") and plain.choices[0].finish_reason == "stop"

    chunks = list(client.chat.completions.create(model="ex", messages=MSGS, stream=True,
                                                 stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.model == "ex" for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    body = [c for c in chunks if c.choices]
    assert body[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content for c in body if c.choices[0].delta.content]
    assert len(texts) > 3  # really in pieces
    assert "".join(texts) == answer
    assert [c.choices[0].finish_reason for c in body][-1] == "stop"
    assert all(c.choices[0].finish_reason is None for c in body[:-1])
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage.completion_tokens == plain.usage.completion_tokens
    assert usage.usage.total_tokens == plain.usage.total_tokens


def test_openai_client_stream_helper_and_errors(server):
    client = _client(server)
    with client.chat.completions.stream(model="ex", messages=MSGS) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content.startswith("Hamlet was written")
    with pytest.raises(openai.AuthenticationError):
        list(openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0).chat.completions.create(
            model="ex", messages=MSGS, stream=True))
    with pytest.raises(openai.BadRequestError, match="non-empty list"):
        client.chat.completions.create(model="ex", messages=[], stream=True)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="other", messages=MSGS, stream=True)


def test_raw_sse_wire_format(server):
    with httpx.stream("POST", server.base_url + "/chat/completions", headers={"Authorization": "Bearer secret"},
                      json={"model": "ex", "messages": MSGS, "stream": True}, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in r.iter_lines() if ln]
    assert all(ln.startswith("data: ") for ln in lines)
    assert lines[-1] == "data: [DONE]"
    objs = [json.loads(ln[6:]) for ln in lines[:-1]]
    assert objs[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert objs[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert "usage" not in objs[-1]  # only with stream_options.include_usage
    bad = httpx.post(server.base_url + "/chat/completions", headers={"Authorization": "Bearer secret"},
                     json={"model": "ex", "messages": MSGS, "stream": "yes"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "stream"


def test_mindgap_openai_generator_still_works_against_the_server(server):
    g = load_generator(f"openai:ex@{server.base_url}", api_key="secret")
    assert g.generate(MSGS).text.startswith("Hamlet was written")


def test_delta_cleaner_strips_and_cuts_at_stop_sequences_split_across_pieces():
    out: list[str] = []
    c = DeltaCleaner(out.append, stop=["\nQuestion:"])
    for p in ["  Paris", " is the", " capital.  ", "\nQue", "stion: more"]:
        c.feed(p)
    c.close()
    assert "".join(out) == "Paris is the capital." and c.stopped
    out2: list[str] = []
    c2 = DeltaCleaner(out2.append, stop=["\nQuestion:"])
    for p in ["Paris", "\nQue", "ry ends  "]:
        c2.feed(p)
    c2.close()
    assert "".join(out2) == "Paris\nQuery ends"
    assert "".join(chunk_text("  a  b\nc ")) == "  a  b\nc "


def test_generate_streaming_fills_in_when_the_stream_falls_short():
    class Short:
        name, context_window, supports_images = "short", 100, False

        def count_tokens(self, text):
            return len(text.split())

        def generate(self, messages, **kw):
            raise AssertionError("stream() should be used")

        def stream(self, messages, *, max_tokens, temperature, stop, on_text):
            on_text("Hello")
            return Generation(text="Hello world", tokens=2, seconds=0.0, extra={"streamed": "tokens"})

    out: list[str] = []
    res = generate_streaming(Short(), MSGS, on_delta=out.append)
    assert "".join(out) == res.text == "Hello world" and res.extra["streamed"] == "tokens"
