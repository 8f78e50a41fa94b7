"""Image capabilities: ``/caption`` (mRAG-gim), ``/classify``, ``/ground``, ``/moderate``.

``/caption`` always exists and answers 404 ``caption_not_configured`` until the server is
started with ``--caption-model DIR``. The visual-prompting routes exist when
:mod:`mindgap.prompting` is installed (the OpenAPI schema lists what this server can do).
"""

# no `from __future__ import annotations`: FastAPI resolves route signatures at runtime.

import base64
import io
from typing import Annotated, Any, Optional

from fastapi import APIRouter, Depends, File, Form, UploadFile

from ..errors import InputError, MindgapError
from .routes import ERRORS, auth_dependency, embed_images, get_state, read_images
from .schemas import ResultsResponse
from .security import NotFound
from .state import ServerState
from .workers import within


class CaptionNotConfigured(NotFound):
    code = "caption_not_configured"


def _split(values: Optional[list], field: str, *, required: bool) -> Optional[list]:
    """Repeated form fields, or one comma-separated value; blank entries are refused."""
    vals = [v for v in (values or [])]
    if len(vals) == 1 and "," in vals[0]:
        vals = vals[0].split(",")
    vals = [v.strip() for v in vals]
    if any(not v for v in vals):
        raise InputError("empty entry", item=field)
    if len(vals) > 256:
        raise InputError("at most 256 entries", item=field)
    if required and not vals:
        raise InputError("give at least one", item=field)
    return vals or None


async def _call(state: ServerState, fn: Any, *args: Any, what: str, **kwargs: Any) -> Any:
    """Run a prompting function on the model thread; its ValueErrors are the client's input."""

    def run() -> Any:
        try:
            return fn(*args, **kwargs)
        except MindgapError:
            raise
        except (ValueError, KeyError) as exc:
            raise InputError(f"{what}: {exc}", item=what) from None

    return await within(state.workers.run(state.workers.model, run), state.config.timeout_s, what)


def _dicts(results: Any) -> list:
    if not isinstance(results, (list, tuple)):
        results = [results]
    return [r.to_dict() if hasattr(r, "to_dict") else dict(r) for r in results]


def router(cfg: Any) -> APIRouter:
    """The image-capability routes present in this installation."""
    r = APIRouter(responses=ERRORS, dependencies=auth_dependency(cfg.api_key), tags=["vision"])

    @r.post("/caption", response_model=ResultsResponse)
    async def caption(image: Annotated[list[UploadFile], File(description="Images to describe.")],
                      state: ServerState = Depends(get_state)) -> Any:
        """Describe images (mRAG-gim: map across the gap → nearest training captions → generator)."""
        cap = state.captioner
        if cap is None:
            raise CaptionNotConfigured(state.caption_problem or "no caption model", item="caption_model")
        pil, names = await read_images(state, image)
        if cap.model._encoder is state.encoder:
            vecs = await embed_images(state, pil)
        else:
            vecs = await _call(state, lambda: cap.model.encoder().encode_image(pil, show_progress=False),
                               what="caption encoding")
        w = state.workers
        results = await within(w.run(w.generate, cap.describe_vectors, vecs, names), cfg.timeout_s, "captioning")
        return {"results": _dicts(results)}

    @r.post("/classify", response_model=ResultsResponse)
    async def classify(image: Annotated[list[UploadFile], File(description="Images to classify.")],
                       label: Annotated[list[str], Form(description="Labels (repeatable, or comma-separated).")],
                       template: Annotated[Optional[list[str]], Form(
                           description="Templates with one `{}` for the label (default: built-in).")] = None,
                       k: Annotated[int, Form(ge=1, le=100)] = 5,
                       state: ServerState = Depends(get_state)) -> Any:
        """Zero-shot classification: each image against "a photo of a {label}"-style prompts."""
        from mindgap.prompting.zeroshot import classify as zs

        labels = _split(label, "label", required=True)
        templates = [t for t in (template or [])] or None
        if templates and len(templates) > 64:
            raise InputError("at most 64 templates", item="template")
        pil, _ = await read_images(state, image)
        res = await _call(state, zs, state.encoder, pil, labels, templates=templates, k=k, what="classify")
        return {"results": _dicts(res)}

    @r.post("/ground", response_model=ResultsResponse)
    async def ground(image: Annotated[UploadFile, File(description="The image.")],
                     phrase: Annotated[str, Form(min_length=1, max_length=500)],
                     regions: Annotated[Optional[str], Form(
                         max_length=2000, description="grid:RxC (default 3x3) or ';'-separated boxes.")] = None,
                     marker: Annotated[Optional[str], Form(
                         max_length=40, description="ellipse (default), circle, arrow, crop, blur, ...")] = None,
                     color: Annotated[Optional[str], Form(max_length=40, description="Marker colour.")] = None,
                     prior: Annotated[bool, Form(description="Subtract the empty-phrase prior.")] = True,
                     overlay: Annotated[bool, Form(description="Add the marked image as a PNG data URL.")] = False,
                     state: ServerState = Depends(get_state)) -> Any:
        """Referring-expression grounding by visual prompting (draw a red ellipse, ask CLIP)."""
        from mindgap.prompting.ground import ground as gr

        if not phrase.strip():
            raise InputError("empty phrase", item="phrase")
        pil, _ = await read_images(state, [image])
        opts = {k: v for k, v in {"regions": regions, "marker": marker, "color": color}.items() if v is not None}
        res = await _call(state, gr, state.encoder, pil[0], phrase, prior=prior, what="ground", **opts)
        d = res.to_dict()
        if overlay:
            buf = io.BytesIO()
            res.overlay().save(buf, format="PNG")
            d["overlay_png"] = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        return {"results": [d]}

    @r.post("/moderate", response_model=ResultsResponse)
    async def moderate(image: Annotated[list[UploadFile], File(description="Images to check.")],
                       unsafe: Annotated[Optional[list[str]], Form(description="Unsafe categories.")] = None,
                       safe: Annotated[Optional[list[str]], Form(description="Safe categories.")] = None,
                       threshold: Annotated[Optional[float], Form(
                           gt=0.0, le=1.0, description="Unsafe probability that flags an image (0.5).")] = None,
                       state: ServerState = Depends(get_state)) -> Any:
        """Content moderation: each image against unsafe vs. safe category prompts."""
        from mindgap.prompting.moderation import moderate as mod

        pil, _ = await read_images(state, image)
        res = await _call(state, mod, state.encoder, pil, unsafe=_split(unsafe, "unsafe", required=False),
                          safe=_split(safe, "safe", required=False), threshold=threshold, what="moderate")
        return {"results": _dicts(res)}

    return r
