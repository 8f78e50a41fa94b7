"""Build a tiny, randomly initialised transformers CLIPModel + CLIPProcessor fully offline.

Used by the encoder / ONNX tests: the tokenizer is a real CLIP byte-level BPE built from a
vocabulary and a few merges written here (no download), the model is a 2-layer, 32-wide
text and vision transformer (image 32×32, patch 8).
"""

from __future__ import annotations

from mindgap.encoders import DEFAULT_OFFLINE_SPEC

from pathlib import Path

MERGES = [("t", "h"), ("th", "e</w>"), ("d", "o"), ("do", "g</w>"), ("a", "n"), ("an", "d</w>"),
          ("i", "n"), ("o", "n</w>"), ("r", "e"), ("e", "r</w>"), ("a", "t</w>"), ("c", "at</w>")]


def _bytes_to_unicode() -> list[str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def tiny_vocab() -> dict[str, int]:
    chars = _bytes_to_unicode()
    vocab: dict[str, int] = {}
    for c in chars + [c + "</w>" for c in chars]:
        vocab[c] = len(vocab)
    for a, b in MERGES:
        vocab.setdefault(a + b, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


def make_tiny_clip(out: Path, *, seed: int = 0, max_positions: int = 77) -> Path:
    """Save a tiny random CLIPModel + processor (tokenizer.json, preprocessor_config.json) to ``out``."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    vocab = tiny_vocab()
    tok = CLIPTokenizer(vocab=vocab, merges=list(MERGES))
    tok.model_max_length = max_positions
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    cfg = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         vocab_size=len(vocab), max_position_embeddings=max_positions,
                         bos_token_id=bos, eos_token_id=eos, pad_token_id=eos),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(seed)
    model = CLIPModel(cfg).eval()
    imp = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    out = Path(out)
    model.save_pretrained(out)
    CLIPProcessor(image_processor=imp, tokenizer=tok).save_pretrained(out)
    imp.save_pretrained(out)  # the hub layout also has preprocessor_config.json
    return out


#: A word-level vocabulary for the tiny BERT: common Flickr8k caption words, so real captions
#: tokenise to distinct ids (not all [UNK]).
CAPTION_WORDS = """a an the and in on of with at to for from by his her its their is are that this while near
    man woman men women boy girl boys girls child children people person lady baby dog dogs cat puppy horse
    bird player team crowd group two three four one several white black brown red blue green yellow orange
    pink purple gray grey dark little young small large big old wearing shirt shorts jacket hat helmet dress
    coat pants jeans swim runs running run walks walking walk plays playing play sits sitting sit stands
    standing jumps jumping jump rides riding ride climbs climbing holding holds looks looking wait appears
    laying lying catch chases throws swims swimming beach water sand ocean pool lake river snow grass field
    park street road city building wall rock mountain hill tree trees air ball frisbee bike bicycle car boat
    dock bench stick toy gun head paws face hair hand camera closeup blond no over down up into through
    front behind other sky waves sandcastle build"""


def make_tiny_vtde(out: Path, *, seed: int = 0) -> Path:
    """Save a tiny random ``VisionTextDualEncoderModel`` (CLIP ViT + BERT, 8-d) + processor to ``out``."""
    import torch
    from transformers import (BertConfig, BertTokenizerFast, CLIPVisionConfig, VisionTextDualEncoderConfig,
                              VisionTextDualEncoderModel, VisionTextDualEncoderProcessor)
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *CAPTION_WORDS.split()]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)})  # transformers 5: `vocab`, not a file
    cfg = VisionTextDualEncoderConfig.from_vision_text_configs(
        CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         image_size=32, patch_size=8),
        BertConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                   num_attention_heads=2, max_position_embeddings=64), projection_dim=8)
    torch.manual_seed(seed)
    VisionTextDualEncoderModel(cfg).eval().save_pretrained(out)
    imp = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    VisionTextDualEncoderProcessor(image_processor=imp, tokenizer=tok).save_pretrained(out)
    imp.save_pretrained(out)
    return out


# -- shared, memoised artefacts (one per test session, whichever test module asks first) ----
_CACHE: dict[str, Path] = {}


def tiny_clip_dir(tmp_path_factory) -> Path:  # noqa: ANN001 - pytest's TempPathFactory
    """The tiny CLIP directory (built once per session)."""
    if "clip" not in _CACHE:
        _CACHE["clip"] = make_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "model")
    return _CACHE["clip"]


def tiny_onnx_dir(tmp_path_factory) -> Path:  # noqa: ANN001
    """The tiny CLIP exported to ONNX with int8 graphs (once per session)."""
    if "onnx" not in _CACHE:
        from mindgap.encoders.export import export_onnx

        src = tiny_clip_dir(tmp_path_factory)
        _CACHE["onnx"] = export_onnx(f"hf:{src}", tmp_path_factory.mktemp("tiny-onnx") / "onnx", int8=True)
    return _CACHE["onnx"]


def tiny_vtde_dir(tmp_path_factory) -> Path:  # noqa: ANN001
    """The tiny VisionTextDualEncoderModel directory (built once per session)."""
    if "vtde" not in _CACHE:
        _CACHE["vtde"] = make_tiny_vtde(tmp_path_factory.mktemp("tiny-vtde") / "model")
    return _CACHE["vtde"]


def tiny_vtde_onnx_dir(tmp_path_factory) -> Path:  # noqa: ANN001
    """The tiny VisionTextDualEncoderModel exported to ONNX (fp32 + int8, once per session)."""
    if "vtde-onnx" not in _CACHE:
        from mindgap.encoders.export import export_onnx

        _CACHE["vtde-onnx"] = export_onnx(f"hf:{tiny_vtde_dir(tmp_path_factory)}",
                                          tmp_path_factory.mktemp("tiny-vtde-onnx") / "onnx", int8=True)
    return _CACHE["vtde-onnx"]


def bundled_dir() -> Path | None:
    """The bundled offline model directory, or None while it is not trained yet."""
    from mindgap.encoders.dual import BUNDLED_DIR, DEFAULT_OFFLINE_MODEL

    d = BUNDLED_DIR / DEFAULT_OFFLINE_MODEL
    return d if (d / "model.safetensors").is_file() else None


def bundled_onnx_dir(tmp_path_factory) -> Path:  # noqa: ANN001
    """The bundled default model (``DEFAULT_OFFLINE_SPEC``) exported to ONNX with int8 graphs (once per session)."""
    if "bundled" not in _CACHE:
        from mindgap.datasets import load_caption_set
        from mindgap.encoders.export import export_onnx

        calib = [r.path for r in load_caption_set("flickr8k_224", split="val")[:32]]  # never the test split
        _CACHE["bundled"] = export_onnx(DEFAULT_OFFLINE_SPEC, tmp_path_factory.mktemp("bundled-onnx") / "onnx",
                                        int8=True, calib_images=calib)
    return _CACHE["bundled"]
