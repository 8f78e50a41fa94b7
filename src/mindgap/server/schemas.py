"""Request and response bodies of the HTTP API (pydantic; they are the OpenAPI schema).

Search results are :meth:`mindgap.types.Hit.to_dict` — the one result shape of the
Python API and ``mindgap search --json`` — plus ``image_url``, the server route that
serves an image hit's file (by item id, never by path).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Bounds on one request (the body-size limit applies on top).
MAX_TEXTS = 256
MAX_TEXT_CHARS = 20_000
MAX_ITEMS = 256
MAX_K = 1000
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `bad_image`, `unauthorized`.")
    message: str = Field(description="What went wrong, naming the offending field or file.")
    item: str | None = Field(None, description="The field, file or id at fault, when there is one.")


class ErrorResponse(BaseModel):
    """Every error: ``{"error": {"code", "message", "item"}}`` — never a stack trace."""

    error: ErrorDetail


class EmbedTextRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(..., min_length=1, max_length=MAX_TEXTS,
                             description="Texts to embed (each truncated to the text tower's window).")


class EmbedResponse(BaseModel):
    encoder: str
    dim: int
    embeddings: list[list[float]] = Field(description="One L2-normalised row per input, in order.")
    names: list[str] | None = Field(None, description="Upload file names (images).")


class SimilarityResponse(BaseModel):
    encoder: str
    rows: list[str] = Field(description="Row inputs: texts, or image file names.")
    cols: list[str] = Field(description="Column inputs.")
    row_modality: Literal["text", "image"]
    col_modality: Literal["text", "image"]
    cosine: list[list[float]] = Field(description="cosine[i][j] between row i and column j.")


class HitOut(BaseModel):
    """:class:`mindgap.types.Hit` as JSON, plus ``image_url`` for image hits."""

    id: str
    modality: Literal["text", "image"]
    cosine: float = Field(description="Raw cosine between query and item.")
    score: float = Field(description="The gap-corrected score the merged ranking uses.")
    rank: int
    modality_rank: int = Field(description="Rank within the item's own modality.")
    text: str | None = None
    uri: str | None = Field(None, description="Always null over HTTP: server file paths are never revealed; use image_url.")
    metadata: dict[str, Any] = Field(default_factory=dict)
    image_url: str | None = Field(None, description="GET this to fetch the image (image hits).")


class SearchResponse(BaseModel):
    query: dict[str, Any] = Field(description="`modality` plus the query `text` or image `name`.")
    gap: str
    k: int
    modality: Literal["text", "image"] | None = None
    min_prob: float | None = Field(None, description="The P(relevant) cut-off applied, if any.")
    hybrid: bool = Field(False, description="Whether BM25 evidence from the lexical side index was fused in.")
    hits: list[HitOut]
    counts: dict[str, int] = Field(description="Hits per modality in this result list.")
    seconds: float


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(..., min_length=1, max_length=4000)
    k: int = Field(10, ge=1, le=50, strict=True, description="Sources to retrieve (an integer: `true` is not 1).")
    gap: str | None = Field(None, max_length=200, description="Gap corrector (default: the store's).")
    no_rag: bool = Field(False, description="Answer from the question alone (the w/o-RAG baseline).")
    stream: bool = Field(False, description="Stream the answer as server-sent events (`delta` events, then "
                                            "`answer` with the whole response).")


class AskResponse(BaseModel):
    """:meth:`mindgap.rag.pipeline.RagAnswer.to_dict` (sources with ``image_url``)."""

    model_config = ConfigDict(extra="allow")
    question: str
    answer: str
    generator: str
    sources: list[dict[str, Any]]
    notes: list[str]


class NewItem(BaseModel):
    """One item to index. Images come as bytes (``image_base64``), never as a path."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(..., min_length=1, max_length=512, pattern=ID_PATTERN)
    modality: Literal["text", "image"]
    text: str | None = Field(None, max_length=200_000,
                             description="The passage (text items) or a caption (image items).")
    image_base64: str | None = Field(None, description="The image file's bytes, base64 (image items).")
    metadata: dict[str, Any] = Field(default_factory=dict)


class ItemsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[NewItem] = Field(..., min_length=1, max_length=MAX_ITEMS)


class IndexResponse(BaseModel):
    added: dict[str, int]
    already_present: int
    present: dict[str, int] | None = Field(None, description="`already_present` per modality.")
    skipped: list[dict[str, Any]]
    seconds: float | None = None
    ids: list[str]
    durable: bool = Field(description="True: committed to the store's files before this answer.")


class ItemOut(BaseModel):
    id: str
    modality: Literal["text", "image"]
    text: str | None = None
    uri: str | None = Field(None, description="Always null over HTTP: server file paths are never revealed; use image_url.")
    metadata: dict[str, Any] = Field(default_factory=dict)
    image_url: str | None = None


class DeleteResponse(BaseModel):
    deleted: int
    id: str


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded"]
    store: str | None = None
    problem: str | None = None


class ResultsResponse(BaseModel):
    """Results of the vision capabilities (caption, classify, ground, moderate): ``to_dict()`` each."""

    model_config = ConfigDict(extra="allow")
    results: list[dict[str, Any]]


#: candidates per modality one ``POST /fuse`` takes
MAX_FUSE_CANDIDATES = 1000


class FuseCandidate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(..., min_length=1, max_length=512, pattern=ID_PATTERN)
    cosine: float = Field(..., ge=-1.0001, le=1.0001, allow_inf_nan=False,
                          description="Raw cosine of L2-normalised embeddings (not a distance).")
    vector: list[float] | None = Field(None, min_length=1, max_length=8192,
                                       description="The item's L2-normalised embedding (optional): with it on every "
                                                   "candidate, calibrated applies its hubness term.")


class FuseCandidates(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: list[FuseCandidate] = Field(default_factory=list, max_length=MAX_FUSE_CANDIDATES)
    image: list[FuseCandidate] = Field(default_factory=list, max_length=MAX_FUSE_CANDIDATES)


class FuseRequest(BaseModel):
    """One query's per-modality candidate lists from any search, merged through a fitted corrector
    (docs/corrector-format.md). The corrector is ``corrector`` (a standalone corrector file's
    JSON, inline) or ``gap`` (one fitted for the served store; default: the store's default)."""

    model_config = ConfigDict(extra="forbid")
    candidates: FuseCandidates
    corrector: dict[str, Any] | None = Field(None, description="A corrector file (`mindgap fit-gap --out`), inline.")
    gap: str | None = Field(None, min_length=1, max_length=200,
                            description="A corrector fitted for the served store (when `corrector` is absent).")
    query: list[float] | None = Field(None, min_length=1, max_length=8192,
                                      description="The query embedding (qnorm, modal-clf, calibrated:soft_route).")
    query_modality: Literal["text", "image"] = "text"
    k: int = Field(10, ge=1, le=MAX_K, strict=True)
    min_prob: float | None = Field(None, ge=0, le=1, description="Drop candidates whose P(relevant) is below this "
                                                                 "(probability correctors: calibrated).")


class FusedHitOut(BaseModel):
    id: str
    modality: Literal["text", "image"]
    cosine: float
    score: float = Field(description="The corrected score the merged list is sorted on.")
    rank: int
    modality_rank: int = Field(description="Rank within its modality's list, by cosine (calibrated with vectors: "
                                           "by cosine minus its hubness term).")
    probability: float | None = Field(None, description="P(relevant) (calibrated), else absent.")


class FuseResponse(BaseModel):
    corrector: str = Field(description="The corrector's name (kind, or the store's name for it).")
    k: int
    min_prob: float | None = None
    hits: list[FusedHitOut]
    counts: dict[str, int] = Field(description="Hits per modality.")
