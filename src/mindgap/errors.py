"""Errors mindgap raises on purpose.

Every error a user can cause (bad file, bad spec, missing optional dependency) is a
:class:`MindgapError` with a message that names the offending item. The CLI and the HTTP
server turn these into one clear line / a JSON body with a stable ``code`` instead of a
traceback.
"""

from __future__ import annotations


class MindgapError(Exception):
    """Base class of every error mindgap raises on purpose.

    Attributes:
        code: stable machine-readable code (used by the HTTP API).
        item: the file, id or field that caused the error, when there is one.
    """

    code = "mindgap_error"
    http_status = 400

    def __init__(self, message: str, *, item: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.item = item

    def __str__(self) -> str:
        if self.item is not None and self.item not in self.message:
            return f"{self.item}: {self.message}"
        return self.message


class InputError(MindgapError):
    """Bad user input: unreadable file, wrong field, empty list, ..."""

    code = "bad_input"


class ImageError(InputError):
    """An image that cannot be used: corrupt, truncated, not an image, too large."""

    code = "bad_image"


class ImageTooLarge(ImageError):
    """An image over the pixel limit (decompression-bomb guard)."""

    code = "image_too_large"
    http_status = 413


class SpecError(MindgapError):
    """A spec string that does not resolve (unknown scheme, missing directory, ...)."""

    code = "bad_spec"


class ModelLoadError(MindgapError):
    """A model could not be loaded (offline hub, missing files, ...)."""

    code = "model_load_failed"
    http_status = 500


class MissingDependency(MindgapError):
    """An optional dependency is not installed; the message names the extra."""

    code = "missing_dependency"
    http_status = 500

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this feature needs the optional package '{package}': "
            f"pip install 'mindgap[{extra}]'"
        )
        self.package = package
        self.extra = extra


class StoreError(MindgapError):
    """A store that is missing, corrupt or built with another encoder."""

    code = "store_error"


class EncoderMismatch(StoreError):
    """A query encoder differs from the one that built the store."""

    code = "encoder_mismatch"
    http_status = 409


class NotFittedError(MindgapError):
    """A gap corrector used before ``fit``."""

    code = "not_fitted"


def require(package: str, extra: str):  # noqa: ANN201 - returns a module
    """Import an optional dependency or raise :class:`MissingDependency`.

    Example:
        >>> np = require("numpy", "core")
    """
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise MissingDependency(package, extra) from exc
