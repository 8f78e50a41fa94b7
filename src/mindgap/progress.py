"""Progress bars for real work only.

Reading a model's weights from local disk takes well under a second, yet transformers draws
a "Loading weights" bar for it on every command. :func:`quiet_model_loading` hides that
one bar while an encoder is built (the encoder registry wraps every build in it); download
bars and mindgap's own bars (indexing, encoding, training) are untouched.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: transformers' bar descriptions that stand for no real work (local weight reads)
QUIET_BARS = frozenset({"Loading weights", "Loading checkpoint shards"})


def _hook(previous: Callable[..., Any] | None) -> Callable[..., Any]:
    def hook(factory: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        if kwargs.get("desc") in QUIET_BARS:
            kwargs = {**kwargs, "disable": True}
        return previous(factory, args, kwargs) if previous else factory(*args, **kwargs)

    return hook


@contextmanager
def quiet_model_loading() -> Iterator[None]:
    """Within the block, transformers draws no bar for reading weights (a no-op without transformers)."""
    if importlib.util.find_spec("transformers") is None:
        yield
        return
    from transformers.utils import logging as tlog

    if not hasattr(tlog, "set_tqdm_hook"):  # older transformers: nothing to hook
        yield
        return
    previous = tlog.set_tqdm_hook(None)
    tlog.set_tqdm_hook(_hook(previous))
    try:
        yield
    finally:
        tlog.set_tqdm_hook(previous)
