"""The ``MINDGAP_*`` environment variables: the one table of them is in the README
("Environment variables"; a test checks that every variable read under ``src/`` is listed).

``MINDGAP_API_KEY`` is the server API key (``mindgap serve``, ``mindgap llm-serve``);
``MINDGAP_SERVER_API_KEY`` is its deprecated alias, read with a warning when the canonical
name is unset.
"""

from __future__ import annotations

import os
import warnings

API_KEY = "MINDGAP_API_KEY"
#: The old name of :data:`API_KEY` (``mindgap llm-serve`` read it); still read, with a warning.
API_KEY_DEPRECATED = "MINDGAP_SERVER_API_KEY"


def api_key() -> str | None:
    """The server API key from the environment: ``MINDGAP_API_KEY``, else the deprecated alias (empty = none).

    Example:
        >>> import os
        >>> os.environ.pop("MINDGAP_API_KEY", None) and None
        >>> os.environ.pop("MINDGAP_SERVER_API_KEY", None) and None
        >>> api_key() is None
        True
    """
    key = os.environ.get(API_KEY, "").strip()
    if key:
        return key
    old = os.environ.get(API_KEY_DEPRECATED, "").strip()
    if old:
        warnings.warn(f"${API_KEY_DEPRECATED} is deprecated: set ${API_KEY} instead", DeprecationWarning, stacklevel=2)
        return old
    return None
