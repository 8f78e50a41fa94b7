"""Batch numbers and a commit mark: all-or-nothing batches on stores without transactions.

Shared by :mod:`.milvus` and :mod:`.qdrant`. Every row (point) a write adds carries a batch
number; numbers are reserved in blocks (meta key ``next``) *before* any row carries them, and a
batch counts once the meta key ``commit`` says so. Readers hide rows above the commit mark and
the ranges a writer that died had reserved (``aborted``); the next writer deletes those rows
before its first write. A SIGKILL therefore leaves whole batches only. One writer at a time.

A store using :class:`CommitMarks` provides ``_meta(key)`` / ``_set_meta(key, value)`` (its meta
collection), ``_count_all()`` (live rows per modality), ``_delete_uncommitted()`` (delete the
rows :meth:`_dead` describes, in its own filter language) and the attributes ``server``,
``_writable`` (False at open), ``_seen`` and ``_counts``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..types import Modality

BLOCK = 1 << 20  # batch numbers a writer reserves at a time


class CommitMarks:
    """The commit-mark protocol (mixin); see the module doc."""

    server: bool
    _writable: bool
    _seen: float
    _counts: dict[Modality, int]
    _wm: int
    _aborted: list[list[int]]
    _last: int
    _reserved: int

    # provided by the store
    def _meta(self, key: str) -> str | None:
        raise NotImplementedError

    def _set_meta(self, key: str, value: str) -> None:
        raise NotImplementedError

    def _count_all(self) -> dict[Modality, int]:
        raise NotImplementedError

    def _delete_uncommitted(self) -> None:
        raise NotImplementedError

    # the protocol
    def _read_marks(self) -> None:
        self._wm = int(self._meta("commit") or 0)
        self._aborted = json.loads(self._meta("aborted") or "[]")

    def _refresh(self) -> None:
        if self.server and not self._writable and time.monotonic() - self._seen > 1.0:
            self._read_marks()  # a reader follows the writer's commits (re-read at most once a second)
            self._counts = self._count_all()

    def _make_writable(self) -> None:
        """Before this process's first write: retire what earlier writers never committed.

        Numbers reserved but not committed by a writer that died are *aborted* for good —
        hidden from readers and deleted — so even a write of a killed client that reaches the
        server late can never join a later batch.
        """
        if self._writable:
            return
        self._read_marks()  # the latest commit, not the one seen at open
        reserved = int(self._meta("next") or 0)
        if reserved > self._wm:
            self._aborted.append([self._wm + 1, reserved])
            self._set_meta("aborted", json.dumps(self._aborted))
        self._delete_uncommitted()
        self._last = self._reserved = max([reserved, self._wm] + [hi for _, hi in self._aborted])
        self._counts = self._count_all()
        self._writable = True

    def _next_batch(self) -> int:
        b = self._last + 1
        if b > self._reserved:
            self._reserved = b + BLOCK - 1
            self._set_meta("next", str(self._reserved))  # before any row carries b
        self._last = b
        return b

    def _commit_batch(self, batch: int, write: Callable[[], Any], added: Mapping[Modality, int]) -> None:
        """Run ``write`` (the rows of ``batch``), then move the commit mark; on any failure the
        rows written so far are deleted (now, or by the next write / open) and the error raised."""
        try:
            write()
            self._set_meta("commit", str(batch))  # the commit point
        except BaseException:
            self._writable = False  # the next write (or open) deletes what this one wrote
            try:
                self._make_writable()
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
            raise
        self._wm = batch
        for m, n in added.items():
            self._counts[m] += n

    def _release_reservation(self) -> None:
        """On a clean close: hand back the unused reserved numbers, so the next open aborts nothing."""
        if self._writable and self._reserved > self._wm:
            self._set_meta("next", str(self._wm))


__all__ = ["BLOCK", "CommitMarks"]
