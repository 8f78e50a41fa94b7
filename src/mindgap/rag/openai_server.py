"""An OpenAI-compatible server for a mindgap generator (FastAPI): ``/v1/chat/completions``, ``/v1/models``.

Lets any OpenAI client (including mindgap's own ``openai:`` generator) use the offline
local model: ``mindgap llm-serve --generator local:smollm2 --port 8001`` then
``--generator openai:smollm2@http://127.0.0.1:8001/v1``.

Differences from api.openai.com, on purpose: ``temperature`` defaults to 0 (greedy,
deterministic), ``stream`` and ``n > 1`` are refused with a clear 400, image parts are
refused unless the generator ``supports_images``. Errors use OpenAI's shape
``{"error": {"message", "type", "param", "code"}}``. Requests are served one at a time
(one model in memory).

:func:`serve_in_thread` runs a server on 127.0.0.1 and a free port in a background thread
(tests, notebooks).
"""

# no `from __future__ import annotations`: FastAPI must resolve `Request` in the route signatures.

import base64
import threading
import time
import uuid
from typing import Any

from ..errors import MindgapError, require
from ..server.threaded import ServerHandle
from ..server.threaded import serve_in_thread as _serve_in_thread
from .generators import Generator, load_generator

ROLES = {"system", "user", "assistant"}


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, code: str = "invalid_request", status: int = 400):
        super().__init__(message)
        self.message, self.param, self.code, self.status = message, param, code, status


def _error(status: int, message: str, *, param: str | None = None, code: str = "invalid_request",
           kind: str = "invalid_request_error") -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "param": param,
                                                               "code": code}})


def _parse_part(p: Any, i: int, j: int) -> dict[str, Any]:
    if not isinstance(p, dict) or "type" not in p:
        raise _BadRequest(f"messages[{i}].content[{j}] must be an object with a 'type'", f"messages[{i}].content")
    if p["type"] == "text":
        return {"type": "text", "text": str(p.get("text", ""))}
    if p["type"] == "image_url":
        iu = p.get("image_url")
        url = iu.get("url", "") if isinstance(iu, dict) else str(iu or "")
        if not url.startswith("data:") or ";base64," not in url:
            raise _BadRequest("only base64 data: URLs are accepted for images (this server does not fetch URLs)",
                              f"messages[{i}].content[{j}].image_url")
        head, _, data = url.partition(";base64,")
        try:
            raw = base64.b64decode(data, validate=True)
        except ValueError:
            raise _BadRequest("image data URL is not valid base64", f"messages[{i}].content[{j}]") from None
        return {"type": "image", "bytes": raw, "mime": head.removeprefix("data:") or "image/jpeg"}
    raise _BadRequest(f"unsupported content part type {p['type']!r} (text, image_url)", f"messages[{i}].content")


def parse_request(body: Any, gen: Generator) -> dict[str, Any]:
    """Validate a chat-completions body → generate() arguments (raises ``_BadRequest``)."""
    if not isinstance(body, dict):
        raise _BadRequest("the body must be a JSON object")
    if body.get("stream"):
        raise _BadRequest("stream=true is not supported by this server", "stream")
    if int(body.get("n") or 1) != 1:
        raise _BadRequest("only n=1 is supported", "n")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise _BadRequest("'messages' must be a non-empty list", "messages")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise _BadRequest(f"messages[{i}].role must be one of {sorted(ROLES)}", f"messages[{i}].role")
        c = m.get("content")
        if c is None:
            c = ""
        if isinstance(c, list):
            c = [_parse_part(p, i, j) for j, p in enumerate(c)]
            if any(p["type"] == "image" for p in c) and not gen.supports_images:
                raise _BadRequest(f"model {getattr(gen, 'name', '?')!r} does not accept images (text only)",
                                  f"messages[{i}].content", code="images_not_supported")
        elif not isinstance(c, str):
            raise _BadRequest(f"messages[{i}].content must be a string or a list of parts", f"messages[{i}].content")
        out.append({"role": m["role"], "content": c})
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 256
    temperature = body.get("temperature")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    try:
        max_tokens = int(max_tokens)
        temperature = 0.0 if temperature is None else float(temperature)
    except (TypeError, ValueError):
        raise _BadRequest("max_tokens must be an integer and temperature a number", "max_tokens") from None
    if max_tokens < 1:
        raise _BadRequest("max_tokens must be >= 1", "max_tokens")
    if not 0.0 <= temperature <= 2.0:
        raise _BadRequest("temperature must be in [0, 2]", "temperature")
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)):
        raise _BadRequest("stop must be a string or a list of strings", "stop")
    return {"messages": out, "max_tokens": max_tokens, "temperature": temperature, "stop": stop}


def create_app(generator: Generator | str = "local:smollm2", *, model_name: str | None = None,
               api_key: str | None = None) -> Any:
    """A FastAPI app serving ``generator`` under the model id ``model_name``.

    Args:
        generator: a generator or spec.
        model_name: the id clients send (default: the spec's last part, e.g. ``smollm2``).
        api_key: when set, requests must send ``Authorization: Bearer <api_key>``.
    """
    require("fastapi", "server")
    from fastapi import FastAPI, Request

    gen = load_generator(generator) if isinstance(generator, str) else generator
    name = model_name or str(getattr(gen, "name", "mindgap")).split(":")[-1]
    lock = threading.Lock()
    app = FastAPI(title="mindgap OpenAI-compatible generator", version="1")
    app.state.generator, app.state.model_name, app.state.requests = gen, name, 0

    def _auth(request: Request) -> Any:
        if api_key and request.headers.get("authorization", "") != f"Bearer {api_key}":
            return _error(401, "invalid or missing API key", code="invalid_api_key", kind="authentication_error")
        return None

    @app.get("/v1/models")
    def models(request: Request) -> Any:
        bad = _auth(request)
        if bad is not None:
            return bad
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "mindgap",
                                            "context_window": int(gen.context_window),
                                            "supports_images": bool(gen.supports_images)}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        bad = _auth(request)
        if bad is not None:
            return bad
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body is not valid JSON")
        if isinstance(body, dict) and body.get("model") not in (None, name):
            return _error(404, f"model {body.get('model')!r} not found; this server has {name!r}", param="model",
                          code="model_not_found")
        from starlette.concurrency import run_in_threadpool

        try:
            args = parse_request(body, gen)
            gen_result = await run_in_threadpool(_generate, args)
        except _BadRequest as exc:
            return _error(exc.status, exc.message, param=exc.param, code=exc.code)
        except MindgapError as exc:
            code = "context_length_exceeded" if exc.item == "context_window" else exc.code
            return _error(400 if exc.http_status < 500 else 500, str(exc), param=exc.item, code=code,
                          kind="invalid_request_error" if exc.http_status < 500 else "server_error")
        app.state.requests += 1
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                "model": name, "choices": [{"index": 0, "message": {"role": "assistant", "content": gen_result.text},
                                            "finish_reason": gen_result.finish_reason}],
                "usage": {"prompt_tokens": gen_result.prompt_tokens, "completion_tokens": gen_result.tokens,
                          "total_tokens": gen_result.prompt_tokens + gen_result.tokens}}

    def _generate(args: dict[str, Any]) -> Any:
        with lock:
            return gen.generate(args["messages"], max_tokens=args["max_tokens"], temperature=args["temperature"],
                                stop=args["stop"])

    return app


def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, *, startup_timeout: float = 30.0) -> ServerHandle:
    """Run ``app`` with uvicorn in a daemon thread on ``host`` (port 0 = a free port); the
    handle's ``base_url`` ends in ``/v1``."""
    return _serve_in_thread(app, host, port, startup_timeout=startup_timeout, lifespan="off",
                            api_prefix="/v1", name="mindgap-llm-server")
