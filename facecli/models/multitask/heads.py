"""Mesh, pose, blendshape, unified-feature and emotion/VA heads of the feat-v2 model.

Parameter names (``mlp.<i>``, ``proj_lmk``, ``norm_bb``, ``norm_lmk``, ``cls_head``, ``va_head``)
follow the published weight file. Mesh coordinates inside the model are normalised: x, y in
[0, 1] over the chip (``mesh_normalized=True`` checkpoints).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _mlp(in_features: int, hidden: int, out_features: int) -> nn.Sequential:
    """Linear-GELU-Linear-GELU-Linear (indices 0, 2, 4 hold weights)."""
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.GELU(),
        nn.Linear(hidden, hidden),
        nn.GELU(),
        nn.Linear(hidden, out_features),
    )


def _mesh_xy(mesh: Tensor) -> Tensor:
    """Tensor[B, V, 3] -> Tensor[B, 2V] interleaved x0, y0, x1, y1, ..."""
    return mesh[..., :2].flatten(1)


class MeshHead(nn.Module):
    """GAP -> MLP -> mesh.

    Args:
        in_ch: channels of the feature map.
        n_mesh: number of vertices V.
        hidden: MLP width.
    """

    def __init__(self, in_ch: int, n_mesh: int, hidden: int = 1024) -> None:
        super().__init__()
        self.n_mesh = n_mesh
        self.mlp = _mlp(in_ch, hidden, n_mesh * 3)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x: Tensor[B, C, H, W]. Returns: Tensor[B, V, 3] (x, y over the chip in [0, 1], z relative)."""
        return self.mlp(x.mean(dim=(-2, -1))).view(-1, self.n_mesh, 3)


class PoseHead(nn.Module):
    """GAP -> MLP -> 6 pose values (rotation vector in radians, then translation).

    Args:
        in_ch: channels of the feature map.
        hidden: MLP width.
    """

    def __init__(self, in_ch: int, hidden: int = 256) -> None:
        super().__init__()
        self.mlp = _mlp(in_ch, hidden, 6)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x: Tensor[B, C, H, W]. Returns: Tensor[B, 6]."""
        return self.mlp(x.mean(dim=(-2, -1)))


class UnifiedFeatures(nn.Module):
    """LayerNorm(GAP of a map) ++ LayerNorm(Linear(mesh x, y)): appearance plus geometry.

    Args:
        in_ch: channels of the feature map (appearance width).
        n_mesh: number of mesh vertices V.
        lmk_dim: width of the projected geometry.
    """

    def __init__(self, in_ch: int, n_mesh: int, lmk_dim: int) -> None:
        super().__init__()
        self.out_dim = in_ch + lmk_dim
        self.proj_lmk = nn.Linear(n_mesh * 2, lmk_dim)
        self.norm_bb = nn.LayerNorm(in_ch)
        self.norm_lmk = nn.LayerNorm(lmk_dim)

    def forward(self, x: Tensor, mesh: Tensor) -> Tensor:
        """Args: x: Tensor[B, C, H, W]; mesh: Tensor[B, V, 3] normalised. Returns: Tensor[B, C + lmk_dim]."""
        appearance = self.norm_bb(x.mean(dim=(-2, -1)))
        geometry = self.norm_lmk(self.proj_lmk(_mesh_xy(mesh)))
        return torch.cat([appearance, geometry], dim=-1)


class BlendshapeHead(nn.Module):
    """Blendshape coefficients from appearance (and, optionally, mesh geometry), sigmoid.

    Args:
        in_ch: channels of the feature map.
        n_blendshape: number of outputs.
        n_mesh: number of mesh vertices V.
        use_mesh: also read the projected mesh x, y (``bs_use_mesh``).
        lmk_dim: width of the projected geometry.
        hidden: MLP width.
    """

    def __init__(
        self,
        in_ch: int,
        n_blendshape: int,
        n_mesh: int,
        use_mesh: bool = True,
        lmk_dim: int = 256,
        hidden: int = 512,
    ) -> None:
        super().__init__()
        self.use_mesh = use_mesh
        if use_mesh:
            self.proj_lmk = nn.Linear(n_mesh * 2, lmk_dim)
            self.norm_bb = nn.LayerNorm(in_ch)
            self.norm_lmk = nn.LayerNorm(lmk_dim)
        mlp_in = in_ch + lmk_dim if use_mesh else in_ch
        self.mlp = nn.Sequential(nn.Linear(mlp_in, hidden), nn.GELU(), nn.Linear(hidden, n_blendshape))

    def forward(self, x: Tensor, mesh: Tensor) -> Tensor:
        """Args: x: Tensor[B, C, H, W]; mesh: Tensor[B, V, 3] normalised. Returns: Tensor[B, n_blendshape] in [0, 1]."""
        features = x.mean(dim=(-2, -1))
        if self.use_mesh:
            geometry = self.norm_lmk(self.proj_lmk(_mesh_xy(mesh)))
            features = torch.cat([self.norm_bb(features), geometry], dim=-1)
        return torch.sigmoid(self.mlp(features))


class EmotionHead(nn.Module):
    """Linear emotion logits and tanh valence/arousal from unified features (+ AU probabilities).

    Args:
        in_dim: width of the unified features.
        n_emotion: number of emotion classes.
        n_au_prob: number of AU probabilities appended to the input (0 = none).
    """

    def __init__(self, in_dim: int, n_emotion: int, n_au_prob: int = 0) -> None:
        super().__init__()
        self.n_au_prob = n_au_prob
        self.cls_head = nn.Linear(in_dim + n_au_prob, n_emotion)
        self.va_head = nn.Linear(in_dim + n_au_prob, 2)

    def forward(self, unified: Tensor, au_prob: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Args:
            unified: Tensor[B, in_dim].
            au_prob: Tensor[B, n_au_prob] in [0, 1], required when n_au_prob > 0.

        Returns:
            (logits Tensor[B, n_emotion], valence/arousal Tensor[B, 2] in [-1, 1]).
        """
        if self.n_au_prob:
            if au_prob is None:
                raise ValueError("EmotionHead needs AU probabilities (n_au_prob > 0)")
            unified = torch.cat([unified, au_prob.detach()], dim=-1)
        return self.cls_head(unified), torch.tanh(self.va_head(unified))
