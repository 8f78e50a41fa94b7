"""Core routes: embeddings, similarity, search, ask, index writes, health, stats, the page.

Every handler does its CPU work in a thread (:mod:`mindgap.server.workers`) under the
per-request timeout; text embeddings go through the request batcher.
"""

# no `from __future__ import annotations`: FastAPI resolves route signatures at runtime.

import asyncio
import base64
import binascii
import logging
import os
import time
from pathlib import Path
from typing import Annotated, Any, Literal, Optional
from urllib.parse import quote

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse

from ..errors import InputError
from ..images import sniff_image_bytes
from ..text import check_unicode
from ..types import Hit, Item, Modality
from .schemas import (
    MAX_K, MAX_TEXT_CHARS, AskRequest, AskResponse, DeleteResponse, EmbedResponse, EmbedTextRequest, ErrorResponse,
    HealthResponse, IndexResponse, ItemOut, ItemsRequest, SearchResponse, SimilarityResponse, FuseRequest,
    FuseResponse,
)
from .security import NotFound, RequestTimeout, Unauthorized, check_api_key, check_total_pixels, decode_upload
from .state import STATIC_DIR, ServerState
from .workers import PooledEncoder, WriteJob, within

MAX_IMAGES = 16
ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 404, 409, 413, 415, 422, 504)}

Modal = Optional[Literal["text", "image"]]


async def get_state(request: Request) -> ServerState:
    """The :class:`~mindgap.server.state.ServerState` (started)."""
    state = request.app.state.mg
    if not state.started:  # lifespan off (embedded use): start on first request
        import anyio

        await anyio.to_thread.run_sync(state.start)
    return state


def auth_dependency(api_key: Optional[str]) -> list:
    """``[Depends(...)]`` checking the key (documented as two security schemes), or ``[]``."""
    if not api_key:
        return []
    from fastapi.security import APIKeyHeader, HTTPBearer

    bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <MINDGAP_API_KEY>")
    header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <MINDGAP_API_KEY>")

    async def require_key(request: Request, _b: Any = Depends(bearer), _h: Any = Depends(header)) -> None:
        check_api_key(api_key, request.headers.get("authorization"), request.headers.get("x-api-key"))

    return [Depends(require_key)]


def image_url(item_id: str) -> str:
    return f"/items/{quote(item_id, safe='')}/image"


def client_view(d: dict[str, Any]) -> dict[str, Any]:
    """An item/hit/source dict as clients see it: images by ``image_url``, never a server file path."""
    d["image_url"] = image_url(d["id"]) if d.get("modality") in (Modality.IMAGE, "image") else None
    if "uri" in d:
        d["uri"] = None
    return d


def hit_out(h: Hit) -> dict[str, Any]:
    return client_view(h.to_dict())


def _clean_name(name: Optional[str], i: int) -> str:
    base = os.path.basename(name or "") or f"image[{i}]"
    return "".join(c for c in base if c.isprintable())[:120] or f"image[{i}]"


def _check_texts(texts: list, field: str) -> list:
    for i, t in enumerate(texts):
        check_unicode(t, f"{field}[{i}]")
        if len(t) > MAX_TEXT_CHARS:
            raise InputError(f"text longer than {MAX_TEXT_CHARS:,} characters", item=f"{field}[{i}]")
        if not t.strip():
            raise InputError("empty text", item=f"{field}[{i}]")
    return texts


async def read_images(state: ServerState, files: list, field: str = "image") -> tuple[list, list]:
    """Uploads → (RGB PIL images, names); format sniffed from bytes, pixel limit before decoding."""
    if not files:
        raise InputError("no image uploaded", item=field)
    if len(files) > MAX_IMAGES:
        raise InputError(f"at most {MAX_IMAGES} images per request", item=field)
    raw = []
    for i, f in enumerate(files):
        raw.append((await f.read(), _clean_name(getattr(f, "filename", None), i)))
    cfg = state.config

    def decode() -> list:
        check_total_pixels(raw, cfg.max_pixels)
        return [decode_upload(data, name, cfg.max_pixels) for data, name in raw]

    pil = await within(state.workers.run(state.workers.store, decode), cfg.timeout_s, "image decoding")
    return pil, [n for _, n in raw]


async def embed_images(state: ServerState, pil: list) -> np.ndarray:
    w = state.workers
    return await within(w.run(w.model, state.encoder.encode_image, pil, show_progress=False),
                        state.config.timeout_s, "image embedding")


async def embed_texts(state: ServerState, texts: list) -> np.ndarray:
    return await within(state.batcher.encode(texts), state.config.timeout_s, "text embedding")


log = logging.getLogger(__name__)

MIN_PROB_HELP = ("Drop results whose calibrated P(relevant) is below this (probability correctors such as "
                 "calibrated / the store's default 'auto'); an empty list means nothing is likely relevant.")


def _search_locked(state: ServerState, q: np.ndarray, qmod: Modality, k: int, gap: Optional[str], modality: Modal,
                   text: Optional[str], min_prob: Optional[float] = None, hybrid: bool = False) -> list:
    # the query string reaches correctors that route on text (modal-clf) and the lexical index (hybrid)
    texts = [text] if text is not None else None
    with state.lock.read():
        return state.retriever.search_vectors(q, qmod, k=k, gap=gap, modality=modality, texts=texts,
                                              min_prob=min_prob, hybrid=hybrid)[0]


HYBRID_HELP = ("Add BM25 evidence from the store's lexical side index (titles, captions, passages, alt text, file "
               "names) to a text query, fused into one calibrated P(relevant); items with no text keep their dense "
               "probability. Image queries search dense only.")

ASK_STREAM_HELP = ("With stream=true: `event: delta` / `data: {\"text\": ...}` for each piece of the answer "
                   "(joined, they are the answer), then `event: answer` with the whole AskResponse JSON, or "
                   "`event: error` with `{\"error\": {code, message, item}}`.")


async def _ask_stream(state: ServerState, answer: Any, timeout: Optional[float]) -> Any:
    """Run ``answer(on_delta)`` on the generate pool; relay its deltas as server-sent events.

    Errors before the first delta (retrieval, a too-long prompt) are ordinary JSON errors;
    later ones, and the request timeout, arrive as an ``error`` event.
    """
    import json

    from fastapi.responses import StreamingResponse

    from ..errors import MindgapError

    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    task = asyncio.ensure_future(state.workers.run(
        state.workers.generate, answer, lambda t: loop.call_soon_threadsafe(events.put_nowait, t)))
    task.add_done_callback(lambda t: events.put_nowait(None))
    deadline = loop.time() + timeout if timeout else None

    async def next_event() -> Optional[str]:
        left = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            return await asyncio.wait_for(events.get(), left)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"answer generation took longer than the server's {timeout:g} s request timeout",
                                 item="answer generation") from None

    first = await next_event()
    if first is None:
        task.result()  # raises the error (a normal JSON error response) if the answer failed

    def sse(event: str, data: Any) -> str:
        return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

    async def body() -> Any:
        ev = first
        try:
            while ev is not None:
                yield sse("delta", {"text": ev})
                ev = await next_event()
            d = task.result().to_dict()
            for src in d["sources"]:
                client_view(src)
            yield sse("answer", d)
        except MindgapError as exc:
            yield sse("error", {"error": {"code": exc.code, "message": str(exc), "item": exc.item}})
        except Exception:  # noqa: BLE001 - details stay in the server log
            log.exception("streamed /ask failed")
            yield sse("error", {"error": {"code": "internal_error", "message": "internal server error (details are "
                                          "in the server log)", "item": None}})

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def run_search(state: ServerState, q: np.ndarray, qmod: Modality, k: int, gap: Optional[str], modality: Modal,
                     text: Optional[str] = None, min_prob: Optional[float] = None, hybrid: bool = False) -> list:
    w = state.workers
    return await within(w.run(w.store, _search_locked, state, q, qmod, k, gap, modality, text, min_prob, hybrid),
                        state.config.timeout_s, "search")


def _prepare_items(state: ServerState, items: list, pinned: list) -> list:
    """Validate every item first (all or nothing); image bytes are checked and kept on disk."""
    out = []
    for i, it in enumerate(items):
        where = f"items[{i}]"
        # text that is not valid Unicode (a lone "\ud800" escape) is refused here: stored, it breaks every read
        for name in ("id", "text", "metadata"):
            check_unicode(getattr(it, name), f"{where}.{name}")
        if it.modality == "text":
            if it.image_base64 is not None:
                raise InputError("a text item takes `text`, not `image_base64`", item=f"{where}.image_base64")
            if not (it.text or "").strip():
                raise InputError("a text item needs a non-empty `text`", item=f"{where}.text")
            out.append(Item(it.id, Modality.TEXT, text=it.text, metadata=dict(it.metadata)))
            continue
        if not it.image_base64:
            raise InputError("an image item needs `image_base64` (the image file's bytes); "
                             "file-system paths are not accepted", item=f"{where}.image_base64")
        try:
            raw = base64.b64decode(it.image_base64, validate=True)
        except (ValueError, binascii.Error):
            raise InputError("not valid base64", item=f"{where}.image_base64") from None
        decode_upload(raw, f"{where}.image_base64", state.config.max_pixels)
        path = state.uploads.save(raw)  # pinned until the request ends: a concurrent delete keeps it
        pinned.append(path)
        out.append(Item(it.id, Modality.IMAGE, text=it.text, uri=str(path), metadata=dict(it.metadata)))
    return out


def _write_items(state: ServerState, items: list, job: WriteJob) -> Any:
    """Embed outside the store lock (chunks on the model thread), then commit one atomic batch."""
    retr = state.retriever
    with state.lock.read():
        present = retr.store.has([it.id for it in items])
    fresh = [it for it in items if it.id not in present]
    enc = PooledEncoder(state.encoder, state.workers.model, state.config.max_batch, job)
    good, vecs, skipped = retr.embed_items(fresh, encoder=enc)
    job.begin_commit()
    with state.lock.write():
        before = retr.store.has([it.id for it in good])
        rep = retr.add_embedded(good, vecs, skipped)
        state.uploads.added(list({it.id: it for it in reversed(good) if it.id not in before}.values()))
    for it in items:
        if it.id in present:
            rep.mark_present(it)
    return rep


async def write_items(state: ServerState, items: list) -> Any:
    """Run a write under the request timeout without lying: cancelled (504, nothing written) or committed."""
    job = WriteJob()
    task = asyncio.ensure_future(state.workers.run(state.workers.store, _write_items, state, items, job))
    to = state.config.timeout_s
    try:
        return await (asyncio.wait_for(asyncio.shield(task), to) if to else task)
    except asyncio.TimeoutError:
        if job.cancel():
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # the worker stops at its next chunk
            raise RequestTimeout(f"indexing took longer than the server's {to:g} s request timeout; it was "
                                 "cancelled and nothing was written (retry, or raise --timeout)",
                                 item="indexing") from None
        return await task  # the commit had begun: wait for it and report what was written


def _delete_item(state: ServerState, item_id: str) -> int:
    with state.lock.write():
        it = state.retriever.store.get([item_id])[0]
        n = state.retriever.delete([item_id])
        if n:
            state.uploads.deleted([it])  # its uploaded image file goes when no other item uses it
        return n


def _get_item(state: ServerState, item_id: str) -> Optional[Item]:
    with state.lock.read():
        return state.retriever.store.get([item_id])[0]


def router(cfg: Any) -> APIRouter:
    """The core API routes (API-key protected when a key is configured)."""
    r = APIRouter(responses=ERRORS, dependencies=auth_dependency(cfg.api_key))
    public = APIRouter(responses=ERRORS)
    to = cfg.timeout_s

    @public.get("/healthz", response_model=HealthResponse, tags=["meta"])
    async def healthz(request: Request, state: ServerState = Depends(get_state)) -> Any:
        """Liveness: ``ok``, or ``degraded`` with the problem (e.g. the store does not exist).

        Public; the store and the problem's details are shown only with the API key (when one is set).
        """
        status = "degraded" if state.problem else "ok"
        try:
            check_api_key(cfg.api_key, request.headers.get("authorization"), request.headers.get("x-api-key"))
        except Unauthorized:  # no key: liveness only, nothing about the store
            return {"status": status, "store": None,
                    "problem": "the server has a problem (details with the API key)" if state.problem else None}
        uri = state.retriever.store.uri if state.retriever is not None else None
        return {"status": status, "store": uri, "problem": str(state.problem) if state.problem else None}

    @r.get("/stats", tags=["meta"])
    async def stats(state: ServerState = Depends(get_state)) -> dict:
        """Store counts, encoder, fitted gap correctors, request counts, batching, memory, limits."""
        out = await within(state.workers.run(state.workers.store, state.store_stats), to, "stats")
        out["server"] = state.server_stats()
        return out

    @r.post("/embed/text", response_model=EmbedResponse, tags=["embed"])
    async def embed_text(body: EmbedTextRequest, state: ServerState = Depends(get_state)) -> Any:
        """Embed texts (batched with concurrent requests) → L2-normalised rows."""
        vecs = await embed_texts(state, _check_texts(body.texts, "texts"))
        return {"encoder": state.encoder.name, "dim": int(vecs.shape[1]), "embeddings": vecs.tolist()}

    @r.post("/embed/image", response_model=EmbedResponse, tags=["embed"])
    async def embed_image(image: Annotated[list[UploadFile], File(description="One or more image files.")],
                          state: ServerState = Depends(get_state)) -> Any:
        """Embed uploaded images (multipart field ``image``, repeatable) → L2-normalised rows."""
        pil, names = await read_images(state, image)
        vecs = await embed_images(state, pil)
        return {"encoder": state.encoder.name, "dim": int(vecs.shape[1]), "embeddings": vecs.tolist(),
                "names": names}

    @r.post("/similarity", response_model=SimilarityResponse, tags=["embed"])
    async def similarity(text: Annotated[Optional[list[str]], Form(description="Texts (repeatable).")] = None,
                         image: Annotated[Optional[list[UploadFile]], File(description="Images (repeatable).")] = None,
                         state: ServerState = Depends(get_state)) -> Any:
        """Cosine matrix: texts × images; or texts × texts / images × images when only one kind is given."""
        texts = _check_texts(list(text or []), "text")
        files = list(image or [])
        if len(texts) > 256:
            raise InputError("at most 256 texts", item="text")
        if not (texts and files) and len(texts) < 2 and len(files) < 2:
            raise InputError("give texts and images, or at least two texts, or at least two images", item="text")
        tv = await embed_texts(state, texts) if texts else None
        iv, names = None, []
        if files:
            pil, names = await read_images(state, files)
            iv = await embed_images(state, pil)
        if tv is not None and iv is not None:
            rows, cols, a, b, rm, cm = texts, names, tv, iv, "text", "image"
        elif tv is not None:
            rows, cols, a, b, rm, cm = texts, texts, tv, tv, "text", "text"
        else:
            rows, cols, a, b, rm, cm = names, names, iv, iv, "image", "image"
        sim = np.clip(a @ b.T, -1.0, 1.0)
        return {"encoder": state.encoder.name, "rows": rows, "cols": cols, "row_modality": rm, "col_modality": cm,
                "cosine": np.round(sim, 6).tolist()}

    async def _search(state: ServerState, query: Optional[str], upload: Any, k: int, gap: Optional[str],
                      modality: Modal, min_prob: Optional[float] = None, hybrid: bool = False) -> dict:
        retr = state.need_retriever()
        t0 = time.perf_counter()
        if upload is not None and query is not None and query.strip():
            raise InputError("give a query text or a query image, not both", item="query")
        if upload is not None:
            pil, names = await read_images(state, [upload])
            q, qmod, qd = await embed_images(state, pil), Modality.IMAGE, {"modality": "image", "name": names[0]}
        else:
            if query is None or not query.strip():
                raise InputError("give a query text or a query image", item="query")
            q = await embed_texts(state, _check_texts([query], "query"))
            qmod, qd = Modality.TEXT, {"modality": "text", "text": query}
        hits = await run_search(state, q, qmod, k, gap, modality, query if qmod == Modality.TEXT else None, min_prob,
                                hybrid)
        counts = {"text": sum(h.modality == Modality.TEXT for h in hits),
                  "image": sum(h.modality == Modality.IMAGE for h in hits)}
        return {"query": qd, "gap": retr.gap_name(gap), "k": k, "modality": modality, "min_prob": min_prob,
                "hybrid": bool(hybrid and qmod == Modality.TEXT),
                "hits": [hit_out(h) for h in hits], "counts": counts, "seconds": round(time.perf_counter() - t0, 5)}

    @r.get("/search", response_model=SearchResponse, tags=["search"])
    async def search_get(query: Annotated[str, Query(min_length=1, max_length=MAX_TEXT_CHARS)],
                         k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
                         gap: Annotated[Optional[str], Query(max_length=200, description="naive, zscore, ...")] = None,
                         modality: Annotated[Modal, Query(description="Only this modality.")] = None,
                         min_prob: Annotated[Optional[float], Query(ge=0, le=1, description=MIN_PROB_HELP)] = None,
                         hybrid: Annotated[bool, Query(description=HYBRID_HELP)] = False,
                         state: ServerState = Depends(get_state)) -> Any:
        """Text search over the mixed store with a gap corrector (default: the store's)."""
        return await _search(state, query, None, k, gap, modality, min_prob, hybrid)

    @r.post("/search", response_model=SearchResponse, tags=["search"])
    async def search_post(query: Annotated[Optional[str], Form(max_length=MAX_TEXT_CHARS)] = None,
                          image: Annotated[Optional[UploadFile], File(description="A query image.")] = None,
                          k: Annotated[int, Form(ge=1, le=MAX_K)] = 10,
                          gap: Annotated[Optional[str], Form(max_length=200)] = None,
                          modality: Annotated[Modal, Form()] = None,
                          min_prob: Annotated[Optional[float], Form(ge=0, le=1, description=MIN_PROB_HELP)] = None,
                          hybrid: Annotated[bool, Form(description=HYBRID_HELP)] = False,
                          state: ServerState = Depends(get_state)) -> Any:
        """Search with a text (``query``) or an image (``image`` upload), multipart or form-encoded."""
        return await _search(state, query, image, k, gap, modality, min_prob, hybrid)

    @r.post("/fuse", response_model=FuseResponse, response_model_exclude_none=True, tags=["search"])
    async def fuse_lists(body: FuseRequest, state: ServerState = Depends(get_state)) -> Any:
        """Merge per-modality candidate lists from any search (ids + raw cosines) through a fitted
        corrector — inline (`corrector`, a corrector file) or one of the served store's (`gap`).
        No store access for an inline corrector. Format: docs/corrector-format.md."""
        from ..gap.portable import PortableCorrector, corrector_from_json, fuse

        if body.corrector is not None:
            if body.gap is not None:
                raise InputError("give 'corrector' or 'gap', not both", item="gap")
            pc = corrector_from_json(body.corrector, where="corrector")
        else:
            retr = state.need_retriever(allow_empty=True)
            name = retr.gap_name(body.gap)
            m = retr.manifest
            pc = PortableCorrector(retr.gap(name), m.encoder_spec, m.dim, {"name": name})
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, which fuse refuses (400)
            cands = {m: [(c.id, c.cosine) if c.vector is None else {"id": c.id, "cosine": c.cosine, "vector": c.vector}
                         for c in getattr(body.candidates, m)] for m in ("text", "image")}
            query = None if body.query is None else np.asarray(body.query, np.float32)
        hits = fuse(cands, pc, k=body.k, query=query, query_modality=body.query_modality, min_prob=body.min_prob)
        return {"corrector": pc.meta.get("name") or pc.corrector.name, "k": body.k, "min_prob": body.min_prob,
                "hits": [h.to_dict() for h in hits],
                "counts": {m: sum(h.modality == m for h in hits) for m in ("text", "image")}}

    @r.post("/ask", response_model=AskResponse, tags=["rag"],
            responses={200: {"content": {"text/event-stream": {"description": ASK_STREAM_HELP}}}})
    async def ask(body: AskRequest, state: ServerState = Depends(get_state)) -> Any:
        """Retrieve (gap-aware) and answer with the server's generator, citing numbered sources.

        With ``"stream": true`` the answer comes as server-sent events (see the 200 response).
        """
        hits = None
        if not body.no_rag:
            state.need_retriever()
            q = await embed_texts(state, _check_texts([body.question], "question"))
            hits = await run_search(state, q, Modality.TEXT, body.k, body.gap, None, body.question)
        elif not body.question.strip():
            raise InputError("empty question", item="question")
        check_unicode(body.question, "question")

        def answer(on_delta: Any = None) -> Any:
            with state.lock.read():
                state.rag.describer.notes = []
                return state.rag.ask(body.question, k=body.k, gap=body.gap, no_rag=body.no_rag, hits=hits,
                                     on_delta=on_delta)

        if body.stream:
            return await _ask_stream(state, answer, to)
        ans = await within(state.workers.run(state.workers.generate, answer), to, "answer generation")
        d = ans.to_dict()
        for s in d["sources"]:
            client_view(s)
        return d

    @r.post("/items", response_model=IndexResponse, tags=["items"])
    async def add_items(body: ItemsRequest, state: ServerState = Depends(get_state)) -> Any:
        """Index items in one atomic batch; answered only once the store has committed it.

        Past the server's timeout the write is cancelled before its commit (504, nothing
        written) or, when the commit had begun, answered once it is done (200).

        Text items carry ``text``; image items carry the file as ``image_base64`` (never a
        path). Ids already in the store are reported, not overwritten.
        """
        from ..stores import local_path

        state.need_retriever(allow_empty=True)
        w = state.workers
        pinned: list = []
        try:
            items = await within(w.run(w.store, _prepare_items, state, body.items, pinned), to, "item validation")
            rep = await write_items(state, items)
        finally:
            state.uploads.unpin(pinned)
        d = rep.to_dict()
        d["ids"] = [it.id for it in body.items]
        d["durable"] = local_path(state.retriever.store.uri) is not None
        return d

    @r.get("/items/{item_id:path}/image", tags=["items"], response_class=FileResponse,
           responses={200: {"content": {"image/jpeg": {}, "image/png": {}}, "description": "The image file."}})
    async def item_image(item_id: str, state: ServerState = Depends(get_state)) -> Any:
        """The image file of an image item (only files the store references; looked up by id)."""
        state.need_retriever(allow_empty=True)
        it = await state.workers.run(state.workers.store, _get_item, state, item_id)
        if it is None:
            raise NotFound(f"no item {item_id!r} in the store", item=item_id)
        if it.modality != Modality.IMAGE or not it.uri:
            raise NotFound(f"item {item_id!r} is not an image", item=item_id)
        p = Path(it.uri)
        try:
            with p.open("rb") as fh:
                head = fh.read(16)
        except OSError:
            raise NotFound(f"the image file of item {item_id!r} is missing on the server", item=item_id) from None
        fmt = sniff_image_bytes(head)
        if fmt is None:
            raise NotFound(f"the file of item {item_id!r} is not a readable image", item=item_id)
        return FileResponse(p, media_type=f"image/{fmt}", headers={"Cache-Control": "private, max-age=3600"})

    @r.get("/items/{item_id:path}", response_model=ItemOut, tags=["items"])
    async def get_item(item_id: str, state: ServerState = Depends(get_state)) -> Any:
        """One stored item (its text, metadata and ``image_url`` for images)."""
        state.need_retriever(allow_empty=True)
        it = await state.workers.run(state.workers.store, _get_item, state, item_id)
        if it is None:
            raise NotFound(f"no item {item_id!r} in the store", item=item_id)
        return client_view(it.to_dict())

    @r.delete("/items/{item_id:path}", response_model=DeleteResponse, tags=["items"])
    async def delete_item(item_id: str, state: ServerState = Depends(get_state)) -> Any:
        """Delete one item (atomic; answered once the deletion is committed).

        An uploaded image file is removed with the last item that uses it (files are
        content-addressed: several items may share one).
        """
        state.need_retriever(allow_empty=True)
        n = await within(state.workers.run(state.workers.model, _delete_item, state, item_id), to, "delete")
        if not n:
            raise NotFound(f"no item {item_id!r} in the store", item=item_id)
        return {"deleted": n, "id": item_id}

    out = APIRouter()
    out.include_router(public)
    out.include_router(r)
    return out


def mount_page(app: Any) -> None:
    """The web page at ``/`` and its files under ``/static`` (no CDN: everything is local)."""
    from fastapi.staticfiles import StaticFiles

    @app.get("/", include_in_schema=False)
    def page() -> Any:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
