"""``--detect-every K``: detect faces on every Kth frame and follow them in between, as MediaPipe does.

Between detections each face's crop is placed from the previous frame's mesh instead of a new
detection. At a detection frame every face's detector box and keypoints are written down in
the *mesh frame* of that face: the similarity (centre, scale, angle) fitted to its mesh by
:func:`mesh_anchor` (centre and RMS radius of the 468 mesh points, angle of the line between
the outer eye corners). On the next frame the same box and keypoints are placed back with the
mesh frame of the previous frame, lightly smoothed (:func:`smooth_anchor`; this geometry and
the followed faces' state are in facecli.pipeline.followed), and handed to the
model set's ``analyze`` as if a detector had found them: every model set crops and measures
exactly as it does after a detection, so a followed face differs from a detected one only by
where its box comes from. The calibration per face makes this independent of how a model set's
boxes relate to its mesh (tight BlazeFace boxes, RetinaFace boxes, random test weights).

The detector runs again (:class:`FaceFollower`):

* on every Kth processed frame of the video (a face that enters while others are followed is
  found within K - 1 frames), except, for a model set that splits ``analyze`` (below), while
  ``--max-faces N`` faces are already followed: no other face would be kept, so, as MediaPipe's
  face mesh with ``max_num_faces``, the detector then waits until a face is lost, drifts or the
  shot changes. (A model set without the split measures a followed face whole, one frame after
  the other; each detection starts another run of frames measured side by side, which pays for
  the detection: measured with feat-v2, skipping them was slower.)
* while no face is followed: on every frame whose picture changed since the last full
  detection, and on every Kth frame regardless (a face entering an empty scene is found at once;
  an empty scene that stays as it was is not searched again frame after frame). A change is a
  thumbnail cell (mean green level of 8x8 pixels, facecli.identity.shots.thumbnails) that moved
  by more than :attr:`FollowConfig.empty_change` levels; ``--detect-every 1`` detects every frame;
* on the frame where a followed face is lost (its mesh is NaN, i.e. the mesh model says the
  crop holds no face, or its box has left the frame): that frame is detected again at once;
* on the frame after a followed face drifted (its new box overlaps the box it was cropped
  from by less than :attr:`FollowConfig.drift_iou`: it moved a third of its size in one frame);
* on the first frame of a new shot (colour-histogram cut, as the tracker sees it).

Coarse detections. A model set may offer a cheaper detection that looks only for faces of at
least some size (lite's tiled scan without its finest level: ``detect_coarse`` and
``coarse_min_face``, facecli.models.lite.tiling). Then only every
:attr:`FollowConfig.small_scan_every`-th scheduled detection is a full one; the others are
coarse. At a coarse detection the faces followed into the frame that are smaller than the
coarse scan looks for are not dropped but followed on, beside the faces it found (a followed
face that a detection overlaps is replaced by it): a small face keeps being measured on every
frame, and a small face *entering* is found within ``K * small_scan_every - 1`` frames instead
of K - 1. Detections after a cut, a loss or a drift, and while no face is followed, are always
full.

Identity embeddings are computed at detection frames only and carried with the face until the
next detection. Frames of one batch are processed in lockstep over the runs of followed frames
that start at each detection frame, so every network call still sees several frames at once.
A model set that splits ``analyze`` into ``locate`` (what placing the next crop needs: the mesh)
and ``complete`` (the rest: lite's iris, emotions and pose) has only ``locate`` run frame by
frame; the followed faces of the whole batch are then completed in one call.
The follower's whole state (frame position, faces and their calibration, the last frame's
histogram, the thumbnail of the last fully detected frame) is a few small arrays, saved with
every checkpoint (:meth:`FaceFollower.state_dict`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou

from facecli.identity.shots import colour_histograms, picture_changed, shot_changes, thumbnails
from facecli.pipeline.followed import (
    FollowedFaces,
    cat_faces,
    cat_results,
    mesh_anchor,
    move_geometry,
    paired_iou,
    per_frame,
    select_results,
    smooth_anchor,
)
from facecli.timing import count, stage
from facecli.types import Detections, FaceResults


@dataclass(frozen=True)
class FollowConfig:
    """Settings of :class:`FaceFollower`."""

    every: int = 1  # detect on every Kth processed frame
    drift_iou: float = 0.5  # detect on the next frame when a face's new box overlaps its last by less
    smooth_min: float = 0.6  # weight of the new mesh frame for a still face (1: no smoothing)
    smooth_gain: float = 10.0  # ... growing by this times the motion in radii per frame, up to 1
    shot_threshold: float = 0.35  # histogram distance of a cut (as the tracker's)
    histogram_bins: int = 16
    max_faces: int | None = None  # --max-faces: while this many faces are followed, no scheduled detection
    small_scan_every: int = 3  # scheduled detections per full one (the others coarse, where the set has it)
    merge_iou: float = 0.3  # a small followed face overlapping a coarse detection this much is that face
    empty_change: float = 8.0  # an empty scene is detected again when a thumbnail cell moved this much (levels)


class FaceFollower:
    """Detection on every Kth frame, faces followed by their mesh in between (see the module doc).

    Args:
        model_set: the loaded models (``detect``, ``analyze(..., identity=)``).
        config: settings; ``config.every`` is K.
        detect: frames -> Detections (default: the model set's own ``detect``; the pipeline passes
            one that keeps ``--max-faces``).
        detect_coarse: the same for the set's coarse detection (default: its ``detect_coarse``).
    """

    def __init__(self, model_set, config: FollowConfig, detect: Callable[[Tensor], Detections] | None = None,
                 detect_coarse: Callable[[Tensor], Detections] | None = None) -> None:
        self.model_set = model_set
        self.detect = model_set.detect if detect is None else detect
        # --max-faces: no scheduled detection while the house is full (model sets that split analyze)
        self.skip_when_full = config.max_faces is not None and callable(getattr(model_set, "locate", None))
        self.coarse_min_face = getattr(model_set, "coarse_min_face", None)  # None: no coarse detection
        self.detect_coarse = detect_coarse if detect_coarse is not None else getattr(model_set, "detect_coarse", None)
        self.config = config
        self.position = 0  # processed frames of the unit so far
        self.redetect = True  # detect on the next frame regardless of the schedule
        self.faces: FollowedFaces | None = None  # faces followed into the next frame
        self.last_hist: Tensor | None = None  # colour histogram of the last frame
        self.detections = 0  # frames detected (for reports)
        self.histograms: Tensor | None = None  # colour histograms of the last batch's frames
        self.empty_ref: Tensor | None = None  # thumbnail of the last fully detected frame (facecli.identity.shots)
        self._pending: list[int] = []  # followed frames of the current batch located but not yet completed
        self._merged: dict[int, FaceResults] = {}  # coarse frames: their detections' results, beside pending faces

    # -- one batch
    def __call__(self, frames: Tensor) -> FaceResults:
        """Per-face results of frames Tensor[B, 3, H, W] uint8 (on the set's device), the next
        frames of the unit after those of the previous call."""
        n = frames.shape[0]
        device = frames.device
        cfg = self.config
        detected_before = self.detections
        hists = self.histograms = colour_histograms(frames, cfg.histogram_bins)
        cuts = shot_changes(hists, self.last_hist, cfg.shot_threshold).cpu()
        periodic = (torch.arange(n) + self.position) % cfg.every == 0
        # with --max-faces, a periodic frame is detected only if fewer faces are followed into it
        full_house = periodic if self.skip_when_full else torch.zeros(n, dtype=torch.bool)
        scheduled = (periodic & ~full_house) | cuts
        scheduled[0] |= self.redetect
        coarse = self._coarse_frames(frames, periodic & scheduled & ~cuts)
        coarse[0] &= not self.redetect
        full = scheduled & ~coarse
        results: list[FaceResults | None] = [None] * n
        after: list[FollowedFaces | None] = [None] * n  # faces followed out of each frame
        redetect: list[bool] = [False] * n
        self._pending, self._merged = [], {}
        self._detect(frames, full.nonzero()[:, 0].tolist(), results, after)
        self._detect(frames, coarse.nonzero()[:, 0].tolist(), results, after, coarse=True)
        # last[f]: the latest frame up to f of this batch with a full detection (None: before it)
        last: list[int | None] = [f if full[f] else None for f in range(n)]
        scene = _Scene(frames, self.empty_ref, cfg.empty_change)
        # runs of followed frames (through coarse detection frames), advanced in lockstep
        cursors = [f for f in range(n) if not full[f] and (f == 0 or full[f - 1])]
        while cursors:
            detect_now, follow_now, merge_now = [], [], []
            for f in cursors:
                faces, flagged = (self.faces, self.redetect) if f == 0 else (after[f - 1], redetect[f - 1])
                n_faces = 0 if faces is None else len(faces)
                room = bool(full_house[f]) and n_faces < cfg.max_faces  # type: ignore[operator]
                # no face to follow: look for one on every frame where the picture changed (MediaPipe
                # looks on every frame), so a face entering an empty scene is found at once
                empty = n_faces == 0 and (bool(coarse[f]) or scene.changed(f, last[f - 1] if f else None))
                if flagged or empty or room:
                    detect_now.append(f)  # a coarse frame's detection is then redone in full
                    self.detections -= int(coarse[f])  # (one frame detected, once)
                elif coarse[f]:
                    merge_now.append(f)
                else:
                    follow_now.append(f)  # (no face and an unchanged picture: nothing to do)
            self._detect(frames, detect_now, results, after)
            lost = self._follow(frames, follow_now, results, after, redetect)
            lost += self._merge_small(frames, merge_now, results, after, redetect)
            self._detect(frames, lost, results, after)
            for f in cursors:
                last[f] = f if f in detect_now or f in lost else (last[f - 1] if f else None)
            cursors = [f + 1 for f in cursors if f + 1 < n and not full[f + 1]]
        self._complete(frames, results)
        self.faces, self.redetect = after[-1], redetect[-1]
        if last[-1] is not None:
            self.empty_ref = scene.thumbnail(last[-1])
        self.last_hist = hists[-1]
        self.position += n
        count("frames detected", self.detections - detected_before)
        empty = FaceResults(frame=torch.zeros(0, dtype=torch.long, device=device),
                            boxes=torch.zeros(0, 4, device=device), scores=torch.zeros(0, device=device))
        parts = [r for r in results if r is not None]
        return cat_results(parts) if parts else empty

    def _coarse_frames(self, frames: Tensor, periodic: Tensor) -> Tensor:
        """Tensor[B] bool: which of the ``periodic`` scheduled frames get a coarse detection (all
        but every ``small_scan_every``-th scheduled detection of the unit, counted by position)."""
        n = frames.shape[0]
        every = self.config.small_scan_every
        if self.coarse_min_face is None or every <= 1 or self.config.every <= 1:
            return torch.zeros(n, dtype=torch.bool)
        if self.coarse_min_face(*frames.shape[-2:]) is None:
            return torch.zeros(n, dtype=torch.bool)
        sweep = (torch.arange(n) + self.position) // self.config.every
        return periodic & (sweep % every != 0)

    def _detect(self, frames: Tensor, which: list[int], results: list, after: list, coarse: bool = False) -> None:
        """Detect and analyze frames ``which`` together (``coarse``: the set's coarse detection);
        their results and followed faces."""
        if not which:
            return
        self.detections += len(which)
        sub = frames[which]
        with stage("detect"):
            dets = self.detect_coarse(sub) if coarse else self.detect(sub)
        with stage("analyze"):
            res = self.model_set.analyze(sub, dets)
        rows = per_frame(res.frame, len(which))
        faces, ok = FollowedFaces.calibrate(dets, res.mesh, res.identity)
        face_rows = per_frame(dets.frame[ok], len(which))
        for j, f in enumerate(which):
            results[f] = select_results(res, rows[j], f)
            after[f] = faces.select(face_rows[j])

    def _merge_small(self, frames: Tensor, which: list[int], results: list, after: list, redetect: list) -> list[int]:
        """Coarse detection frames ``which``: follow the faces followed into each that are smaller
        than the coarse detection looks for, beside the faces it found (see the module doc).
        Returns the frames where such a face was lost (to be detected again, in full)."""
        live, found = [], {}
        for f in which:
            faces = self.faces if f == 0 else after[f - 1]
            boxes, _ = faces.proposals()
            side = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1)
            small = side < self.coarse_min_face(*frames.shape[-2:])
            if bool(small.any()):
                live.append((f, faces.select(small.nonzero()[:, 0])))
                found[f] = (results[f], after[f])
        if not live:
            return []
        lost = self._follow(frames, [f for f, _ in live], results, after, redetect, faces_of=dict(live))
        self.detections -= len(lost)  # those frames are detected again, in full: one frame detected, once
        pending = set(self._pending)
        for f, _ in live:
            if f in lost:
                continue
            res, faces = found[f]
            followed, moved = results[f], after[f]
            keep = torch.ones(len(moved), dtype=torch.bool, device=frames.device)
            if len(res) and len(followed):
                keep = box_iou(followed.boxes, res.boxes).amax(dim=1) <= self.config.merge_iou
            rows = keep.nonzero()[:, 0]
            after[f] = cat_faces([faces, moved.select(rows)]) if faces is not None else moved.select(rows)
            followed = select_results(followed, rows, f)
            if f in pending:  # completed with the batch's followed frames, then put beside the detections
                results[f], self._merged[f] = followed, res
            else:
                results[f] = cat_results([res, followed])
        return lost

    def _follow(self, frames: Tensor, which: list[int], results: list, after: list, redetect: list,
                faces_of: dict[int, FollowedFaces] | None = None) -> list[int]:
        """Analyze frames ``which`` from the faces followed out of the frame before each (or
        ``faces_of[f]``); returns the frames where a face was lost (to be detected again)."""
        lost_frames: list[int] = []
        live = []
        for f in which:
            faces = (self.faces if f == 0 else after[f - 1]) if faces_of is None else faces_of[f]
            if faces is None or len(faces) == 0:  # nothing to follow: no faces until the next detection
                results[f] = None
                after[f] = faces
                continue
            live.append((f, faces))
        if not live:
            return lost_frames
        height, width = frames.shape[-2:]
        faces = cat_faces([fc for _, fc in live])
        frame_pos = torch.cat([torch.full((len(fc),), j, dtype=torch.long) for j, (_, fc) in enumerate(live)])
        frame_pos = frame_pos.to(frames.device)
        in_batch = torch.tensor([f for f, _ in live], device=frames.device)[frame_pos]  # each face's frame
        with stage("follow"):
            boxes, keypoints = faces.proposals()
            # the batch's frames themselves, indexed by each face's frame: the crops gather only
            # the pixels they read, so the followed frames are never copied out of the batch
            dets = Detections(boxes=boxes, scores=faces.score, landmarks=keypoints, frame=in_batch)
        locate = getattr(self.model_set, "locate", None)
        with stage("analyze"):
            res = self.model_set.analyze(frames, dets, identity=False) if locate is None else locate(frames, dets)
        with stage("follow"):
            if faces.embedding is not None:
                res = dataclasses.replace(res, identity=faces.embedding)
            raw = mesh_anchor(res.mesh)
            lost = ~(torch.isfinite(raw).all(dim=1) & (raw[:, 2] > 0))
            raw = torch.where(lost[:, None], faces.anchor, raw)
            anchor = smooth_anchor(faces.anchor, raw, self.config.smooth_min, self.config.smooth_gain)
            res = move_geometry(res, faces.anchor, anchor)
            moved = faces.with_anchor(anchor)
            next_boxes, _ = moved.proposals()
            centre = (next_boxes[:, :2] + next_boxes[:, 2:]) / 2
            inside = (centre[:, 0] >= 0) & (centre[:, 0] < width) & (centre[:, 1] >= 0) & (centre[:, 1] < height)
            lost |= ~inside
            drift = paired_iou(boxes, next_boxes) < self.config.drift_iou
            flags = torch.zeros(len(live), 2, dtype=torch.long, device=frames.device)
            flags.index_add_(0, frame_pos, torch.stack([lost, drift], dim=1).long())
            lost_any, drift_any = (flags > 0).cpu().T.tolist()
            rows = per_frame(frame_pos, len(live))
            for j, (f, _) in enumerate(live):
                if lost_any[j]:
                    lost_frames.append(f)
                    continue
                results[f] = select_results(res, rows[j], f)
                after[f] = moved.select(rows[j])
                redetect[f] = bool(drift_any[j])
                if locate is not None:
                    self._pending.append(f)
        return lost_frames

    def _complete(self, frames: Tensor, results: list) -> None:
        """Complete the located followed frames of this batch in one call (see the module doc)."""
        pending = sorted(f for f in self._pending if results[f] is not None and len(results[f]))
        if pending:
            with stage("analyze"):
                done = self.model_set.complete(frames, cat_results([results[f] for f in pending]), identity=False)
            rows = per_frame(done.frame, len(frames))
            for f in pending:
                results[f] = select_results(done, rows[f], f)
        for f, detected in self._merged.items():
            results[f] = cat_results([detected, results[f]]) if results[f] is not None else detected

    # -- checkpoints
    def state_dict(self) -> dict:
        """JSON values and numpy arrays; continuing from them gives what an uninterrupted run gives."""
        return {
            "position": self.position,
            "redetect": self.redetect,
            "detections": self.detections,
            "faces": None if self.faces is None else self.faces.state(),
            "last_hist": None if self.last_hist is None else self.last_hist.detach().cpu().numpy(),
            "empty_ref": None if self.empty_ref is None else self.empty_ref.detach().cpu().numpy(),
        }

    def load_state_dict(self, state: dict) -> None:
        device = self.model_set.device
        self.position = int(state["position"])
        self.redetect = bool(state["redetect"])
        self.detections = int(state.get("detections", 0))
        self.faces = None if state.get("faces") is None else FollowedFaces.from_state(state["faces"], device)
        hist = state.get("last_hist")
        self.last_hist = None if hist is None else torch.from_numpy(np.asarray(hist)).to(device)
        ref = state.get("empty_ref")  # (a checkpoint from before it: the next empty frame is detected)
        self.empty_ref = None if ref is None else torch.from_numpy(np.asarray(ref)).to(device)


class _Scene:
    """The thumbnails of one batch's frames (facecli.identity.shots), made when first asked for."""

    def __init__(self, frames: Tensor, reference: Tensor | None, threshold: float) -> None:
        self.frames, self.reference, self.threshold = frames, reference, threshold
        self._thumbs: Tensor | None = None

    def thumbnail(self, f: int) -> Tensor:
        if self._thumbs is None:
            return thumbnails(self.frames[f : f + 1])[0]
        return self._thumbs[f]

    def changed(self, f: int, since: int | None) -> bool:
        """Has frame ``f``'s picture changed since frame ``since`` of the batch (None: since the
        reference frame of an earlier batch)? Always True with a threshold of 0 or less."""
        if self.threshold <= 0:
            return True
        if self._thumbs is None:
            self._thumbs = thumbnails(self.frames)
        reference = self.reference if since is None else self._thumbs[since]
        return bool(picture_changed(self._thumbs[f : f + 1], reference, self.threshold)[0])
