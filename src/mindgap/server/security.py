"""The server's guards: API key, body-size limit, upload sniffing, security headers.

Each guard fails with a :class:`~mindgap.errors.MindgapError` subclass carrying a stable
``code`` and an HTTP status, which :mod:`mindgap.server.app` turns into a JSON body — no
stack traces leave the process.

* **API key** — when configured (``MINDGAP_API_KEY`` / ``--api-key``) every API route
  wants ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, compared in constant time
  (:func:`hmac.compare_digest`); ``/healthz``, the page and the OpenAPI schema stay public.
* **Body size** — a pure ASGI middleware refuses a declared ``Content-Length`` over the
  limit before reading anything, and counts streamed (chunked) bodies as they arrive.
* **Host header** — with ``allowed_hosts`` (``mindgap serve`` defaults to the loopback
  names when bound to loopback) any other ``Host`` is refused (400 JSON ``bad_host``): a
  DNS-rebinding page cannot reach a local server under its own name.
* **Uploads** — the image format comes from the bytes (:func:`~mindgap.images.sniff_image_bytes`),
  never from the file name or the declared content type; the pixel count is checked
  before decoding (decompression bombs).
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from ..errors import ImageError, ImageTooLarge, InputError, MindgapError
from ..images import load_image, sniff_image_bytes


class Unauthorized(MindgapError):
    """Missing or wrong API key."""

    code = "unauthorized"
    http_status = 401


class BodyTooLarge(MindgapError):
    """A request body over the server's upload limit."""

    code = "body_too_large"
    http_status = 413


class NotAnImage(ImageError):
    """Uploaded bytes whose magic number is no known image format (whatever they are labelled)."""

    code = "not_an_image"
    http_status = 415


class NotFound(MindgapError):
    """An item, image or feature that does not exist on this server."""

    code = "not_found"
    http_status = 404


class StoreUnavailable(MindgapError):
    """The store the server was started with does not exist (or is empty)."""

    code = "store_not_found"
    http_status = 404


class StoreEmpty(MindgapError):
    """Nothing indexed yet."""

    code = "store_empty"
    http_status = 409


class RequestTimeout(MindgapError):
    """The work for one request took longer than the per-request timeout."""

    code = "timeout"
    http_status = 504


def check_api_key(expected: str | None, authorization: str | None, x_api_key: str | None) -> None:
    """Raise :class:`Unauthorized` unless a configured key was sent (constant-time compare).

    Example:
        >>> check_api_key(None, None, None)  # no key configured: open
        >>> check_api_key("s3cret", "Bearer s3cret", None)
        >>> check_api_key("s3cret", "Bearer s3cret", "")  # an empty header is no header
        >>> check_api_key("s3cret", None, "wrong")
        Traceback (most recent call last):
        ...
        mindgap.server.security.Unauthorized: invalid API key
    """
    if not expected:
        return
    # an empty X-API-Key header is no key: it must not hide a valid Bearer token
    sent = x_api_key if x_api_key and x_api_key.strip() else None
    if sent is None and authorization:
        scheme, _, token = authorization.partition(" ")
        sent = token.strip() if scheme.lower() == "bearer" else None
    if sent is None:
        raise Unauthorized("this server needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    # compare bytes of equal type; compare_digest's time does not depend on where they differ
    if not hmac.compare_digest(sent.encode("utf-8", "surrogatepass"), expected.encode("utf-8")):
        raise Unauthorized("invalid API key")


def decode_upload(data: bytes, name: str, max_pixels: int) -> Any:
    """Bytes from a client → an RGB PIL image, or a clear error.

    The format is sniffed from the bytes; the declared content type and the file name are
    ignored on purpose (clients lie, by accident or not).

    Raises:
        InputError: no bytes.
        NotAnImage: the bytes are no known image format (415).
        ImageTooLarge: more pixels than ``max_pixels`` (413), checked before decoding.
        ImageError: a known format that is corrupt or truncated (400).
    """
    if not data:
        raise InputError("empty upload (no bytes)", item=name)
    if sniff_image_bytes(data) is None:
        raise NotAnImage("not an image: the bytes are not JPEG, PNG, GIF, BMP, WebP or TIFF "
                         "(the declared content type is not trusted)", item=name)
    return load_image(data, name=name, limit=max_pixels)


def declared_pixels(data: bytes) -> int:
    """Width × height from an image header without decoding (0 when unreadable: decoding will say why)."""
    import io
    import warnings

    from PIL import Image

    if sniff_image_bytes(data) is None:
        return 0
    old = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
    except Exception:  # noqa: BLE001 - corrupt headers are reported by decode_upload
        return 0
    finally:
        Image.MAX_IMAGE_PIXELS = old
    return int(w) * int(h)


def check_total_pixels(uploads: list, max_pixels: int) -> None:
    """All images of one request together stay under ``max_pixels`` (many small bombs are one big one).

    Args:
        uploads: ``(bytes, name)`` pairs.
        max_pixels: the budget for the request.
    """
    total = 0
    for data, name in uploads:
        total += declared_pixels(data)
        if total > max_pixels and len(uploads) > 1:
            raise ImageTooLarge(f"the images of this request total {total:,} pixels or more, over the limit of "
                                f"{max_pixels:,} per request", item=name)


def _json_error(status: int, code: str, message: str, item: str | None = None) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "item": item}}).encode()


LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "::1"]


def is_loopback(host: str) -> bool:
    """``127.x.x.x``, ``::1`` or ``localhost``."""
    import ipaddress

    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_allowed_hosts(bind_host: str) -> list[str]:
    """The ``Host`` names a server bound to ``bind_host`` accepts by default.

    Example:
        >>> default_allowed_hosts("127.0.0.1")
        ['localhost', '127.0.0.1', '::1']
        >>> default_allowed_hosts("0.0.0.0")
        ['*']
    """
    if is_loopback(bind_host):
        return list(dict.fromkeys(LOOPBACK_HOSTS + [bind_host.strip("[]")]))
    return ["*"]


def host_name(header: str) -> str:
    """The name part of a ``Host`` header (no port; IPv6 without brackets), lower case."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


class AllowedHostsMiddleware:
    """Refuse requests whose ``Host`` header names none of ``allowed`` (400 JSON ``bad_host``).

    Entries are names (``localhost``) or ``*.example.org`` suffix patterns; ``*`` allows any.
    """

    def __init__(self, app: Any, allowed: list[str]) -> None:
        self.app = app
        self.allowed = [a.strip().lower().strip("[]") for a in allowed if a.strip()]

    def ok(self, host: str) -> bool:
        name = host_name(host)
        for a in self.allowed:
            if a == "*" or a == name or (a.startswith("*.") and name.endswith(a[1:])):
                return True
        return False

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
        if self.ok(host):
            await self.app(scope, receive, send)
            return
        body = _json_error(400, "bad_host", f"Host {host!r} is not served here (allowed: {', '.join(self.allowed)}; "
                                            "start the server with --allowed-host NAME)", "host")
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` (413 JSON) — declared or streamed.

    Args:
        app: the ASGI app.
        max_bytes: the largest body accepted.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        msg = f"request body over the server's limit of {self.max_bytes:,} bytes"
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._drain(receive, declared)
                    await self._reject(send, msg)
                    return
        seen = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(msg, item="body")
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:  # the app did not turn it into a response itself
                await self._drain(receive, -1)
                await self._reject(send, msg)

    async def _drain(self, receive: Any, declared: int) -> None:
        """Read and discard the rest of a refused body — at most ``4 × max_bytes + 8 MB`` and 10 s —
        before answering 413. A server that closes the connection with request bytes unread makes
        the kernel reset it, and the client loses the 413 it was sent (it sees a broken connection
        instead). A body over the cap is not read: that client gets the reset."""
        import asyncio

        cap = 4 * self.max_bytes + (8 << 20)
        if declared > cap:
            return
        left = cap

        async def pull() -> None:
            nonlocal left
            while left > 0:
                message = await receive()
                if message["type"] != "http.request":
                    return
                left -= len(message.get("body", b""))
                if not message.get("more_body", False):
                    return

        try:
            await asyncio.wait_for(pull(), timeout=10)
        except (asyncio.TimeoutError, RuntimeError, OSError):
            return

    @staticmethod
    async def _reject(send: Any, msg: str) -> None:
        body = _json_error(413, BodyTooLarge.code, msg)
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


#: Sent with every response: the page loads nothing from elsewhere (no CDN), no framing.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
     b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
]


class SecurityHeadersMiddleware:
    """Add :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in SECURITY_HEADERS if k not in have]
            await send(message)

        await self.app(scope, receive, send_with_headers)
