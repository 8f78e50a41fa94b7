"""Copy an embedded store into another backend (same items, vectors and manifest), so that
`mindgap eval --store URI` compares backends on identical embeddings without re-encoding.

Usage: python docs/results/eval/stores/copy_store.py SRC_URI DST_URI
"""

from __future__ import annotations

import sys

from mindgap.stores import open_store
from mindgap.types import Modality


def main(src_uri: str, dst_uri: str) -> None:
    src, dst = open_store(src_uri), open_store(dst_uri)
    man = src.manifest
    assert man is not None, f"{src_uri} has no manifest"
    man.gap, man.default_gap, man.index = {}, "naive", {"uri": dst.uri}  # correctors are refitted by eval
    for m in Modality:
        ids, vecs = src.vectors(m)
        for b in range(0, len(ids), 500):
            items = src.get(ids[b : b + 500])
            dst.add(items, vecs[b : b + 500])
    dst.save_manifest(man)
    print(dst_uri, {m.value: dst.count(m) for m in Modality})
    src.close()
    dst.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
