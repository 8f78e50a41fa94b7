"""An OpenAI-compatible server for a mindgap generator (FastAPI): ``/v1/chat/completions``, ``/v1/models``.

Lets any OpenAI client (including mindgap's own ``openai:`` generator) use the offline
local model: ``mindgap llm-serve --generator local:smollm2 --port 8001`` then
``--generator openai:smollm2@http://127.0.0.1:8001/v1``.

Streaming (``stream: true``) answers with server-sent events shaped as OpenAI's:
``chat.completion.chunk`` objects — the first with ``delta.role``, then ``delta.content``
pieces, the last with an empty delta and ``finish_reason`` — then ``data: [DONE]``;
``stream_options.include_usage`` adds the usage chunk (``choices: []``) before ``[DONE]``.
``local:`` models on the transformers backend stream real tokens as they are decoded
(``TextIteratorStreamer``); other generators (``extractive``, ``openai:``, llama.cpp) generate
the whole answer, then send it in word-sized chunks (see
:mod:`mindgap.rag.generators.streaming`). The joined deltas equal the non-streamed answer.
An error before the first token is a normal JSON error; one after it is an SSE ``data:
{"error": ...}`` event (what the openai client raises as ``APIError``).

Differences from api.openai.com, on purpose: ``temperature`` defaults to 0 (greedy,
deterministic), ``n > 1`` is refused with a clear 400, image parts are
refused unless the generator ``supports_images``. Errors use OpenAI's shape
``{"error": {"message", "type", "param", "code"}}``. Requests are served one at a time
(one model in memory).

:func:`serve_in_thread` runs a server on 127.0.0.1 and a free port in a background thread
(tests, notebooks).
"""

# no `from __future__ import annotations`: FastAPI must resolve `Request` in the route signatures.

import base64
import json
import queue
import threading
import time
import uuid
from typing import Any

from ..errors import MindgapError, require
from ..server.threaded import ServerHandle
from ..server.threaded import serve_in_thread as _serve_in_thread
from .generators import Generator, load_generator
from .generators.streaming import generate_streaming

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
    if not isinstance(body.get("stream", False), (bool, type(None))):
        raise _BadRequest("stream must be a boolean", "stream")
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise _BadRequest("stream_options must be an object", "stream_options")
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
    return {"messages": out, "max_tokens": max_tokens, "temperature": temperature, "stop": stop,
            "stream": bool(body.get("stream")), "include_usage": bool((opts or {}).get("include_usage"))}


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
            if args["stream"]:
                return await _stream(args)
            gen_result = await run_in_threadpool(_generate, args)
        except _BadRequest as exc:
            return _error(exc.status, exc.message, param=exc.param, code=exc.code)
        except MindgapError as exc:
            return _mindgap_error(exc)
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

    async def _stream(args: dict[str, Any]) -> Any:
        """Generate in a thread, pushing deltas to a queue that the SSE body drains.

        The first event is awaited before answering, so an error raised before any text (a
        too-long prompt, say) is still a normal JSON error with its status.
        """
        from fastapi.responses import StreamingResponse
        from starlette.concurrency import run_in_threadpool

        events: queue.Queue = queue.Queue()

        def work() -> None:
            try:
                with lock:
                    res = generate_streaming(gen, args["messages"], max_tokens=args["max_tokens"],
                                             temperature=args["temperature"], stop=args["stop"],
                                             on_delta=lambda t: events.put(("delta", t)))
                events.put(("done", res))
            except BaseException as exc:  # noqa: BLE001 - reported to the client
                events.put(("error", exc))

        threading.Thread(target=work, name="mindgap-llm-stream", daemon=True).start()
        first = await run_in_threadpool(events.get)
        if first[0] == "error":
            if isinstance(first[1], MindgapError):
                return _mindgap_error(first[1])
            return _error(500, f"generation failed: {first[1]}", code="server_error", kind="server_error")
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            d = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": name,
                 "system_fingerprint": None,
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            d.update(extra)
            return f"data: {json.dumps(d, ensure_ascii=False)}\n\n"

        def body() -> Any:  # a sync iterator: starlette runs each step in its thread pool
            yield chunk({"role": "assistant", "content": ""})
            ev = first
            while True:
                kind, val = ev
                if kind == "delta":
                    yield chunk({"content": val})
                elif kind == "done":
                    app.state.requests += 1
                    yield chunk({}, val.finish_reason)
                    if args["include_usage"]:
                        usage = {"prompt_tokens": val.prompt_tokens, "completion_tokens": val.tokens,
                                 "total_tokens": val.prompt_tokens + val.tokens}
                        d = json.loads(chunk({})[6:])
                        d.update(choices=[], usage=usage)
                        yield f"data: {json.dumps(d)}\n\n"
                    break
                else:
                    msg = str(val) if isinstance(val, MindgapError) else f"generation failed: {val}"
                    err = {"error": {"message": msg, "type": "server_error", "param": None, "code": "server_error"}}
                    yield f"data: {json.dumps(err)}\n\n"
                    break
                ev = events.get()
            yield "data: [DONE]\n\n"

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app


def _mindgap_error(exc: MindgapError) -> Any:
    code = "context_length_exceeded" if exc.item == "context_window" else exc.code
    return _error(400 if exc.http_status < 500 else 500, str(exc), param=exc.item, code=code,
                  kind="invalid_request_error" if exc.http_status < 500 else "server_error")


def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, *, startup_timeout: float = 30.0) -> ServerHandle:
    """Run ``app`` with uvicorn in a daemon thread on ``host`` (port 0 = a free port); the
    handle's ``base_url`` ends in ``/v1``."""
    return _serve_in_thread(app, host, port, startup_timeout=startup_timeout, lifespan="off",
                            api_prefix="/v1", name="mindgap-llm-server")
