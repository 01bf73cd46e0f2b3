"""One vector per face track, and which tracks are seen together, streamed over row batches.

:class:`TrackAccumulator` is fed rows in file order (one per face, frames contiguous) and keeps,
per track, the sum of its faces' L2-normalised embeddings (non-finite embeddings are skipped)
and the face count; and the set of track pairs that share a frame (cannot-link: two faces of one
frame are two people). Memory is O(tracks x dim + pairs), whatever the video's length.
:func:`track_identities` then clusters the tracks of one video into ``Person_<k>`` labels.
"""

from __future__ import annotations

import numpy as np

from facecli.identity.cluster import DEFAULT_METHOD, cluster_items, person_labels


class TrackAccumulator:
    """Streaming per-track embedding means and same-frame pairs.

    Items are numbered by first appearance. A row with ``track >= 0`` belongs to that track's
    item; a row with ``track < 0`` (no track) is an item of its own when ``singletons`` is set
    and it has a finite embedding, else it belongs to no item.

    Args:
        singletons: make untracked faces items of their own (dataset re-labelling of files
            without tracks); off for per-video labelling, where untracked rows get no label.
    """

    def __init__(self, singletons: bool = False) -> None:
        self.singletons = singletons
        self._item_of_track: dict[int, int] = {}
        self._keys: list[int] = []  # track id per item (-1: a single untracked face)
        self._sums = np.zeros((0, 0), dtype=np.float32)
        self._faces = np.zeros(0, dtype=np.int64)
        self._embedded = np.zeros(0, dtype=np.int64)
        self._n = 0
        self._pairs: set[int] = set()
        self._tail_frame: int | None = None  # last frame seen, whose rows may continue
        self._tail_items = np.zeros(0, dtype=np.int64)

    @property
    def num_items(self) -> int:
        return self._n

    def add(self, track: np.ndarray | None, frame: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        """Add a batch of rows.

        Args:
            track: int [N] track id per row (< 0: untracked), or None (all untracked).
            frame: int [N] frame number per row; rows of one frame are contiguous.
            embeddings: float [N, D]; non-finite rows (no face, or no embedding) add nothing
                to the sums.

        Returns:
            int64 [N] item of each row, -1 for none.
        """
        emb = np.asarray(embeddings, dtype=np.float32)
        n = emb.shape[0]
        frame = np.asarray(frame, dtype=np.int64).reshape(n)
        tr = np.full(n, -1, dtype=np.int64) if track is None else np.asarray(track, dtype=np.int64).reshape(n)
        if self._sums.shape[1] == 0 and n:
            self._sums = np.zeros((0, emb.shape[1]), dtype=np.float32)
        elif n and emb.shape[1] != self._sums.shape[1]:
            raise ValueError(f"embeddings have {emb.shape[1]} values, earlier batches {self._sums.shape[1]}")
        finite = np.isfinite(emb).all(1)
        items = np.full(n, -1, dtype=np.int64)
        tracked = np.flatnonzero(tr >= 0)
        uniq, first, inverse = np.unique(tr[tracked], return_index=True, return_inverse=True)
        known = np.array([self._item_of_track.get(int(u), -1) for u in uniq.tolist()], dtype=np.int64)
        # new items in order of their first row: unseen tracks and (optionally) untracked faces
        new_rows = tracked[first[known < 0]]
        lone = np.flatnonzero((tr < 0) & finite) if self.singletons else np.zeros(0, dtype=np.int64)
        starts = np.sort(np.concatenate([new_rows, lone]))
        ids = self._new_items(tr[starts])
        items[starts] = ids
        for u, item in zip(tr[starts][tr[starts] >= 0].tolist(), ids[tr[starts] >= 0].tolist()):
            self._item_of_track[u] = item
        known = np.array([self._item_of_track[int(u)] for u in uniq.tolist()], dtype=np.int64)
        items[tracked] = known[inverse.reshape(-1)]
        has = items >= 0
        np.add.at(self._faces, items[has], 1)
        use = has & finite
        if use.any():
            unit = emb[use] / np.maximum(np.linalg.norm(emb[use], axis=1, keepdims=True), 1e-12)
            np.add.at(self._sums, items[use], unit)
            np.add.at(self._embedded, items[use], 1)
        self._note_pairs(frame[has], items[has])
        return items

    def _new_items(self, keys: np.ndarray) -> np.ndarray:
        """Open one item per key (track id, or -1); returns their numbers."""
        need = self._n + len(keys)
        if need > self._sums.shape[0]:
            cap = max(64, 2 * need)
            sums = np.zeros((cap, self._sums.shape[1]), dtype=np.float32)
            sums[: self._n] = self._sums[: self._n]
            faces = np.zeros((2, cap), dtype=np.int64)
            faces[0, : self._n] = self._faces[: self._n]
            faces[1, : self._n] = self._embedded[: self._n]
            self._sums, self._faces, self._embedded = sums, faces[0], faces[1]
        self._keys.extend(np.asarray(keys).tolist())
        ids = np.arange(self._n, need, dtype=np.int64)
        self._n = need
        return ids

    def _note_pairs(self, frame: np.ndarray, items: np.ndarray) -> None:
        """Record item pairs sharing a frame; the last frame's rows are kept for the next batch."""
        if self._tail_frame is not None:
            frame = np.concatenate([np.full(len(self._tail_items), self._tail_frame), frame])
            items = np.concatenate([self._tail_items, items])
        if len(frame) == 0:
            return
        last = frame[-1]
        tail = frame == last
        done_f, done_i = frame[~tail], items[~tail]
        self._pairs_of(done_f, done_i)
        self._tail_frame = int(last)
        self._tail_items = items[tail]

    def _pairs_of(self, frame: np.ndarray, items: np.ndarray) -> None:
        # rows of a frame are contiguous: pairs are rows d apart with the same frame, d = 1, 2, ...
        d = 1
        while d < len(frame):
            same = frame[:-d] == frame[d:]
            if not same.any():
                break
            a, b = items[:-d][same], items[d:][same]
            lo, hi = np.minimum(a, b), np.maximum(a, b)
            keep = lo != hi
            codes = np.unique((lo[keep] << 32) | hi[keep])
            self._pairs.update(codes.tolist())
            d += 1

    def finish(self) -> None:
        """Close the last frame (call after the last batch; adding more rows afterwards is fine)."""
        if self._tail_frame is not None:
            self._pairs_of(np.full(len(self._tail_items), self._tail_frame), self._tail_items)
        self._tail_frame, self._tail_items = None, np.zeros(0, dtype=np.int64)

    def sums(self) -> np.ndarray:
        """float32 [M, D] sum of unit embeddings per item (zeros: no embedding)."""
        return self._sums[: self._n]

    def means(self) -> np.ndarray:
        """float32 [M, D] unit mean embedding per item (NaN rows: no embedding)."""
        s = self.sums()
        norm = np.linalg.norm(s, axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(norm > 0, s / norm, np.nan).astype(np.float32)

    def faces(self) -> np.ndarray:
        """int64 [M] rows per item."""
        return self._faces[: self._n]

    def embedded(self) -> np.ndarray:
        """int64 [M] faces per item with a finite embedding (the terms of its sum)."""
        return self._embedded[: self._n]

    def keys(self) -> np.ndarray:
        """int64 [M] track id of each item (-1: an untracked single face)."""
        return np.asarray(self._keys, dtype=np.int64)

    def cannot_link(self) -> np.ndarray:
        """int64 [P, 2] item pairs (lower first) that share a frame, sorted."""
        self.finish()
        codes = np.array(sorted(self._pairs), dtype=np.int64)
        return np.stack([codes >> 32, codes & 0xFFFFFFFF], axis=1) if len(codes) else np.zeros((0, 2), dtype=np.int64)


def track_identities(
    acc: TrackAccumulator, threshold: float, method: str = DEFAULT_METHOD, **options: object
) -> dict[int, str | None]:
    """Cluster one video's tracks into identities.

    Args:
        acc: the video's accumulator, after its last batch.
        threshold: cosine similarity to merge (see :func:`facecli.identity.cluster.cluster_items`).
        method: "linkage" (default) or "leader".
        **options: passed to :func:`~facecli.identity.cluster.cluster_items`.

    Returns:
        track id -> ``Person_<k>`` (numbered by first appearance in the video), None for a
        track without any finite embedding. Untracked rows (track < 0) have no entry.
    """
    numbers = cluster_items(
        acc.sums(), acc.cannot_link(), threshold=threshold, method=method, counts=acc.embedded(), **options
    )
    labels = person_labels(numbers)
    return {int(k): lab for k, lab in zip(acc.keys().tolist(), labels) if k >= 0}
