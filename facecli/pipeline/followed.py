"""Followed faces: where a face goes between detections (facecli.pipeline.follow).

A face followed from one frame to the next is its detector box and keypoints written down in
its *mesh frame*: the similarity (centre, RMS radius, eye-line angle) of its 468 mesh points,
:func:`mesh_anchor`. Placing the face on the next frame is then placing those local points back
with the mesh frame of the frame before (:func:`to_local` / :func:`from_local`), lightly
smoothed (:func:`smooth_anchor`). :class:`FollowedFaces` holds that state for a set of faces;
the rest are small helpers that cut and join per-frame results. Pure tensor code: no models.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from facecli.types import Detections, FaceResults

EYE_OUTER = (33, 263)  # outer eye corners of the MediaPipe mesh topology (image left, image right)
MESH_CORE = 468  # points of the face mesh proper (iris points left out of the anchor)


# ----------------------------------------------------------------------------- pure geometry
def mesh_anchor(mesh: Tensor) -> Tensor:
    """The similarity frame of each face mesh.

    Args:
        mesh: Tensor[N, P >= 468, 2 or 3] frame pixels (MediaPipe topology).

    Returns:
        Tensor[N, 4] float32 (cx, cy, scale, angle): centre of the 468 mesh points, their RMS
        distance from it (pixels), and the angle (radians, y down) of the line from point 33 to
        point 263. NaN where the mesh is NaN.
    """
    xy = mesh[:, :MESH_CORE, :2].float()
    centre = xy.mean(dim=1)  # [N, 2]
    scale = (xy - centre[:, None]).pow(2).sum(-1).mean(-1).sqrt()  # [N]
    eye = xy[:, EYE_OUTER[1]] - xy[:, EYE_OUTER[0]]
    angle = torch.atan2(eye[:, 1], eye[:, 0])
    return torch.cat([centre, scale[:, None], angle[:, None]], dim=1)


def _rotation(angle: Tensor) -> Tensor:
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # [N, 2, 2]


def to_local(points: Tensor, anchor: Tensor) -> Tensor:
    """Frame pixels Tensor[N, M, 2] -> coordinates in each anchor's frame (units of its scale)."""
    rot = _rotation(anchor[:, 3])
    return (points - anchor[:, None, :2]) @ rot / anchor[:, 2, None, None]


def from_local(local: Tensor, anchor: Tensor) -> Tensor:
    """Inverse of :func:`to_local`: anchor-frame coordinates Tensor[N, M, 2] -> frame pixels."""
    rot = _rotation(anchor[:, 3])
    return (local * anchor[:, 2, None, None]) @ rot.transpose(1, 2) + anchor[:, None, :2]


def smooth_anchor(previous: Tensor, raw: Tensor, smooth_min: float, gain: float) -> Tensor:
    """Blend each face's new mesh frame into its previous one, more for slow motion.

    The weight of ``raw`` is ``min(1, smooth_min + gain * d)`` with ``d`` the centre's motion
    in units of the previous scale: a still face's crop does not jitter with the mesh, a moving
    one follows at once. Scale is blended in log space, the angle along the shorter arc.

    Args:
        previous, raw: Tensor[N, 4] (cx, cy, scale, angle).

    Returns:
        Tensor[N, 4].
    """
    motion = (raw[:, :2] - previous[:, :2]).norm(dim=1) / previous[:, 2]
    w = (smooth_min + gain * motion).clamp(max=1.0)
    centre = previous[:, :2] + w[:, None] * (raw[:, :2] - previous[:, :2])
    scale = torch.exp(torch.log(previous[:, 2]) + w * (torch.log(raw[:, 2]) - torch.log(previous[:, 2])))
    turn = torch.remainder(raw[:, 3] - previous[:, 3] + math.pi, 2 * math.pi) - math.pi
    angle = previous[:, 3] + w * turn
    return torch.cat([centre, scale[:, None], angle[:, None]], dim=1)


def paired_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of box ``a[i]`` with box ``b[i]``; Tensor[N, 4] (x1, y1, x2, y2) each -> Tensor[N]."""
    wh = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    area = lambda x: (x[:, 2] - x[:, 0]).clamp(min=0) * (x[:, 3] - x[:, 1]).clamp(min=0)  # noqa: E731
    return inter / (area(a) + area(b) - inter).clamp(min=1e-9)


def move_geometry(results: FaceResults, before: Tensor, after: Tensor) -> FaceResults:
    """Boxes and keypoints of ``results`` moved from mesh frame ``before`` to ``after`` (Tensor[N, 4]
    each): the box a model set reports for a followed face is the one it was cropped from,
    placed by the previous frame's mesh; this puts it where the face is in this frame."""
    boxes = results.boxes.float()
    centre = from_local(to_local(((boxes[:, :2] + boxes[:, 2:]) / 2)[:, None], before), after)[:, 0]
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * (after[:, 2:3] / before[:, 2:3])
    moved = {"boxes": torch.cat([centre - half, centre + half], dim=1)}
    if results.landmarks5 is not None:
        moved["landmarks5"] = from_local(to_local(results.landmarks5.float(), before), after)
    return dataclasses.replace(results, **moved)


# ----------------------------------------------------------------------------- followed faces
@dataclass(frozen=True)
class FollowedFaces:
    """The faces followed into the next frame, with what places their boxes there.

    box_local: Tensor[N, 4] float32 (cx, cy, w, h) of the detector box in the mesh frame of
        the detection (units of its scale; the size is not rotated).
    keypoints_local: Tensor[N, K, 2] float32 detector keypoints in that mesh frame.
    anchor: Tensor[N, 4] float32 smoothed mesh frame (cx, cy, scale, angle) of the last frame.
    score: Tensor[N] float32 detector score at the detection.
    embedding: Tensor[N, D] float32 identity embedding at the detection, or None.
    """

    box_local: Tensor
    keypoints_local: Tensor
    anchor: Tensor
    score: Tensor
    embedding: Tensor | None

    def __len__(self) -> int:
        return int(self.score.shape[0])

    def proposals(self, anchor: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Boxes Tensor[N, 4] and keypoints Tensor[N, K, 2] in frame pixels placed by ``anchor``
        (default: the faces' own)."""
        anchor = self.anchor if anchor is None else anchor
        centre = from_local(self.box_local[:, None, :2], anchor)[:, 0]
        half = self.box_local[:, 2:] * anchor[:, 2:3] / 2
        boxes = torch.cat([centre - half, centre + half], dim=1)
        return boxes, from_local(self.keypoints_local, anchor)

    @staticmethod
    def calibrate(detections: Detections, mesh: Tensor, embedding: Tensor | None) -> tuple["FollowedFaces", Tensor]:
        """The faces of fresh detections that can be followed (those with a finite mesh), and
        Tensor[M] bool over the detections saying which they are."""
        if mesh is None:  # no face at all (a model set leaves the mesh out of empty results)
            mesh = torch.zeros(len(detections), MESH_CORE, 3, device=detections.boxes.device)
        anchor = mesh_anchor(mesh)
        ok = torch.isfinite(anchor).all(dim=1) & (anchor[:, 2] > 0)
        anchor = anchor[ok]
        boxes = detections.boxes[ok].float()
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        size = (boxes[:, 2:] - boxes[:, :2]) / anchor[:, 2:3]
        faces = FollowedFaces(
            box_local=torch.cat([to_local(centre[:, None], anchor)[:, 0], size], dim=1),
            keypoints_local=to_local(detections.landmarks[ok].float(), anchor),
            anchor=anchor,
            score=detections.scores[ok].float(),
            embedding=None if embedding is None else embedding[ok].float(),
        )
        return faces, ok

    def select(self, rows: Tensor) -> "FollowedFaces":
        return FollowedFaces(self.box_local[rows], self.keypoints_local[rows], self.anchor[rows],
                             self.score[rows], None if self.embedding is None else self.embedding[rows])

    def with_anchor(self, anchor: Tensor) -> "FollowedFaces":
        return dataclasses.replace(self, anchor=anchor)

    def state(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: None if v is None else v.detach().cpu().numpy() for k, v in out.items()}

    @staticmethod
    def from_state(state: dict, device: torch.device) -> "FollowedFaces":
        values = {k: None if v is None else torch.from_numpy(np.asarray(v)).to(device) for k, v in state.items()}
        return FollowedFaces(**values)


def cat_faces(parts: list[FollowedFaces]) -> FollowedFaces:
    emb = [p.embedding for p in parts]
    return FollowedFaces(
        torch.cat([p.box_local for p in parts]), torch.cat([p.keypoints_local for p in parts]),
        torch.cat([p.anchor for p in parts]), torch.cat([p.score for p in parts]),
        None if any(e is None for e in emb) else torch.cat(emb),  # type: ignore[arg-type]
    )


# ----------------------------------------------------------------------------- FaceResults helpers
def select_results(results: FaceResults, rows: Tensor, frame: int) -> FaceResults:
    """Rows ``rows`` of ``results``, all given frame position ``frame``."""
    values = {}
    for f in dataclasses.fields(results):
        v = getattr(results, f.name)
        values[f.name] = None if v is None else v[rows]
    values["frame"] = torch.full((int(rows.numel()),), frame, dtype=torch.long, device=results.frame.device)
    return FaceResults(**values)


def cat_results(parts: list[FaceResults]) -> FaceResults:
    """Concatenate FaceResults. Parts without rows do not count: a model set may leave the
    optional fields of an empty result None (a frame without faces beside a followed one)."""
    values = {}
    rows = [p for p in parts if p.frame.numel() > 0] or parts[:1]
    for f in dataclasses.fields(FaceResults):
        vs = [getattr(p, f.name) for p in rows]
        values[f.name] = None if any(v is None for v in vs) else torch.cat(vs)
    return FaceResults(**values)


def per_frame(frame: Tensor, n_frames: int) -> list[Tensor]:
    """Row indices of each frame position 0..n_frames-1 (frame ascending)."""
    counts = torch.bincount(frame.cpu(), minlength=n_frames).tolist()
    starts = np.cumsum([0] + counts)
    order = torch.argsort(frame.cpu(), stable=True).to(frame.device)
    return [order[starts[k] : starts[k + 1]] for k in range(n_frames)]
