"""Face tracks within a video: ByteTrack-style two-stage association, cut at shot changes.

Per processed frame (Zhang et al. 2022, "ByteTrack", in outline; our own implementation):

1. every track's box is predicted by a constant-velocity Kalman filter on (cx, cy, w, h);
2. detections scoring at least ``high_score`` are matched to all live tracks (tracked or
   lost) by the Hungarian algorithm on ``1 - IoU`` with the predicted box, plus, when
   embeddings are given, ``appearance_weight * (1 - cosine)`` with the track's running
   embedding; pairs under ``match_iou`` or (with ``appearance_gate``) under that cosine are
   never matched;
3. the remaining low-score detections (``low_score`` to ``high_score``) are matched, by IoU
   alone, to the tracks that were seen in the previous frame and are still unmatched;
4. unmatched detections scoring at least ``new_track_score`` start new tracks; unmatched
   tracks are kept as lost for ``max_lost`` processed frames, then ended.

A shot change (colour-histogram distance between consecutive processed frames above
``shot_threshold``, :mod:`facecli.identity.shots`) ends every track. Track ids are consecutive
integers in order of first appearance; matching is one-to-one per frame, so a track never
holds two faces of one frame. The whole state is a few arrays per track, saved by
:meth:`FaceTracker.state_dict` so an interrupted video resumes with the same ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from facecli.identity.shots import colour_histograms, histogram_distance

_NEVER = 1e6  # cost of a forbidden pair


@dataclass(frozen=True)
class TrackerConfig:
    """Settings of :class:`FaceTracker` (scores are the detector's, 0..1)."""

    high_score: float = 0.6  # detections at or above take part in the first stage
    low_score: float = 0.1  # below: ignored, track id -1
    new_track_score: float = 0.0  # an unmatched detection at or above this starts a track
    match_iou: float = 0.2  # first stage: least IoU with a predicted box
    low_match_iou: float = 0.5  # second stage (low-score detections): least IoU
    max_lost: int = 10  # processed frames a lost track waits to be found again
    appearance_gate: float | None = None  # least cosine between track and face embeddings
    appearance_weight: float = 0.5  # weight of (1 - cosine) in the matching cost
    embedding_momentum: float = 0.8  # running track embedding: m * old + (1 - m) * new
    shot_threshold: float = 0.35  # histogram distance above which a frame starts a new shot
    histogram_bins: int = 16  # per colour channel


# Kalman filter on (cx, cy, w, h) and their velocities; noise proportional to the box height.
_STD_POS, _STD_VEL = 1.0 / 20, 1.0 / 160
_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)


def _to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = boxes.T
    return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=1)


def _to_xyxy(z: np.ndarray) -> np.ndarray:
    half = z[:, 2:4] / 2
    return np.concatenate([z[:, :2] - half, z[:, :2] + half], axis=1)


def kalman_initiate(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """State [T, 8] and covariance [T, 8, 8] of new tracks at measured boxes z [T, 4] (cx, cy, w, h)."""
    h = z[:, 3:4]
    std = np.concatenate([np.repeat(2 * _STD_POS * h, 4, 1), np.repeat(10 * _STD_VEL * h, 4, 1)], axis=1)
    mean = np.concatenate([z, np.zeros_like(z)], axis=1)
    return mean, np.einsum("ti,ij->tij", std**2, np.eye(8))


def kalman_predict(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One constant-velocity step of every track: mean [T, 8], cov [T, 8, 8]."""
    h = mean[:, 3:4]
    q = np.concatenate([np.repeat((_STD_POS * h) ** 2, 4, 1), np.repeat((_STD_VEL * h) ** 2, 4, 1)], axis=1)
    mean = mean @ _F.T
    cov = _F @ cov @ _F.T + np.einsum("ti,ij->tij", q, np.eye(8))
    return mean, cov


def kalman_update(mean: np.ndarray, cov: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct tracks (mean [T, 8], cov [T, 8, 8]) with measured boxes z [T, 4]."""
    r = np.einsum("ti,ij->tij", np.repeat((_STD_POS * mean[:, 3:4]) ** 2, 4, 1), np.eye(4))
    s = _H @ cov @ _H.T + r  # [T, 4, 4]
    gain = np.linalg.solve(s, (cov @ _H.T).transpose(0, 2, 1)).transpose(0, 2, 1)  # [T, 8, 4]
    mean = mean + np.einsum("tij,tj->ti", gain, z - mean @ _H.T)
    cov = cov - gain @ _H @ cov
    return mean, cov


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a [N, 4] and b [M, 4] (x1, y1, x2, y2) -> [N, M]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


class FaceTracker:
    """Links detections of consecutive frames into tracks (one tracker per video).

    Args:
        config: association settings.
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._next_id = 0
        self._last_index: int | None = None
        self._last_hist: np.ndarray | None = None  # [C, bins] of the last processed frame
        self._ids = np.zeros(0, dtype=np.int64)
        self._mean = np.zeros((0, 8))
        self._cov = np.zeros((0, 8, 8))
        self._emb = np.zeros((0, 0))
        self._lost = np.zeros(0, dtype=np.int64)  # processed frames since last matched

    @property
    def num_tracks(self) -> int:
        """Tracks started so far (ids are 0 .. num_tracks - 1)."""
        return self._next_id

    def update(
        self,
        frames: Tensor,
        frame_index: Tensor | Sequence[int],
        boxes: Tensor,
        scores: Tensor,
        frame: Tensor,
        embeddings: Tensor | None = None,
        histograms: Tensor | None = None,
    ) -> Tensor:
        """Track the faces of one batch of consecutive processed frames.

        Args:
            frames: Tensor[B, 3, H, W] uint8, the batch's frames (for shot changes).
            frame_index: B frame numbers in the video, increasing across calls.
            boxes: Tensor[N, 4] float (x1, y1, x2, y2) frame pixels.
            scores: Tensor[N] detector scores.
            frame: Tensor[N] int64 position in the batch of each face's frame.
            embeddings: Tensor[N, D] identity embeddings (NaN rows allowed), or None.
            histograms: Tensor[B, 3, bins] colour histograms of ``frames`` when already computed
                (:func:`facecli.identity.shots.colour_histograms` with the tracker's bins).

        Returns:
            Tensor[N] int64 (CPU) track id per face, -1 for a face scoring under ``low_score``
            (or under ``new_track_score`` without a match).
        """
        index = [int(i) for i in (frame_index.tolist() if isinstance(frame_index, Tensor) else frame_index)]
        if len(index) != frames.shape[0]:
            raise ValueError(f"{len(index)} frame numbers for {frames.shape[0]} frames")
        if any(b <= a for a, b in zip([self._last_index] + index[:-1], index) if a is not None):
            raise ValueError(f"frame numbers must increase across calls; got {index} after {self._last_index}")
        if histograms is None and len(index):
            histograms = colour_histograms(frames, self.config.histogram_bins)
        hists = histograms.cpu().double().numpy() if len(index) else None
        box = boxes.detach().cpu().double().numpy().reshape(-1, 4)
        score = scores.detach().cpu().double().numpy().reshape(-1)
        pos = frame.detach().cpu().numpy().astype(np.int64).reshape(-1)
        emb = None if embeddings is None else embeddings.detach().cpu().double().numpy().reshape(len(pos), embeddings.shape[-1])
        out = np.full(len(pos), -1, dtype=np.int64)
        for b in range(len(index)):
            if self._last_hist is not None and self._is_cut(hists[b]):
                self._end_all()
            self._last_hist, self._last_index = hists[b], index[b]
            rows = np.flatnonzero(pos == b)
            out[rows] = self._step(box[rows], score[rows], None if emb is None else emb[rows])
        return torch.from_numpy(out)

    def _is_cut(self, hist: np.ndarray) -> bool:
        d = histogram_distance(torch.from_numpy(self._last_hist), torch.from_numpy(hist))
        return bool(d > self.config.shot_threshold)

    def _end_all(self) -> None:
        keep = np.zeros(len(self._ids), dtype=bool)
        self._select(keep)

    def _select(self, keep: np.ndarray) -> None:
        self._ids, self._mean, self._cov = self._ids[keep], self._mean[keep], self._cov[keep]
        self._lost = self._lost[keep]
        if self._emb.shape[0]:
            self._emb = self._emb[keep]

    def _step(self, box: np.ndarray, score: np.ndarray, emb: np.ndarray | None) -> np.ndarray:
        cfg = self.config
        n = len(score)
        ids = np.full(n, -1, dtype=np.int64)
        if emb is not None:
            norm = np.linalg.norm(emb, axis=1, keepdims=True)
            emb = np.where(np.isfinite(emb).all(1, keepdims=True) & (norm > 0), emb / np.maximum(norm, 1e-12), np.nan)
            if self._emb.shape[1] == 0:
                self._emb = np.full((len(self._ids), emb.shape[1]), np.nan)
        if len(self._ids):
            self._mean, self._cov = kalman_predict(self._mean, self._cov)
        matched_track = np.zeros(len(self._ids), dtype=bool)
        high = np.flatnonzero(score >= cfg.high_score)
        low = np.flatnonzero((score >= cfg.low_score) & (score < cfg.high_score))
        live = np.arange(len(self._ids))
        for d, t in self._associate(box, emb, high, live, cfg.match_iou, use_appearance=True):
            ids[d], matched_track[t] = self._ids[t], True
            self._correct(t, box[d], None if emb is None else emb[d])
        seen = live[(~matched_track) & (self._lost == 0)]
        for d, t in self._associate(box, emb, low, seen, cfg.low_match_iou, use_appearance=False):
            ids[d], matched_track[t] = self._ids[t], True
            self._correct(t, box[d], None if emb is None else emb[d])
        self._lost[matched_track] = 0
        self._lost[~matched_track] += 1
        self._select(self._lost <= cfg.max_lost)
        fresh = np.flatnonzero((ids < 0) & (score >= max(cfg.low_score, cfg.new_track_score)))
        if len(fresh):
            ids[fresh] = self._start(box[fresh], None if emb is None else emb[fresh])
        return ids

    def _associate(
        self, box: np.ndarray, emb: np.ndarray | None, dets: np.ndarray, tracks: np.ndarray, min_iou: float,
        use_appearance: bool,
    ) -> list[tuple[int, int]]:
        if len(dets) == 0 or len(tracks) == 0:
            return []
        iou = box_iou(box[dets], _to_xyxy(self._mean[tracks, :4]))  # [D, T]
        cost = 1.0 - iou
        forbidden = iou < min_iou
        if use_appearance and emb is not None and self._emb.shape[0]:
            cos = emb[dets] @ self._emb[tracks].T  # NaN where either side has no embedding
            known = np.isfinite(cos)
            cost = cost + np.where(known, self.config.appearance_weight * (1.0 - cos), 0.0)
            if self.config.appearance_gate is not None:
                forbidden |= known & (cos < self.config.appearance_gate)
        cost = np.where(forbidden, _NEVER, cost)
        rows, cols = linear_sum_assignment(cost)
        return [(int(dets[r]), int(tracks[c])) for r, c in zip(rows, cols) if cost[r, c] < _NEVER]

    def _correct(self, t: int, box: np.ndarray, emb: np.ndarray | None) -> None:
        mean, cov = kalman_update(self._mean[t : t + 1], self._cov[t : t + 1], _to_cxcywh(box[None]))
        self._mean[t], self._cov[t] = mean[0], cov[0]
        if emb is not None and np.isfinite(emb).all():
            old = self._emb[t]
            m = self.config.embedding_momentum
            new = emb if not np.isfinite(old).all() else m * old + (1 - m) * emb
            self._emb[t] = new / max(float(np.linalg.norm(new)), 1e-12)

    def _start(self, box: np.ndarray, emb: np.ndarray | None) -> np.ndarray:
        ids = np.arange(self._next_id, self._next_id + len(box), dtype=np.int64)
        self._next_id += len(box)
        mean, cov = kalman_initiate(_to_cxcywh(box))
        self._ids = np.concatenate([self._ids, ids])
        self._mean = np.concatenate([self._mean, mean])
        self._cov = np.concatenate([self._cov, cov])
        self._lost = np.concatenate([self._lost, np.zeros(len(box), dtype=np.int64)])
        if emb is not None:
            self._emb = np.concatenate([self._emb, emb])
        elif self._emb.shape[1]:
            self._emb = np.concatenate([self._emb, np.full((len(box), self._emb.shape[1]), np.nan)])
        return ids

    def state_dict(self) -> dict[str, object]:
        """Everything needed to resume: JSON-able scalars and lists, and numpy arrays."""
        return {
            "version": 1,
            "config": asdict(self.config),
            "next_id": self._next_id,
            "last_index": self._last_index,
            "last_hist": None if self._last_hist is None else self._last_hist.copy(),
            "ids": self._ids.copy(),
            "mean": self._mean.copy(),
            "cov": self._cov.copy(),
            "emb": self._emb.copy(),
            "lost": self._lost.copy(),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore a state from :meth:`state_dict` (the config is restored too)."""
        if state.get("version") != 1:
            raise ValueError(f"unknown tracker state version {state.get('version')!r}")
        self.config = TrackerConfig(**state["config"])  # type: ignore[arg-type]
        self._next_id = int(state["next_id"])  # type: ignore[arg-type]
        last = state["last_index"]
        self._last_index = None if last is None else int(last)  # type: ignore[arg-type]
        hist = state["last_hist"]
        self._last_hist = None if hist is None else np.asarray(hist, dtype=np.float64)
        self._ids = np.asarray(state["ids"], dtype=np.int64).reshape(-1)
        self._mean = np.asarray(state["mean"], dtype=np.float64).reshape(-1, 8)
        self._cov = np.asarray(state["cov"], dtype=np.float64).reshape(-1, 8, 8)
        emb = np.asarray(state["emb"], dtype=np.float64)
        dim = emb.shape[1] if emb.ndim == 2 else 0  # (0, 0) until the first embedding, then (T, D)
        self._emb = emb.reshape(len(self._ids) if dim else 0, dim)
        self._lost = np.asarray(state["lost"], dtype=np.int64).reshape(-1)
