"""Every ``MINDGAP_*`` environment variable, in one table (the README links here).

==============================  ==================================================================
variable                        effect
==============================  ==================================================================
``MINDGAP_API_KEY``             API key of ``mindgap serve`` and ``mindgap llm-serve`` (same as
                                ``--api-key``); unset = open server
``MINDGAP_SERVER_API_KEY``      deprecated alias of ``MINDGAP_API_KEY`` (read, with a warning,
                                when ``MINDGAP_API_KEY`` is unset)
``MINDGAP_DATA``                the shared data folder (``mmqa``, ``flickr8k_224``)
``MINDGAP_CACHE``               cache folder (converted GGUF models, caption-map embeddings)
``MINDGAP_NO_CACHE``            ``1``: do not cache caption-map embeddings
``MINDGAP_MAX_IMAGE_PIXELS``    largest image (width × height) decoded; default 64M
``MINDGAP_THREADS``             CPU threads of the local LLM generator
``MINDGAP_LOCAL_BACKEND``       backend of the local LLM generator (see ``rag.generators.local_gguf``)
``MINDGAP_OPENAI_MODEL``        model of the ``openai:`` generator when the spec names none
``MINDGAP_OPENAI_BASE_URL``     base URL of the ``openai:`` generator
``MINDGAP_OPENAI_API_KEY``      API key of the ``openai:`` generator (else ``OPENAI_API_KEY``)
``MINDGAP_OPENAI_VISION``       ``1``: the ``openai:`` model accepts images
``MINDGAP_OPENAI_CONTEXT_WINDOW``  context window (tokens) of the ``openai:`` model
==============================  ==================================================================
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
