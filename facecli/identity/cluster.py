"""Identity labels by leader clustering, in row order, as a stream.

Each embedding is L2-normalised and joins the most similar identity centroid when their
cosine similarity reaches ``threshold``; otherwise it starts a new identity. A joined
centroid becomes the running mean of its members, re-normalised. Labels are
``Person_<k>`` numbered by first appearance. Memory is O(identities x dim), so a run of any
length can be labelled as it is written.
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
