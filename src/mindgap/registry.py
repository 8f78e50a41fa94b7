"""Spec strings → backends.

A spec is ``scheme:rest`` (``hf:openai/clip-vit-base-patch32``, ``onnx:/models/clip``,
``lancedb:/data/store``). Each seam (encoders, stores, gap correctors, generators) has its
own :class:`Registry`; built-in backends register with the same decorator a plugin would
use, and import their heavy dependencies lazily inside the factory.

Example:
    >>> import mindgap.encoders  # built-in backends register when their package is imported
    >>> from mindgap.registry import encoders
    >>> sorted(encoders.names())[:2]
    ['hf', 'mindgap']
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Generic, TypeVar

from .errors import SpecError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → factory table for one seam.

    Factories are registered either directly (``register``) or lazily by module path
    (``register_lazy``) so that listing backends never imports torch or a database.
    """

    def __init__(self, kind: str, around: Callable[[], AbstractContextManager[Any]] | None = None) -> None:
        self.kind = kind
        self.around = around or nullcontext  # every build runs inside it (encoders: quiet weight loading)
        self._factories: dict[str, Callable[..., T]] = {}
        self._lazy: dict[str, str] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory(rest: str, **options) -> T`` under ``name``."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            self._factories[name] = factory
            self._help.setdefault(name, help or (factory.__doc__ or "").strip().split("\n")[0])
            return factory

        return deco

    def register_lazy(self, name: str, target: str, help: str = "") -> None:
        """Register ``"package.module:function"`` to be imported on first use."""
        self._lazy[name] = target
        self._help[name] = help

    def names(self) -> list[str]:
        return sorted(set(self._factories) | set(self._lazy))

    def describe(self) -> dict[str, str]:
        return {n: self._help.get(n, "") for n in self.names()}

    def factory(self, name: str) -> Callable[..., T]:
        if name not in self._factories and name in self._lazy:
            mod, _, fn = self._lazy[name].partition(":")
            self._factories[name] = getattr(importlib.import_module(mod), fn)
        try:
            return self._factories[name]
        except KeyError:
            raise SpecError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}",
                item=name,
            ) from None

    def create(self, spec: str, **options: Any) -> T:
        """Build a backend from ``scheme:rest`` (or a bare name for parameterless ones)."""
        if not isinstance(spec, str) or not spec.strip():
            raise SpecError(f"empty {self.kind} spec", item=str(spec))
        scheme, sep, rest = spec.strip().partition(":")
        if not sep:
            scheme, rest = spec.strip(), ""
        factory = self.factory(scheme)
        with self.around():
            return factory(rest, **options)


def split_spec(spec: str) -> tuple[str, str]:
    """Split ``scheme:rest``; a bare word is ``(word, "")``."""
    scheme, sep, rest = spec.partition(":")
    return (scheme, rest) if sep else (spec, "")


def _quiet_model_loading() -> AbstractContextManager[Any]:
    from .progress import quiet_model_loading

    return quiet_model_loading()


encoders: Registry[Any] = Registry("encoder", around=_quiet_model_loading)
stores: Registry[Any] = Registry("store")
gap_correctors: Registry[Any] = Registry("gap corrector")
generators: Registry[Any] = Registry("generator")
