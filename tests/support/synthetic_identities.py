"""Synthetic face embeddings with known identities, laid out as videos, frames and tracks.

The generative model (all vectors in R^D; "unit" = L2-normalised):

* person p has an identity direction mu_p (unit, random); people come in look-alike pairs
  where the second's direction is unit(mu_p + r) with cos(mu_p, mu_p') about ``lookalike_cos``.
* each person has ``conditions`` appearance conditions (lighting, pose, age...), an offset
  c_{p,k} of norm ``condition_norm`` in a random direction.
* a face is mu_p + c_{p,k} + noise of norm ``noise``; a degraded face (blur, occlusion, a
  profile; ``degraded`` of all faces) has ``degraded_noise`` instead.
* a video casts a few people drawn from everyone (so people recur across videos); each cast
  member appears in a few segments (tracks) of random length, each under one condition;
  segments of different people overlap in time, so frames hold several faces.

Rows come out as facecli writes them: by video, then frame, one row per face.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SyntheticFaces:
    """One row per face. embeddings: float32 [N, D]; the others int64 [N]."""

    embeddings: np.ndarray
    person: np.ndarray  # true identity
    video: np.ndarray  # video number, rows grouped by video in order
    frame: np.ndarray  # frame number within the video, ascending within a video
    track: np.ndarray  # track number within the video (numbered by first appearance)
    degraded: np.ndarray  # 1 for a degraded face

    def __len__(self) -> int:
        return int(self.person.shape[0])


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def make_faces(
    *,
    people: int = 40,
    videos: int = 30,
    dim: int = 128,
    cast: tuple[int, int] = (2, 4),
    segments: tuple[int, int] = (1, 3),
    segment_frames: tuple[int, int] = (5, 40),
    frames: int = 120,
    conditions: int = 3,
    condition_norm: float = 0.6,
    noise: float = 0.7,
    degraded: float = 0.1,
    degraded_noise: float = 2.5,
    lookalike_cos: float = 0.6,
    seed: int = 0,
) -> SyntheticFaces:
    """Generate a dataset (see the module docstring for the model).

    Args:
        people: number of people (pairs 2i, 2i+1 are look-alikes).
        videos: number of videos.
        dim: embedding size.
        cast: (min, max) people per video.
        segments: (min, max) tracks per cast member per video.
        segment_frames: (min, max) frames per track.
        frames: frames per video.
        conditions: appearance conditions per person.
        condition_norm: norm of a condition offset (identity direction has norm 1).
        noise: norm of the per-face noise.
        degraded: share of degraded faces.
        degraded_noise: noise norm of a degraded face.
        lookalike_cos: cosine between the directions of a look-alike pair.
        seed: random seed.
    """
    rng = np.random.default_rng(seed)
    mu = _unit(rng.normal(size=(people, dim)))
    # the second of each pair: cos(mu, twin) = lookalike_cos exactly, via an orthogonal direction
    for p in range(1, people, 2):
        r = rng.normal(size=dim)
        r -= (r @ mu[p - 1]) * mu[p - 1]
        r = _unit(r)
        mu[p] = lookalike_cos * mu[p - 1] + np.sqrt(1 - lookalike_cos**2) * r
    offsets = condition_norm * _unit(rng.normal(size=(people, conditions, dim)))
    rows: list[tuple[int, int, int, int, int]] = []  # (video, frame, person, track, condition)
    for v in range(videos):
        members = rng.choice(people, size=int(rng.integers(cast[0], cast[1] + 1)), replace=False)
        spans = []
        for p in members:
            for _ in range(int(rng.integers(segments[0], segments[1] + 1))):
                length = int(rng.integers(segment_frames[0], segment_frames[1] + 1))
                start = int(rng.integers(0, max(1, frames - length)))
                spans.append((start, min(frames, start + length), int(p), int(rng.integers(conditions))))
        # one person is never in two segments at once: clip a segment that overlaps the same person's
        spans.sort()
        last_end: dict[int, int] = {}
        kept = []
        for start, end, p, k in spans:
            start = max(start, last_end.get(p, 0))
            if end - start >= 1:
                kept.append((start, end, p, k))
                last_end[p] = end
        order = sorted(range(len(kept)), key=lambda i: (kept[i][0], i))
        track_of = {i: t for t, i in enumerate(order)}
        for i, (start, end, p, k) in enumerate(kept):
            for f in range(start, end):
                rows.append((v, f, p, track_of[i], k))
    rows.sort(key=lambda r: (r[0], r[1], r[3]))
    arr = np.array(rows, dtype=np.int64)
    n = arr.shape[0]
    bad = rng.random(n) < degraded
    scale = np.where(bad, degraded_noise, noise)
    emb = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, 1 << 16):  # in chunks: no [N, D] float64 temporaries at benchmark sizes
        p, k = arr[lo : lo + (1 << 16), 2], arr[lo : lo + (1 << 16), 4]
        noise_part = scale[lo : lo + (1 << 16), None] * _unit(rng.normal(size=(len(p), dim)))
        emb[lo : lo + len(p)] = mu[p] + offsets[p, k] + noise_part
    return SyntheticFaces(
        embeddings=emb,
        person=arr[:, 2],
        video=arr[:, 0],
        frame=arr[:, 1],
        track=arr[:, 3],
        degraded=bad.astype(np.int64),
    )
