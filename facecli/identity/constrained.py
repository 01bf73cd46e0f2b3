"""Constrained average-linkage agglomeration on a sparse kNN graph (facecli's default clustering).

Items are face tracks (or single faces) given by the *sum* S of their faces' unit embeddings and
their face count n. The similarity of two clusters is the mean cosine over all pairs of their
faces, S_a . S_b / (n_a n_b) (average linkage, exact from the sums), so merging two clusters
adds their sums and counts. Starting from one cluster per item, the two most similar clusters
are merged, again and again, while their similarity is at least ``threshold``. Two clusters are
merge candidates only when some item of one is among the ``k`` nearest neighbours of some item
of the other (the kNN graph, :mod:`facecli.identity.knn`), and never when a cannot-link pair
(two faces seen in the same frame) joins them: a cluster never holds two faces of one frame.
Mean pairwise cosine does not grow with cluster size (a centroid of many faces is cleaner than
one face, so centroid cosines do), so one threshold means the same for a single face, a track
and a whole identity. Compared with the anchors: like BCL (Tapaswi et al. 2019) it is
agglomerative over tracks with cannot-links, but with average instead of complete linkage,
which needs no pairwise matrix; like C1C / FINCH (Kalogeiton & Zisserman 2020; Sarfraz et al.
2019) it only looks at nearest neighbours, but merges one best pair at a time with a similarity
floor instead of whole first-neighbour chains, so one bridging item cannot chain two people.

Cost: O(E log E) heap operations for E graph edges, one D-dim dot product per stale entry;
memory O(M x D + E).
"""

from __future__ import annotations

import heapq

import numpy as np


def agglomerate(
    sums: np.ndarray,
    edges: tuple[np.ndarray, np.ndarray],
    cannot_link: np.ndarray,
    threshold: float,
    counts: np.ndarray | None = None,
    attach_single_faces: bool = True,
) -> np.ndarray:
    """Cluster items by constrained average linkage over graph edges.

    Average linkage is reducible: the similarity of a merged cluster to a third is a weighted
    mean of the two old ones, never above the larger. So every heap key is an upper bound of
    its clusters' current similarity, and an entry made stale by a merge is simply recomputed
    when it reaches the top (lazy greedy): the pair merged is always the most similar one, and
    a merge costs no update of its neighbours.

    Args:
        sums: float [M, D] per-item sums of unit embeddings (all-zero or non-finite rows: items
            without an embedding; they stay alone).
        edges: (i, j) int64 [E] candidate pairs (undirected; duplicates allowed).
        cannot_link: int64 [P, 2] item pairs that must end in different clusters.
        threshold: least mean cosine over all pairs of faces of two clusters to merge them
            (S_a . S_b / (n_a n_b)).
        counts: [M] faces per item (the terms of each sum); None: one each.
        attach_single_faces: afterwards, let faces left alone join the most similar neighbouring
            identity by centroid cosine (:func:`_attach_single_faces`).

    Returns:
        int64 [M] cluster representative per item (an item index; equal values = one cluster).
    """
    s = np.array(sums, dtype=np.float32)  # a copy: merged sums are added in place
    m = s.shape[0]
    valid = np.isfinite(s).all(1) & (np.abs(s).sum(1) > 0)
    s[~valid] = 0.0
    n = np.ones(m) if counts is None else np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    parent = np.arange(m, dtype=np.int64)
    version = [0] * m
    forbidden: dict[int, set[int]] = {}
    for a, b in np.asarray(cannot_link, dtype=np.int64).reshape(-1, 2).tolist():
        if a != b:
            forbidden.setdefault(a, set()).add(b)
            forbidden.setdefault(b, set()).add(a)
    ei, ej = (np.asarray(e, dtype=np.int64) for e in edges)
    keep = (ei != ej) & valid[ei] & valid[ej]
    ei, ej = ei[keep], ej[keep]
    sims = pair_cosines(s, ei, ej, n)
    high = sims >= threshold
    heap = list(zip((-sims[high]).tolist(), ei[high].tolist(), ej[high].tolist(), [0] * int(high.sum()), [0] * int(high.sum())))
    heapq.heapify(heap)
    empty: set[int] = set()
    while heap:
        _, i, j, vi, vj = heapq.heappop(heap)
        a, b = _find(parent, i), _find(parent, j)
        if a == b or b in forbidden.get(a, empty):
            continue
        if a != i or b != j or version[a] != vi or version[b] != vj:  # stale bound: recompute
            v = float(s[a] @ s[b]) / (n[a] * n[b])
            if v >= threshold:
                x, y = (a, b) if a < b else (b, a)
                heapq.heappush(heap, (-v, x, y, version[x], version[y]))
            continue
        if len(forbidden.get(a, empty)) < len(forbidden.get(b, empty)):
            a, b = b, a  # fold the side with fewer cannot-links into the other
        parent[b] = a
        s[a] += s[b]
        n[a] += n[b]
        version[a] += 1
        moved = forbidden.pop(b, None)
        if moved:
            mine = forbidden.setdefault(a, set())
            for c in moved:
                other = forbidden[c]
                other.discard(b)
                other.add(a)
                mine.add(c)
    if attach_single_faces:
        _attach_single_faces(s, n, parent, forbidden, ei, ej, threshold)
    return _roots(parent)


def _attach_single_faces(
    s: np.ndarray,
    n: np.ndarray,
    parent: np.ndarray,
    forbidden: dict[int, set[int]],
    ei: np.ndarray,
    ej: np.ndarray,
    threshold: float,
) -> None:
    """Let each face left alone join its most similar neighbouring identity.

    A single face (blurred, half-hidden, in profile) is far from every other single face, so its
    mean cosine to any group stays under the threshold; its cosine to a group's *centroid* is
    higher, because the centroid averages the group's noise away. A cluster of one face joins
    the neighbouring cluster (kNN edge, more than one face, no cannot-link) whose centroid it is
    most similar to, when that cosine reaches ``threshold``. Centroids are those before this
    step, so the order of the single faces does not matter except through cannot-links.
    """
    roots = _roots(parent)
    # n[root] is its cluster's face count: a root with one face is one item holding one face
    lone = np.flatnonzero((roots == np.arange(len(n))) & (n <= 1) & (np.abs(s).sum(1) > 0))
    if not len(lone) or not len(ei):
        return
    src = np.concatenate([ei, ej])
    dst = np.concatenate([ej, ei])
    order = np.argsort(src, kind="stable")
    src, dst = src[order], dst[order]
    start = np.searchsorted(src, lone)
    stop = np.searchsorted(src, lone, side="right")
    norm = np.linalg.norm(s, axis=1)
    empty: set[int] = set()
    for i, lo, hi in zip(lone.tolist(), start.tolist(), stop.tolist()):
        cands = np.unique(roots[dst[lo:hi]])
        cands = cands[(n[cands] > 1) & (cands != i)]
        bad = forbidden.get(i, empty)
        if bad:
            cands = np.array([c for c in cands.tolist() if c not in bad], dtype=np.int64)
        if not len(cands):
            continue
        cos = (s[cands] @ s[i]) / np.maximum(norm[cands] * norm[i], 1e-12)
        best = int(np.argmax(cos))
        if cos[best] >= threshold:
            a = int(cands[best])
            parent[i] = a
            moved = forbidden.pop(i, None)
            if moved:
                mine = forbidden.setdefault(a, set())
                for c in moved:
                    forbidden[c].discard(i)
                    forbidden[c].add(a)
                    mine.add(c)


def _find(parent: np.ndarray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = int(parent[root])
    while parent[i] != root:  # path compression
        parent[i], i = root, int(parent[i])
    return root


def pair_cosines(x: np.ndarray, i: np.ndarray, j: np.ndarray, norm: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarity of rows ``x[i]`` and ``x[j]``, in chunks (no [E, D] temporaries).

    Args:
        x: float [M, D]; i, j: int64 [E]; norm: float [M] row norms (computed when None).

    Returns:
        float64 [E] (0 where a row is all zero).
    """
    norm = np.linalg.norm(x, axis=1) if norm is None else norm
    out = np.empty(len(i), dtype=np.float64)
    step = 1 << 16
    for lo in range(0, len(i), step):
        a, b = i[lo : lo + step], j[lo : lo + step]
        dots = np.einsum("ed,ed->e", x[a], x[b], dtype=np.float64)
        out[lo : lo + step] = dots / np.maximum(norm[a] * norm[b], 1e-300)
    return out


def _roots(parent: np.ndarray) -> np.ndarray:
    root = parent.copy()
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            return root
        root = nxt


def number_by_first_appearance(roots: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Relabel cluster representatives 0, 1, 2 ... in order of each cluster's first item.

    Args:
        roots: int64 [M] cluster representative per item (items in first-appearance order).
        valid: bool [M]; invalid items get -1.

    Returns:
        int64 [M] cluster numbers, -1 for invalid items.
    """
    roots = np.asarray(roots, dtype=np.int64)
    out = np.full(roots.shape[0], -1, dtype=np.int64)
    ok = np.ones(roots.shape[0], dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if not ok.any():
        return out
    r = roots[ok]
    uniq, first = np.unique(r, return_index=True)
    rank = np.empty(uniq.shape[0], dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(uniq.shape[0])
    out[ok] = rank[np.searchsorted(uniq, r)]
    return out
