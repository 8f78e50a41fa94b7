"""Every failure as ``{"error": {"code", "message", "item"}}`` with the right status — no tracebacks.

* :class:`~mindgap.errors.MindgapError` → its ``http_status`` and ``code``;
* request validation → 422 ``invalid_request`` naming the first bad field;
* routing (404 / 405) → ``not_found`` / ``method_not_allowed``;
* anything else → 500 ``internal_error`` with a generic message; the traceback goes to the
  server log only.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import MindgapError
from .security import BodyTooLarge, Unauthorized

log = logging.getLogger("mindgap.server")

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 413: "body_too_large", 415: "unsupported_media_type",
               422: "invalid_request", 429: "too_many_requests"}


def error_response(status: int, code: str, message: str, item: str | None = None,
                   headers: dict[str, str] | None = None) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=status, headers=headers,
                        content={"error": {"code": code, "message": message, "item": item}})


def _loc(loc: Any) -> str:
    parts = [str(p) for p in (loc or []) if p not in ("body",)] or [str(p) for p in (loc or [])]
    return ".".join(parts) or "request"


def install_error_handlers(app: Any) -> None:
    """Register the JSON error handlers on ``app``."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    @app.exception_handler(MindgapError)
    async def mindgap_error(request: Any, exc: MindgapError) -> Any:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        status = int(getattr(exc, "http_status", 400) or 400)
        if status >= 500 and status not in (503, 504):
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return error_response(status, exc.code, str(exc), exc.item, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Any, exc: RequestValidationError) -> Any:
        errs = exc.errors()
        parts = []
        for e in errs[:5]:
            parts.append(f"{_loc(e.get('loc'))}: {e.get('msg', 'invalid')}")
        more = f" (+{len(errs) - 5} more)" if len(errs) > 5 else ""
        first = _loc(errs[0].get("loc")) if errs else None
        return error_response(422, "invalid_request", "; ".join(parts) + more if parts else "invalid request", first)

    @app.exception_handler(HTTPException)
    async def http_error(request: Any, exc: HTTPException) -> Any:
        cause = exc.__cause__
        if isinstance(cause, BodyTooLarge):  # raised while FastAPI parsed a form body
            return error_response(413, cause.code, str(cause), cause.item)
        if isinstance(cause, MindgapError):
            return error_response(cause.http_status, cause.code, str(cause), cause.item)
        status = int(exc.status_code)
        code = _HTTP_CODES.get(status, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        if status == 404 and detail == "Not Found":
            detail = f"no such route: {request.method} {request.url.path}"
        if status == 405:
            detail = f"method {request.method} is not allowed on {request.url.path}"
        if status == 400 and detail == "There was an error parsing the body":
            detail = "the request body could not be parsed (malformed JSON or multipart data)"
        return error_response(status, code, detail, None, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Any, exc: Exception) -> Any:
        log.exception("internal error in %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error (details are in the server log)")
