"""Per-item terms of a corrector, computed once per store and kept beside it.

``calibrated``'s hubness term (:meth:`mindgap.gap.calibrated.Calibrated.item_offsets`) is a
function of the item's vector alone: the mean cosine to its nearest items of the other modality
in the reference sample kept with the corrector. Computing it costs a product with that sample
per candidate, which used to be paid by the first queries that met each item. The retriever
instead computes every item's term when the corrector is fitted (``mindgap index`` fits the
store's ``auto`` corrector), adds the terms of new items as they are indexed, and saves the table
beside the store (``<store>/hubterms/<gap>.npz``; ``<file>.hubterms/`` for Milvus Lite) so the
next process loads it instead of recomputing.

The table is a cache, never a source of truth:

* it is tied to the corrector by :meth:`~mindgap.gap.calibrated.Calibrated.term_key` (a digest
  of ``hub``, ``hub_k`` and the reference sample); a refitted corrector ignores an old table;
* every term is checked against a fingerprint of the vector it was computed from each time it
  is used, so an id re-indexed with another vector is recomputed;
* a missing, stale or unreadable table only costs the computation (a warning is logged for an
  unreadable one); it is written atomically (a reader sees the old table or the new one).
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import write_atomic

log = logging.getLogger(__name__)

#: The side folder's name (see :func:`mindgap.stores.side_dir`).
KIND = "hubterms"
_FORMAT = "mindgap item terms 1"  # arrays: format, key, <m>.ids (UTF-8 bytes), <m>.len, <m>.fp, <m>.val


def terms_path(store_uri: str, gap_name: str) -> Path | None:
    """Where the table of ``gap_name``'s item terms lives for the store ``store_uri`` (``None``:
    an in-memory or remote store — the terms are then kept in memory only)."""
    from ..stores import side_dir

    folder = side_dir(store_uri, KIND)
    if folder is None:
        return None
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", gap_name)[:60]
    return folder / f"{safe}-{hashlib.sha256(gap_name.encode()).hexdigest()[:8]}.npz"


def _pack(ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Ids as one UTF-8 byte array and their byte lengths (compact for any id, unlike a
    fixed-width string array sized by the longest)."""
    enc = [i.encode("utf-8") for i in ids]
    return np.frombuffer(b"".join(enc), np.uint8).copy(), np.fromiter(map(len, enc), np.int64, len(enc))


def _unpack(blob: np.ndarray, lengths: np.ndarray) -> list[str]:
    data = np.asarray(blob, np.uint8).tobytes()
    lengths = np.asarray(lengths, np.int64)
    if lengths.ndim != 1 or (lengths < 0).any() or int(lengths.sum()) != len(data):
        raise ValueError("the ids do not match their lengths")
    ends = np.cumsum(lengths).tolist()
    starts = [0, *ends[:-1]]
    return [data[a:b].decode("utf-8") for a, b in zip(starts, ends)]


def save_terms(corrector: Any, path: Path, keep: set[str] | None = None) -> int:
    """Write the corrector's kept item terms (only ids in ``keep`` when given) to ``path``
    atomically → how many were written."""
    arrays: dict[str, np.ndarray] = {"format": np.array(_FORMAT), "key": np.array(corrector.term_key())}
    n = 0
    for m, (ids, fp, val) in corrector.export_terms().items():
        if keep is not None:
            sel = [j for j, i in enumerate(ids) if i in keep]
            ids, fp, val = [ids[j] for j in sel], fp[sel], val[sel]
        blob, lengths = _pack(ids)
        arrays[f"{m}.ids"] = blob
        arrays[f"{m}.len"] = lengths
        arrays[f"{m}.fp"] = np.asarray(fp, np.int64)
        arrays[f"{m}.val"] = np.asarray(val, np.float64)
        n += len(ids)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    write_atomic(Path(path), write)
    return n


def load_terms(corrector: Any, path: Path) -> int:
    """Load a table written by :func:`save_terms` into ``corrector`` → how many terms were
    loaded: 0 when there is none, or it belongs to another fit (its key differs). An unreadable
    table is logged and ignored (the terms are recomputed)."""
    path = Path(path)
    if not path.is_file():
        return 0
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"]) != _FORMAT or str(z["key"]) != corrector.term_key():
                return 0
            n = 0
            for name in z.files:
                if name.endswith(".ids"):
                    m = name[: -len(".ids")]
                    ids = _unpack(z[name], z[f"{m}.len"])
                    n += corrector.import_terms(m, ids, z[f"{m}.fp"], z[f"{m}.val"])
            return n
    except Exception as exc:  # noqa: BLE001 - a cache: recompute rather than fail the search
        log.warning("ignoring the table of item terms %s (it will be recomputed): %s", path, exc)
        return 0


__all__ = ["KIND", "terms_path", "save_terms", "load_terms"]
