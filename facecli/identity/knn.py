"""Nearest neighbours of identity vectors by cosine similarity, as a sparse graph (FAISS).

Exact search (``IndexFlatIP``) up to ``exact_max`` vectors; beyond that an inverted-file
index (``IndexIVFFlat``: k-means cells, a few cells probed per query), which finds nearly all
true neighbours of clustered data at a fraction of the cost. Memory is the vectors plus
``M x k`` neighbours: never an ``M x M`` matrix.
"""

from __future__ import annotations

import math

import numpy as np

EXACT_MAX = 100_000  # exact search up to this many vectors, approximate beyond


def knn(
    vectors: np.ndarray, k: int, *, exact_max: int = EXACT_MAX, nprobe: int = 16, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar other vectors of every vector.

    Args:
        vectors: float32 [M, D] unit vectors (cosine similarity = inner product).
        k: neighbours per vector (fewer when M <= k).
        exact_max: above this many vectors, search approximately (IVF).
        nprobe: IVF cells searched per query (approximate search only).
        seed: k-means seed of the IVF cells.

    Returns:
        neighbours: int64 [M, k'] indices, -1 where fewer were found; sims: float32 [M, k']
        cosine similarities, descending per row. A vector is never its own neighbour.
    """
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    m, d = x.shape
    k = min(int(k), m - 1)
    if k <= 0:
        return np.zeros((m, 0), dtype=np.int64), np.zeros((m, 0), dtype=np.float32)
    if m <= exact_max:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = int(min(4 * math.sqrt(m), m // 39))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = x[np.sort(rng.choice(m, size=min(m, 64 * nlist), replace=False))]
        index.cp.seed = seed
        index.train(sample)
        index.nprobe = nprobe
    index.add(x)
    sims, nbrs = index.search(x, k + 1)
    return _drop_self(nbrs, sims, k)


def _drop_self(nbrs: np.ndarray, sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own index (or, when absent, its last column) from a k+1 search."""
    rows = np.arange(nbrs.shape[0])[:, None]
    is_self = nbrs == rows
    # keep k columns: drop the self match, or the last one where the row did not find itself
    drop = np.where(is_self.any(1), is_self.argmax(1), nbrs.shape[1] - 1)
    keep = np.ones_like(nbrs, dtype=bool)
    keep[np.arange(nbrs.shape[0]), drop] = False
    return nbrs[keep].reshape(-1, k).astype(np.int64), sims[keep].reshape(-1, k).astype(np.float32)


def knn_edges(vectors: np.ndarray, k: int, **options: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kNN graph as undirected edges, each once.

    Args:
        vectors: float32 [M, D] unit vectors.
        k: neighbours per vector.
        **options: passed to :func:`knn`.

    Returns:
        i, j: int64 [E] with i < j; sim: float32 [E] cosine similarity of the pair.
    """
    nbrs, sims = knn(vectors, k, **options)  # type: ignore[arg-type]
    m = nbrs.shape[0]
    src = np.repeat(np.arange(m, dtype=np.int64), nbrs.shape[1])
    dst = nbrs.reshape(-1)
    sim = sims.reshape(-1)
    ok = dst >= 0
    src, dst, sim = src[ok], dst[ok], sim[ok]
    lo, hi = np.minimum(src, dst), np.maximum(src, dst)
    code = lo * m + hi
    code, first = np.unique(code, return_index=True)
    return lo[first], hi[first], sim[first]
