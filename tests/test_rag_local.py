"""The real offline generator (SmolLM2-135M-Instruct GGUF): determinism, exact window
accounting, and answering through a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import importlib.util

import pytest

from mindgap.rag import RagPipeline, build_messages, load_generator, load_template
from mindgap.rag.context import hits_to_sources
from mindgap.types import Hit, Modality

MSGS = [{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


@pytest.fixture(scope="module")
def smollm2():
    g = load_generator("local:smollm2")
    g.load()
    return g


def test_local_generator_is_deterministic_and_non_empty(smollm2):
    a = smollm2.generate(MSGS, max_tokens=8, temperature=0)
    b = smollm2.generate(MSGS, max_tokens=8, temperature=0)
    assert a.text and a.text == b.text
    assert "Paris" in a.text
    assert 0 < a.tokens <= 8 and a.seconds > 0 and a.tokens_per_s > 0
    assert a.prompt_tokens == smollm2.count_message_tokens(MSGS)
    assert smollm2.context_window == 8192 and not smollm2.supports_images
    info = smollm2.info()
    assert info["backend"] in {"transformers", "llama_cpp"} and info["load_seconds"] > 0
    cut = smollm2.generate(MSGS, max_tokens=8, stop=["Paris"])
    assert "Paris" not in cut.text and cut.finish_reason == "stop"


def test_exact_window_accounting_with_the_real_tokenizer(smollm2):
    hits = [Hit(id=f"t{i}", modality=Modality.TEXT, cosine=0.5, score=1.0 - i / 10, rank=i + 1,
                text=f"Paris is the capital and largest city of France, fact number {i}. " * 6) for i in range(8)]
    old = smollm2.context_window
    smollm2.context_window = 400
    try:
        built = build_messages("What is the capital of France?", hits_to_sources(hits), load_template("paper"),
                               smollm2, max_tokens=8)
        assert built.dropped and 0 < len(built.kept) < 8
        assert smollm2.count_message_tokens(built.messages) == built.prompt_tokens <= 400 - 8 - 8
        ans = RagPipeline(None, smollm2, max_tokens=8).ask("What is the capital of France?", hits=hits)
        assert ans.answer and ans.truncated and ans.generation.prompt_tokens == ans.prompt_tokens
    finally:
        smollm2.context_window = old


def test_openai_client_answers_through_a_real_local_server(smollm2):
    from mindgap.rag.openai_server import create_app, serve_in_thread

    direct = smollm2.generate(MSGS, max_tokens=8)
    with serve_in_thread(create_app(smollm2, model_name="smollm2")) as srv:
        client = load_generator(f"openai:smollm2@{srv.base_url}", timeout=120, max_retries=0)
        assert client.context_window == 8192  # from /v1/models
        remote = client.generate(MSGS, max_tokens=8, temperature=0)
        assert remote.text == direct.text and remote.tokens == direct.tokens
        assert remote.prompt_tokens == direct.prompt_tokens
        if importlib.util.find_spec("openai") is not None:  # the official client too, when installed
            import openai

            oc = openai.OpenAI(base_url=srv.base_url, api_key="unused")
            r = oc.chat.completions.create(model="smollm2", messages=MSGS, max_tokens=8, temperature=0)
            assert r.choices[0].message.content == direct.text


def test_local_generator_streams_real_tokens_equal_to_the_plain_answer(smollm2):
    """TextIteratorStreamer: several deltas, joined equal to generate(); through the openai client too."""
    from mindgap.rag.generators.streaming import generate_streaming
    from mindgap.rag.openai_server import create_app, serve_in_thread

    direct = smollm2.generate(MSGS, max_tokens=12, temperature=0)
    pieces: list[str] = []
    res = generate_streaming(smollm2, MSGS, on_delta=pieces.append, max_tokens=12, temperature=0)
    assert res.extra["streamed"] == ("tokens" if smollm2.backend == "transformers" else "chunked")
    assert "".join(pieces) == res.text == direct.text and res.tokens == direct.tokens
    if smollm2.backend == "transformers":
        assert len(pieces) > 2
    cut: list[str] = []
    generate_streaming(smollm2, MSGS, on_delta=cut.append, max_tokens=8, stop=["Paris"])
    assert "Paris" not in "".join(cut)
    if importlib.util.find_spec("openai") is not None:
        import openai

        with serve_in_thread(create_app(smollm2, model_name="smollm2")) as srv:
            oc = openai.OpenAI(base_url=srv.base_url, api_key="unused", max_retries=0, timeout=120)
            chunks = list(oc.chat.completions.create(model="smollm2", messages=MSGS, max_tokens=12, temperature=0,
                                                     stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == direct.text
        assert chunks[-1].choices[0].finish_reason == direct.finish_reason
