"""Identity clustering: the entry point (:func:`cluster_items`) and the leader rule.

``cluster_items`` clusters items (face tracks, or single faces) with the default "linkage"
method (constrained average linkage on a kNN graph, :mod:`facecli.identity.constrained`) or
"leader". :class:`LeaderClustering` is facecli's original streaming rule, unchanged: each
embedding is L2-normalised and joins the most similar identity centroid when their cosine
similarity reaches ``threshold``; otherwise it starts a new identity. A joined centroid becomes
the running mean of its members, re-normalised. Labels are ``Person_<k>`` numbered by first
appearance; memory is O(identities x dim).
"""

from __future__ import annotations

import numpy as np

class LeaderClustering:
    """Streaming leader clustering of face embeddings.

    Args:
        threshold: cosine similarity needed to join an existing identity.
    """

    def __init__(self, threshold: float = 0.8) -> None:
        self.threshold = float(threshold)
        self._centroids = np.zeros((0, 0), dtype=np.float32)  # [K, D] unit vectors
        self._counts: list[int] = []

    @property
    def num_identities(self) -> int:
        return len(self._counts)

    def assign(self, embeddings: np.ndarray) -> list[str | None]:
        """Label rows in order; non-finite rows get None.

        Args:
            embeddings: float [N, D].

        Returns:
            N labels ``Person_<k>`` or None.
        """
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.ndim != 2:
            raise ValueError(f"embeddings must be [N, D], got shape {emb.shape}")
        if self._centroids.shape[1] == 0 and emb.shape[0]:
            self._centroids = np.zeros((0, emb.shape[1]), dtype=np.float32)
        labels: list[str | None] = []
        for row in emb:
            if not np.isfinite(row).all():
                labels.append(None)
                continue
            labels.append(f"Person_{self._assign_one(_unit(row))}")
        return labels

    def _assign_one(self, e: np.ndarray) -> int:
        k_count = len(self._counts)
        if k_count:
            sims = self._centroids @ e
            k = int(sims.argmax())
            if sims[k] >= self.threshold:
                self._counts[k] += 1
                c = self._centroids[k] + (e - self._centroids[k]) / self._counts[k]
                self._centroids[k] = _unit(c)
                return k
        self._centroids = np.concatenate([self._centroids, e[None]], axis=0)
        self._counts.append(1)
        return k_count


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def cluster_identities(embeddings: np.ndarray, threshold: float = 0.8) -> list[str | None]:
    """Label a whole [N, D] array at once (same result as streaming it in order)."""
    return LeaderClustering(threshold).assign(embeddings)


# Clustering methods of a whole set of items (tracks or faces), see `cluster_items`.
METHODS = ("linkage", "leader")
DEFAULT_METHOD = "linkage"
DEFAULT_NEIGHBOURS = 16  # kNN graph degree of the linkage method


def cluster_items(
    sums: np.ndarray,
    cannot_link: np.ndarray | None = None,
    *,
    threshold: float,
    method: str = DEFAULT_METHOD,
    neighbours: int = DEFAULT_NEIGHBOURS,
    exact_max: int | None = None,
    counts: np.ndarray | None = None,
) -> np.ndarray:
    """Cluster items (face tracks or single faces) into identities numbered by first appearance.

    Args:
        sums: float [M, D] per item, in first-appearance order: the sum (or mean) of its
            faces' unit embeddings; a row of zeros or NaN is an item without an embedding.
        cannot_link: int64 [P, 2] item pairs that are different people (seen in one frame).
        threshold: cosine similarity to merge (linkage: the mean cosine over all pairs of faces
            of two clusters; leader: between an item and a running centroid).
        method: "linkage" (constrained average linkage on a kNN graph,
            :mod:`facecli.identity.constrained`) or "leader" (:class:`LeaderClustering` over the
            items in order; ignores cannot-links, as facecli did before tracks).
        neighbours: kNN graph degree (linkage).
        exact_max: exact kNN up to this many items, approximate beyond (default
            :data:`facecli.identity.knn.EXACT_MAX`).
        counts: [M] faces with an embedding per item (the number of terms in its sum); None:
            each row is taken as one face (rows are normalised first).

    Returns:
        int64 [M] identity number per item (0, 1, ... by first appearance), -1 without embedding.
    """
    x = np.asarray(sums, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"sums must be [M, D], got shape {x.shape}")
    valid = np.isfinite(x).all(1) & (np.abs(x).sum(1) > 0)
    if method == "leader":
        labels = LeaderClustering(threshold).assign(np.where(valid[:, None], x, np.nan))
        return np.array([-1 if lab is None else int(lab.split("_")[1]) for lab in labels], dtype=np.int64)
    if method != "linkage":
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    from facecli.identity.constrained import agglomerate, number_by_first_appearance
    from facecli.identity.knn import EXACT_MAX, knn_edges

    cl = np.zeros((0, 2), dtype=np.int64) if cannot_link is None else np.asarray(cannot_link, dtype=np.int64)
    ids = np.flatnonzero(valid)
    roots = np.arange(x.shape[0], dtype=np.int64)
    if len(ids) > 1:
        unit = unit_rows(x[ids])
        i, j, _ = knn_edges(unit, neighbours, exact_max=EXACT_MAX if exact_max is None else exact_max)
        del unit
        remap = np.full(x.shape[0], -1, dtype=np.int64)
        remap[ids] = np.arange(len(ids))
        cl = remap[cl] if len(cl) else cl.reshape(0, 2)
        cl = cl[(cl >= 0).all(1)]
        if counts is None:  # one face per row
            sub = agglomerate(unit_rows(x[ids]), (i, j), cl, threshold, np.ones(len(ids)))
        else:
            sub = agglomerate(x[ids], (i, j), cl, threshold, np.asarray(counts, dtype=np.float64)[ids])
        roots[ids] = ids[sub]
    return number_by_first_appearance(roots, valid)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of x [M, D] scaled to unit length (float32)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def person_labels(numbers: np.ndarray) -> list[str | None]:
    """``Person_<k>`` for identity numbers, None for -1."""
    return [None if n < 0 else f"Person_{n}" for n in np.asarray(numbers).tolist()]
