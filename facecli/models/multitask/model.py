"""The feat-v2 multitask face model (py-feat ``face_multitask_v2``, MEGraphAUv2 family).

A timm ConvNeXt-V2 Tiny backbone feeds heads for action units (ANFL graph without the MEFL
edge module), a 478-vertex mesh, head pose, blendshapes, emotion with valence/arousal, and
gaze. The module tree and parameter names follow the published weight file so that it loads
strictly; the architecture is built from the file's metadata config (:class:`MultitaskConfig`).

Input to :meth:`FaceMultitaskV2.predict` is a batch of 256x256 face chips in [0, 1]; they are
resized (bilinear, antialiased; the whole chip, no crop) to the model input size and
normalised with ImageNet statistics, as in py-feat's inference wrapper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facecli.models.multitask.config import MultitaskConfig
from facecli.models.multitask.gaze import EyeFeatures, GazeHead, rotation_6d, rotation_matrix
from facecli.models.multitask.graph import AUNodeFeatures, FeatureGraph, PrototypeSimilarity
from facecli.models.multitask.grn import replace_grn
from facecli.models.multitask.heads import BlendshapeHead, EmotionHead, MeshHead, PoseHead, UnifiedFeatures

CHIP_SIZE = 256  # side of the face chips the model was trained on
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RawHeads(NamedTuple):
    """Head outputs of :meth:`FaceMultitaskV2.forward` for a batch of B inputs."""

    au: Tensor  # [B, n_au] AU probabilities in [0, 1]
    mesh: Tensor  # [B, 478, 3] x, y in [0, 1] over the chip, z relative depth
    pose: Tensor  # [B, 6] rotation vector (radians) then translation, raw
    blendshapes: Tensor  # [B, n_blendshape] in [0, 1]
    emotion_logits: Tensor  # [B, n_emotion] unnormalised
    va: Tensor  # [B, 2] valence, arousal in [-1, 1]
    gaze: Tensor  # [B, 2] yaw, pitch in radians
    gaze_logits: Tensor | None  # [B, 2, gaze_bins] yaw bins then pitch bins; None without bins


@dataclass(frozen=True)
class MultitaskOutput:
    """Decoded predictions for N face chips; tensors are float32 on the model's device."""

    au: Tensor  # [N, n_au] AU probabilities in [0, 1], columns named by au_names
    au_names: tuple[str, ...]  # n_au names, e.g. "AU01"
    emotion: Tensor  # [N, n_emotion] softmax probabilities, columns named by emotion_names
    emotion_names: tuple[str, ...]  # n_emotion names: Neutral Happy Sad Surprise Fear Disgust Anger (+Contempt)
    valence: Tensor  # [N] in [-1, 1]
    arousal: Tensor  # [N] in [-1, 1]
    gaze: Tensor  # [N, 2] (yaw, pitch) radians
    pose: Tensor  # [N, 6] raw: [:, 0:3] rotation in radians (0 responds to pitch, 1 yaw, 2 roll), [:, 3:6] translation
    mesh: Tensor  # [N, 478, 3] x, y in [0, 1] over the 256 chip (x right, y down), z relative depth
    blendshapes: Tensor  # [N, n_blendshape] MediaPipe/ARKit coefficients in [0, 1]

    def __len__(self) -> int:
        return int(self.au.shape[0])


class FaceMultitaskV2(nn.Module):
    """feat-v2 multitask model for the ``use_head_v3`` + ``drop_mefl`` family.

    Args:
        config: the checkpoint's configuration; unsupported variants raise
            :class:`~facecli.models.multitask.config.UnsupportedModelConfig`.
    """

    def __init__(self, config: MultitaskConfig) -> None:
        super().__init__()
        config.check_supported()
        self.config = config
        self.au_names = config.au_names
        self.emotion_names = config.emotion_names
        out_indices = (-2, -1) if config.gaze_eye_roi else (-1,)
        self.backbone = timm.create_model(
            config.backbone_arch, pretrained=False, features_only=True, out_indices=out_indices
        )
        replace_grn(self.backbone)  # same parameters, one pass over the activations (see grn.py)
        channels = self.backbone.feature_info.channels()
        strides = self.backbone.feature_info.reduction()
        bb_ch, width = channels[-1], config.afg_channels
        self.proj = nn.Conv2d(bb_ch, width, 1, bias=False) if bb_ch != width else nn.Identity()
        self.afg = AUNodeFeatures(width, config.n_au)
        self.fgg = FeatureGraph(width, config.knn_k)
        self.sc = PrototypeSimilarity(config.n_au, config.mefl_channels)
        self.lmk = MeshHead(width, config.n_mesh)
        self.pose = PoseHead(width)
        self.blendshape = BlendshapeHead(width, config.n_blendshape, config.n_mesh, use_mesh=config.bs_use_mesh)
        self.unified = UnifiedFeatures(bb_ch, config.n_mesh, config.unified_lmk_dim)
        n_au_prob = config.n_au if config.emotion_use_au_prob else 0
        self.emotion = EmotionHead(self.unified.out_dim, config.n_emotion, n_au_prob)
        self.gaze_eye_enc = (
            EyeFeatures(
                channels[0],
                config.gaze_eye_dim,
                config.gaze_eye_roi_size,
                box_side=config.gaze_eye_box_frac * config.image_size,
                feat_stride=strides[0],
            )
            if config.gaze_eye_roi
            else None
        )
        self.gaze = GazeHead(
            self.unified.out_dim,
            eye_dim=config.gaze_eye_dim if config.gaze_eye_roi else 0,
            pose_dim=6 if config.gaze_pose_6d else 0,
            head_frame=config.gaze_head_frame,
            hidden=config.gaze_hidden,
            n_bins=config.gaze_bins,
            bin_lo_deg=config.gaze_bin_lo_deg,
            bin_hi_deg=config.gaze_bin_hi_deg,
        )
        # Training-time task-uncertainty weights: unused at inference, kept for strict loading.
        self.log_var_au = nn.Parameter(torch.zeros(config.n_au))
        for task in ("mesh", "pose", "blendshape", "emotion", "va", "gaze"):
            self.register_parameter(f"log_var_{task}", nn.Parameter(torch.zeros(())))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> RawHeads:
        """Run every head.

        Args:
            x: Tensor[B, 3, S, S] ImageNet-normalised RGB, S = config.image_size.

        Returns:
            RawHeads (AU probabilities, VA tanh, blendshape sigmoid and gaze angles are already
            applied, as in the reference; emotion is left as logits).
        """
        maps = self.backbone(x)  # [stride-16 map,] stride-32 map [B, 768, 7, 7]
        top = maps[-1]
        projected = self.proj(top)  # [B, width, 7, 7]
        mesh = self.lmk(projected)  # [B, V, 3]
        pose = self.pose(projected)  # [B, 6]
        blendshapes = self.blendshape(projected, mesh)
        au = self.sc(self.fgg(self.afg(projected)))  # [B, n_au]
        unified = self.unified(top, mesh)  # [B, 768 + lmk_dim]
        emotion_logits, va = self.emotion(unified, au)
        gaze, gaze_logits = self._gaze(unified, maps[0], mesh, pose)
        return RawHeads(au, mesh, pose, blendshapes, emotion_logits, va, gaze, gaze_logits)

    def _gaze(self, unified: Tensor, stride16: Tensor, mesh: Tensor, pose: Tensor) -> tuple[Tensor, Tensor | None]:
        """Assemble the gaze branch inputs enabled by the config and run the gaze head."""
        left, right = [unified], [unified]
        if self.gaze_eye_enc is not None:
            mesh_px = mesh[..., :2].detach() * float(self.config.image_size)
            eye_left, eye_right = self.gaze_eye_enc(stride16, mesh_px)
            left.append(eye_left)
            right.append(eye_right)
        rotation_vector = pose[:, :3].detach()
        if self.config.gaze_pose_6d:
            pose_6d = rotation_6d(rotation_vector)
            left.append(pose_6d)
            right.append(pose_6d)
        head_rotation = rotation_matrix(rotation_vector) if self.config.gaze_head_frame else None
        return self.gaze(torch.cat(left, dim=-1), torch.cat(right, dim=-1), head_rotation)

    def preprocess(self, chips: Tensor) -> Tensor:
        """Face chips to model input.

        Args:
            chips: Tensor[N, 3, S, S] float RGB in [0, 1]; S should be 256 (other sizes are
                first resized to 256 bilinearly, as the reference does).

        Returns:
            Tensor[N, 3, image_size, image_size], ImageNet-normalised, on the model's device/dtype.
        """
        chips = chips.to(device=self.mean.device, dtype=self.mean.dtype)
        if chips.shape[-2:] != (CHIP_SIZE, CHIP_SIZE):
            chips = F.interpolate(chips, size=(CHIP_SIZE, CHIP_SIZE), mode="bilinear", align_corners=False)
        side = self.config.image_size
        x = F.interpolate(chips, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    @torch.inference_mode()
    def predict(self, chips: Tensor) -> MultitaskOutput:
        """Decoded predictions for a batch of face chips (call ``eval()`` first).

        Args:
            chips: Tensor[N, 3, 256, 256] float RGB in [0, 1].

        Returns:
            MultitaskOutput with float32 tensors on the model's device.
        """
        heads = self(self.preprocess(chips))
        va = heads.va.float()
        return MultitaskOutput(
            au=heads.au.float(),
            au_names=self.au_names,
            emotion=heads.emotion_logits.float().softmax(dim=-1),
            emotion_names=self.emotion_names,
            valence=va[:, 0],
            arousal=va[:, 1],
            gaze=heads.gaze.float(),
            pose=heads.pose.float(),
            mesh=heads.mesh.float(),
            blendshapes=heads.blendshapes.float(),
        )
