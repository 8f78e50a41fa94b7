"""Prompt building: the paper's template, images as words or attached, the context-window budget."""

from __future__ import annotations

import pytest

from mindgap.errors import InputError
from mindgap.rag import RagPipeline, build_messages, load_generator, load_template
from mindgap.rag.context import NO_DESCRIPTION, ImageDescriber, hits_to_sources, snippet
from mindgap.rag.generators.base import count_message_tokens
from mindgap.types import Hit, Modality

Q = "For which film did Ben Piazza play the role of Mr. Simms?"


def _hits(n_text: int = 6) -> list[Hit]:
    hits = [Hit(id=f"t{i}", modality=Modality.TEXT, cosine=0.8 - i / 100, score=5 - i, rank=i + 1,
                text=f"Passage {i} about Ben Piazza and film number {i}. " * 8) for i in range(n_text)]
    hits.insert(1, Hit(id="img-cap", modality=Modality.IMAGE, cosine=0.3, score=4.5, rank=2, text="Celine Dion",
                       uri="/nonexistent/celine.jpg"))
    hits.append(Hit(id="img-bare", modality=Modality.IMAGE, cosine=0.2, score=-1, rank=len(hits) + 1, uri="/x.png"))
    for r, h in enumerate(hits, 1):
        h.rank = r
    return hits


def test_paper_template_verbatim_and_images_as_words():
    gen = load_generator("extractive")
    srcs = hits_to_sources(_hits(1), ImageDescriber())
    built = build_messages(Q, srcs, load_template("paper"), gen)
    sys_msg, user = built.messages
    assert sys_msg == {"role": "system", "content": "You are a helpful assistant."}
    assert user["content"].startswith("Answer the following question referencing the following texts or images.\n"
                                      f"Question: {Q}\nReference text 1: Passage 0")
    assert "\nReference image 2: [an image, not shown; described by its stored caption:] Celine Dion\n" in user["content"]
    assert user["content"].endswith(f"Reference image 3: [{NO_DESCRIPTION}]")
    assert [s.how for s in built.kept] == ["text", "as words: its stored caption", "as words: no description available"]
    assert not built.dropped and built.prompt_tokens <= built.budget
    norag = build_messages(Q, srcs, load_template("paper"), gen, no_rag=True)
    assert norag.messages[-1]["content"] == f"Answer the following question.\nQuestion: {Q}" and not norag.kept


def test_tiny_context_window_drops_least_relevant_first():
    gen = load_generator("extractive", context_window=400)
    srcs = hits_to_sources(_hits(6))
    built = build_messages(Q, srcs, load_template("paper"), gen, max_tokens=32)
    assert built.dropped and built.kept == srcs[: len(built.kept)]  # a prefix of the ranking survives
    assert built.dropped == srcs[len(built.kept):]
    assert built.prompt_tokens <= 400 - 32 - 8 == built.budget
    assert count_message_tokens(gen, built.messages) == built.prompt_tokens
    # one more source would not have fitted
    more = build_messages(Q, srcs[: len(built.kept) + 1], load_template("paper"), load_generator("extractive"))
    assert more.prompt_tokens > built.budget

    ans = RagPipeline(None, gen, max_tokens=32).ask(Q, hits=_hits(6))
    assert ans.truncated and ans.dropped and any("dropped to fit the 400-token context window" in n for n in ans.notes)
    assert "[dropped]" in ans.explain() and ans.to_dict()["truncated"] is True
    assert ans.prompt_tokens <= ans.budget


def test_question_alone_too_long_is_a_clear_error():
    gen = load_generator("extractive", context_window=60)
    with pytest.raises(InputError, match="question alone") as ei:
        build_messages(Q * 10, hits_to_sources(_hits(2)), load_template("paper"), gen, max_tokens=32)
    assert ei.value.item == "context_window"


def test_vision_generator_gets_the_image_itself(tmp_path):
    gen = load_generator("openai:gpt-4o-mini@http://127.0.0.1:9/v1", context_window=100_000)
    assert gen.supports_images
    srcs = hits_to_sources(_hits(1), attach_images=True)
    built = build_messages(Q, srcs, load_template("paper"), gen)
    parts = built.messages[-1]["content"]
    assert isinstance(parts, list)
    images = [p for p in parts if p["type"] == "image"]
    assert [p["path"] for p in images] == ["/nonexistent/celine.jpg", "/x.png"]
    text = "".join(p.get("text", "") for p in parts)
    assert "Reference image 2: (image attached; caption: Celine Dion)" in text
    assert srcs[1].how == "image attached"


def test_short_template_snippets_and_cap():
    gen = load_generator("extractive")
    long = ("Ben Piazza was an actor. He liked tea. Cats are nice. Piazza played Mr. Simms in Mask. "
            "The weather was fine.")
    assert snippet(long, Q, 2) == "Ben Piazza was an actor. Piazza played Mr. Simms in Mask."
    srcs = hits_to_sources(_hits(8))
    built = build_messages(Q, srcs, load_template("short"), gen)
    assert len(built.kept) == 5 and len(built.capped) == len(srcs) - 5 and not built.dropped
    user = built.messages[-1]["content"]
    assert user.startswith("Context:\n[1] ") and user.endswith(f"Question: {Q}\nShort answer:")


def test_template_files(tmp_path):
    t = tmp_path / "mine.txt"
    t.write_text("system: Be brief.\nQ: {question}\nDocs:\n{references}\nA:")
    tpl = load_template(t)
    assert tpl.system == "Be brief." and tpl.name == "mine"
    msgs = build_messages("Who?", hits_to_sources(_hits(1))[:1], tpl, load_generator("extractive")).messages
    assert msgs[1]["content"].startswith("Q: Who?\nDocs:\nReference text 1: Passage 0")
    toml = tmp_path / "t.toml"
    toml.write_text('user = "{question} -- {references}"\nreference_text = "<{index}> {content}"\nmax_sources = 1\n')
    assert load_template(toml).max_sources == 1
    bad = tmp_path / "bad.toml"
    bad.write_text('user = "{question} {oops}"\n')
    with pytest.raises(InputError, match="oops") as ei:
        load_template(bad)
    assert ei.value.item == "user"
    with pytest.raises(InputError, match="unknown template field"):
        (tmp_path / "u.json").write_text('{"usr": "{question}"}')
        load_template(tmp_path / "u.json")
    with pytest.raises(InputError, match="template not found"):
        load_template(tmp_path / "missing.txt")
