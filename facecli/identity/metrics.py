"""Clustering quality against known identities: pairwise and BCubed precision / recall / F.

Both are computed from the contingency table of (true, predicted) label pairs, so memory is
O(distinct pairs), never O(N^2). A predicted label below 0 (a face without an identity) counts
as a cluster of its own. ARI and NMI come from scikit-learn (:func:`clustering_scores`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PRF:
    precision: float
    recall: float
    f: float


def _contingency(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cell counts and, for each cell, the sizes of its true class and its predicted cluster."""
    t = np.unique(np.asarray(truth), return_inverse=True)[1].astype(np.int64).reshape(-1)
    p = np.asarray(pred, dtype=np.int64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"truth and pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    alone = p < 0
    p = p.copy()
    p[alone] = p.max(initial=-1) + 1 + np.arange(int(alone.sum()))  # each unlabelled row alone
    p = np.unique(p, return_inverse=True)[1].astype(np.int64).reshape(-1)
    cells, counts = np.unique(t * (p.max() + 1) + p, return_counts=True)
    cell_t, cell_p = cells // (p.max() + 1), cells % (p.max() + 1)
    class_size = np.bincount(t)[cell_t]
    cluster_size = np.bincount(p)[cell_p]
    return counts, class_size, cluster_size, np.bincount(t)


def _f(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def pairwise_prf(truth: np.ndarray, pred: np.ndarray) -> PRF:
    """Pairwise precision (pairs put together that are one person), recall and F.

    Args:
        truth: [N] true identity of each face (any hashable numpy dtype).
        pred: int [N] predicted cluster, -1 = alone.
    """
    n, _, _, class_sizes = _contingency(truth, pred)
    tp = float((n * (n - 1) // 2).sum())
    pred_arr = np.asarray(pred, dtype=np.int64)
    sizes = np.unique(pred_arr[pred_arr >= 0], return_counts=True)[1]
    predicted_pairs = float((sizes * (sizes - 1) // 2).sum())
    true_pairs = float((class_sizes * (class_sizes - 1) // 2).sum())
    precision = 1.0 if predicted_pairs == 0 else tp / predicted_pairs
    recall = 1.0 if true_pairs == 0 else tp / true_pairs
    return PRF(precision, recall, _f(precision, recall))


def bcubed_prf(truth: np.ndarray, pred: np.ndarray) -> PRF:
    """BCubed precision, recall and F (Bagga & Baldwin 1998; Amigo et al. 2009).

    Each face's precision is the share of its cluster that is its person, its recall the share
    of its person that is in its cluster; both are averaged over faces.
    """
    n, class_size, cluster_size, _ = _contingency(truth, pred)
    total = float(n.sum())
    precision = float((n * n / cluster_size).sum()) / total
    recall = float((n * n / class_size).sum()) / total
    return PRF(precision, recall, _f(precision, recall))


def clustering_scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Pairwise F, BCubed F, ARI, NMI and the number of predicted identities.

    Needs scikit-learn (the ``test`` extra) for ARI and NMI.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    pred = np.asarray(pred, dtype=np.int64)
    alone = pred < 0
    filled = pred.copy()
    filled[alone] = pred.max(initial=-1) + 1 + np.arange(int(alone.sum()))
    pw, bc = pairwise_prf(truth, pred), bcubed_prf(truth, pred)
    return {
        "pairwise_f": pw.f,
        "pairwise_precision": pw.precision,
        "pairwise_recall": pw.recall,
        "bcubed_f": bc.f,
        "bcubed_precision": bc.precision,
        "bcubed_recall": bc.recall,
        "ari": float(adjusted_rand_score(truth, filled)),
        "nmi": float(normalized_mutual_info_score(truth, filled)),
        "identities": int(np.unique(filled).shape[0]),
    }
