"""HOTA, IDF1, ID switches and MOTA of a tracker's output against ground truth, by TrackEval.

TrackEval (the HOTA authors' evaluator, MIT; PyPI ``trackeval``) is used for all of them.
motmetrics 1.4.0, the other maintained choice, still calls ``np.asfarray`` in its IoU
distance, which NumPy 2 removed.
"""

from __future__ import annotations

import numpy as np


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def evaluate(
    gt: list[list[tuple[int, np.ndarray]]], hyp: list[list[tuple[int, np.ndarray]]], iou: float = 0.5
) -> dict[str, float]:
    """Scores of per-frame (id, box xyxy) hypotheses against per-frame (id, box) ground truth.

    Returns:
        idf1, id_switches, mota (IoU >= ``iou`` to match) and hota, deta, assa
        (TrackEval's HOTA averaged over its IoU thresholds 0.05..0.95).
    """
    from trackeval.metrics import CLEAR, HOTA, Identity

    gt_ids = sorted({i for g in gt for i, _ in g})
    hyp_ids = sorted({i for h in hyp for i, _ in h})
    gmap, hmap = {v: k for k, v in enumerate(gt_ids)}, {v: k for k, v in enumerate(hyp_ids)}
    data = {
        "num_timesteps": len(gt),
        "num_gt_dets": sum(len(g) for g in gt),
        "num_tracker_dets": sum(len(h) for h in hyp),
        "num_gt_ids": len(gt_ids),
        "num_tracker_ids": len(hyp_ids),
        "gt_ids": [np.array([gmap[i] for i, _ in g], dtype=int) for g in gt],
        "tracker_ids": [np.array([hmap[i] for i, _ in h], dtype=int) for h in hyp],
        "similarity_scores": [
            _iou([b for _, b in g], [b for _, b in h]) if g and h else np.zeros((len(g), len(h))) for g, h in zip(gt, hyp)
        ],
    }
    hota = HOTA().eval_sequence(data)
    clear = CLEAR({"THRESHOLD": iou, "PRINT_CONFIG": False}).eval_sequence(data)
    ident = Identity({"THRESHOLD": iou, "PRINT_CONFIG": False}).eval_sequence(data)
    return {
        "idf1": float(ident["IDF1"]),
        "id_switches": int(clear["IDSW"]),
        "mota": float(clear["MOTA"]),
        "hota": float(np.mean(hota["HOTA"])),
        "deta": float(np.mean(hota["DetA"])),
        "assa": float(np.mean(hota["AssA"])),
    }
