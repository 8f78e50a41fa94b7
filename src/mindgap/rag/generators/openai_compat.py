"""``openai:<model>[@base_url]``: any OpenAI-compatible chat-completions server, over httpx.

Works with api.openai.com, vLLM, llama.cpp's server, Ollama's ``/v1``, LM Studio and
mindgap's own :mod:`mindgap.rag.openai_server`. Settings, first match wins:

* model: the spec (``openai:gpt-4o-mini``), else ``$MINDGAP_OPENAI_MODEL``;
* base URL: ``@url`` in the spec, option ``base_url``, ``$MINDGAP_OPENAI_BASE_URL``,
  ``$OPENAI_BASE_URL``, else ``https://api.openai.com/v1`` (a URL with no path gets ``/v1``);
* API key: option ``api_key``, ``$MINDGAP_OPENAI_API_KEY``, ``$OPENAI_API_KEY`` (none is fine
  for local servers);
* image input: option ``supports_images``, ``$MINDGAP_OPENAI_VISION`` (1/0), else a guess from
  the model name (gpt-4o, gpt-4.1, gpt-5, *-vl*, llava, pixtral, gemini, claude). Images are
  sent as base64 ``data:`` URLs in ``image_url`` parts;
* context window: option ``context_window``, ``$MINDGAP_OPENAI_CONTEXT_WINDOW``, the server's
  ``/models`` entry (``context_window`` / ``max_model_len`` / ``context_length``), else 8192.

Failures: a timeout, a connection error, HTTP 408/409/429 and any 5xx are retried
``max_retries`` times with exponential back-off (``backoff × 2^attempt``, capped by
``max_backoff``; a ``Retry-After`` header is honoured up to the cap); then, and on any other
HTTP error, a :class:`GeneratorError` names the URL, the status and the server's message.
Token counts come from the server's ``usage``; :meth:`count_tokens` is an estimate.
"""

from __future__ import annotations

import base64
import logging
import mimetypes
import os
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ...errors import InputError, SpecError, require
from ...registry import generators
from .base import (Generation, GeneratorError, Message, apply_stop, approx_tokens, check_generate_args,
                   count_images)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_VISION_HINTS = ("gpt-4o", "gpt-4.1", "gpt-5", "gpt-4-turbo", "vision", "-vl", "vl-", "llava", "pixtral",
                 "gemini", "claude", "qwen2.5-vl", "qwen2-vl", "minicpm-v", "idefics", "smolvlm")
RETRY_STATUS = {408, 409, 429}


def _env(*names: str) -> str | None:
    for n in names:
        v = os.environ.get(n)
        if v:
            return v
    return None


def normalize_base_url(url: str) -> str:
    """Strip a trailing slash; a bare ``http://host:port`` gets the conventional ``/v1``."""
    url = url.strip().rstrip("/")
    p = urlparse(url)
    if p.scheme not in {"http", "https"} or not p.netloc:
        raise SpecError(f"base URL {url!r} is not an http(s) URL", item="base_url")
    return url + "/v1" if p.path in {"", "/"} else url


def image_part_to_openai(part: dict[str, Any], detail: str = "auto") -> dict[str, Any]:
    """mindgap's ``{"type": "image", "path": ...}`` → an OpenAI ``image_url`` part (base64 data URL)."""
    if part.get("type") == "image_url":
        return part
    path = part.get("path")
    data: bytes | None = part.get("bytes")
    if data is None:
        if not path or not Path(path).is_file():
            raise InputError(f"image file not found: {path!r}", item=str(path))
        data = Path(path).read_bytes()
    mime = part.get("mime") or (mimetypes.guess_type(str(path or ""))[0]) or "image/jpeg"
    url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return {"type": "image_url", "image_url": {"url": url, "detail": detail}}


def to_openai_messages(messages: list[Message], detail: str = "auto") -> list[dict[str, Any]]:
    """Convert mindgap messages (image parts by path) to the wire format."""
    out = []
    for m in messages:
        c = m.get("content")
        if isinstance(c, str) or c is None:
            out.append({"role": m["role"], "content": c or ""})
        else:
            parts = [image_part_to_openai(p, detail) if p.get("type") in {"image", "image_url"}
                     else {"type": "text", "text": p.get("text", "")} for p in c]
            out.append({"role": m["role"], "content": parts})
    return out


class OpenAICompatGenerator:
    """Chat completions against an OpenAI-compatible server.

    Args:
        model: model name sent to the server.
        base_url: server base URL (``.../v1``); see the module docstring for the fallbacks.
        api_key: bearer token; see the module docstring.
        timeout: seconds per request (read/write/pool; connect is at most 10 s).
        max_retries: extra attempts after a retryable failure (0 = no retry).
        backoff: first back-off in seconds; doubles each retry.
        max_backoff: cap on one back-off (and on a server's ``Retry-After``).
        context_window: override the model's context size.
        supports_images: override the vision guess.
        image_detail: ``auto`` / ``low`` / ``high`` for image parts.

    Attributes:
        stats: ``{"requests": n, "retries": n, "failures": n}`` since creation.
    """

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, max_retries: int = 3, backoff: float = 0.5, max_backoff: float = 8.0,
                 context_window: int | None = None, supports_images: bool | None = None,
                 image_detail: str = "auto", name: str | None = None) -> None:
        require("httpx", "server")
        model = (model or _env("MINDGAP_OPENAI_MODEL") or "").strip()
        if not model:
            raise SpecError("openai generator needs a model: openai:<model>[@base_url] or $MINDGAP_OPENAI_MODEL",
                            item="model")
        if float(timeout) <= 0:
            raise InputError("timeout must be > 0 seconds", item="timeout")
        if int(max_retries) < 0:
            raise InputError("max_retries must be >= 0", item="max_retries")
        self.model = model
        self.base_url = normalize_base_url(base_url or _env("MINDGAP_OPENAI_BASE_URL", "OPENAI_BASE_URL")
                                           or DEFAULT_BASE_URL)
        self.api_key = api_key or _env("MINDGAP_OPENAI_API_KEY", "OPENAI_API_KEY")
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.image_detail = image_detail
        self.name = name or f"openai:{model}@{self.base_url}"
        env_vis = _env("MINDGAP_OPENAI_VISION")
        if supports_images is None and env_vis is not None:
            supports_images = env_vis.strip().lower() in {"1", "true", "yes"}
        self.supports_images = (any(h in model.lower() for h in _VISION_HINTS)
                                if supports_images is None else bool(supports_images))
        env_ctx = _env("MINDGAP_OPENAI_CONTEXT_WINDOW")
        self._context_window = int(context_window or env_ctx or 0) or None
        self.stats = {"requests": 0, "retries": 0, "failures": 0}
        self._client: Any = None
        self._lock = threading.Lock()

    # -- protocol ---------------------------------------------------------------------------
    @property
    def context_window(self) -> int:
        """The override, else what the server's ``/models`` says, else 8192."""
        if self._context_window is None:
            self._context_window = self._lookup_context_window() or 8192
        return self._context_window

    @context_window.setter
    def context_window(self, value: int) -> None:
        self._context_window = int(value)

    def count_tokens(self, text: str) -> int:
        """An estimate (:func:`approx_tokens`); the server's ``usage`` is exact after a call."""
        return approx_tokens(text)

    def generate(self, messages: list[Message], *, max_tokens: int = 64, temperature: float = 0.0,
                 stop: list[str] | None = None) -> Generation:
        """One chat completion, with retries; see the class docstring."""
        check_generate_args(max_tokens, temperature)
        if count_images(messages) and not self.supports_images:
            raise InputError(f"model {self.model!r} is not marked image-capable but the messages hold images; "
                             "pass supports_images=True (or MINDGAP_OPENAI_VISION=1) if it is",
                             item="supports_images")
        payload: dict[str, Any] = {"model": self.model, "messages": to_openai_messages(messages, self.image_detail),
                                   "max_tokens": int(max_tokens), "temperature": float(temperature)}
        if stop:
            payload["stop"] = list(stop)[:4]
        t0 = time.perf_counter()
        body, retries = self._post("/chat/completions", payload)
        seconds = time.perf_counter() - t0
        try:
            choice = body["choices"][0]
            content = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise GeneratorError(f"{self.base_url}/chat/completions returned no choices[0].message: "
                                 f"{str(body)[:200]}", item="response") from None
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        text, cut = apply_stop(str(content), stop)
        usage = body.get("usage") or {}
        tokens = int(usage.get("completion_tokens") or approx_tokens(text))
        return Generation(text=text.strip(), tokens=tokens, seconds=seconds,
                          prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          model=str(body.get("model") or self.model),
                          finish_reason="stop" if cut else str(choice.get("finish_reason") or "stop"),
                          retries=retries)

    # -- HTTP -------------------------------------------------------------------------------
    def _http(self) -> Any:
        import httpx

        with self._lock:
            if self._client is None:
                headers = {"Content-Type": "application/json"}
                if self.api_key:
                    headers["Authorization"] = f"Bearer {self.api_key}"
                self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(
                    self.timeout, connect=min(self.timeout, 10.0)))
            return self._client

    def _post(self, path: str, payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
        import httpx

        url = self.base_url + path
        client = self._http()
        attempt = 0
        while True:
            retry_after: float | None = None
            self.stats["requests"] += 1
            try:
                r = client.post(url, json=payload)
            except httpx.TimeoutException:
                err = f"request timed out after {self.timeout:g} s (option timeout)"
            except httpx.TransportError as exc:
                err = f"cannot reach the server ({type(exc).__name__}: {exc})"
            else:
                if r.status_code == 200:
                    try:
                        return r.json(), attempt
                    except ValueError:
                        raise GeneratorError(f"{url} returned HTTP 200 but not JSON: {r.text[:200]!r}",
                                             item="response") from None
                msg = _server_message(r)
                err = f"HTTP {r.status_code}: {msg}"
                if r.status_code not in RETRY_STATUS and r.status_code < 500:
                    self.stats["failures"] += 1
                    hint = {401: " (check the API key: $OPENAI_API_KEY / $MINDGAP_OPENAI_API_KEY)",
                            404: " (check the base URL and the model name)"}.get(r.status_code, "")
                    raise GeneratorError(f"openai generator {self.model!r} at {url}: {err}{hint}", item="base_url")
                retry_after = _retry_after(r.headers.get("retry-after"))
            if attempt >= self.max_retries:
                self.stats["failures"] += 1
                raise GeneratorError(f"openai generator {self.model!r} at {url}: {err}; gave up after "
                                     f"{attempt + 1} attempt(s) ({attempt} retr{'y' if attempt == 1 else 'ies'}, "
                                     "option max_retries)", item="base_url")
            delay = min(self.max_backoff, self.backoff * (2 ** attempt))
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.max_backoff))
            log.warning("openai generator: %s; retry %d/%d in %.2f s", err, attempt + 1, self.max_retries, delay)
            time.sleep(delay)
            attempt += 1
            self.stats["retries"] += 1

    def _lookup_context_window(self) -> int | None:
        """Ask ``GET /models`` for the model's context size; ``None`` when unknown/unreachable."""
        try:
            r = self._http().get(self.base_url + "/models", timeout=min(self.timeout, 5.0))
            for m in (r.json().get("data") or []) if r.status_code == 200 else []:
                if m.get("id") == self.model:
                    for key in ("context_window", "max_model_len", "context_length"):
                        if m.get(key):
                            return int(m[key])
        except Exception as exc:  # noqa: BLE001 - best effort; the default is safe
            log.debug("context window lookup failed: %s", exc)
        return None

    def close(self) -> None:
        """Close the HTTP connection pool."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:
        return f"OpenAICompatGenerator(model={self.model!r}, base_url={self.base_url!r})"


def _server_message(r: Any) -> str:
    try:
        body = r.json()
        err = body.get("error", body) if isinstance(body, dict) else body
        if isinstance(err, dict):
            return str(err.get("message") or err.get("detail") or err)[:300]
        return str(err)[:300]
    except ValueError:
        return (r.text or r.reason_phrase or "")[:300]


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


@generators.register("openai", help="OpenAI-compatible chat server: openai:<model>[@base_url] (httpx)")
def _make(rest: str, **options: Any) -> OpenAICompatGenerator:
    model, base = rest, options.pop("base_url", None)
    if "@" in rest:
        m, _, b = rest.rpartition("@")
        if b.startswith(("http://", "https://")):
            model, base = m, b
    return OpenAICompatGenerator(model, base_url=base, **options)
