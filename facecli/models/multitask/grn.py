"""ConvNeXt-V2's Global Response Normalization, computed in one pass over the activations.

GRN (Woo et al. 2023) on activations x [B, H, W, C] (or [B, C, H, W]):
``g = ||x||_2 over H, W``; ``n = g / (mean_C(g) + eps)``; ``y = x + bias + weight * (x * n)``.
timm's layer computes it as written, which walks the [B, H, W, C] tensor five times (norm,
``x * n``, ``weight * .``, ``+ bias``, ``x + .``) and, under bfloat16 autocast, first copies all
of it to float32 for the norm. The same value is ``y = x * (1 + weight * n) + bias``: the
per-channel factor is [B, 1, 1, C], so the big tensor is read twice (norm, one fused
multiply-add) and never copied. On this project's CPU that halves GRN's time, a third of the
multitask model's (docs/performance.md); float32 results move by float rounding only (~1e-7
relative). Parameter names (``weight``, ``bias``) are timm's, so state dicts load unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GlobalResponseNorm(nn.Module):
    """GRN over [B, H, W, C] activations (``channels_last``, ConvNeXt-V2 Tiny and up) or
    [B, C, H, W] (the small variants' convolutional MLP), as timm's layer."""

    def __init__(self, dim: int, eps: float = 1e-6, channels_last: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.channels_last = channels_last
        self.weight = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        spatial, channel, shape = ((1, 2), -1, (1, 1, 1, -1)) if self.channels_last else ((2, 3), 1, (1, -1, 1, 1))
        g = torch.linalg.vector_norm(x, dim=spatial, keepdim=True, dtype=torch.float32)
        n = g / (g.mean(dim=channel, keepdim=True) + self.eps)
        scale = (1.0 + self.weight.float().view(shape) * n).to(x.dtype)
        return torch.addcmul(self.bias.to(x.dtype).view(shape), x, scale)


def replace_grn(module: nn.Module) -> int:
    """Swap every timm ``GlobalResponseNorm`` inside ``module`` for :class:`GlobalResponseNorm`
    (before weights are loaded); returns how many were swapped."""
    from timm.layers.grn import GlobalResponseNorm as TimmGRN

    swapped = 0
    for child in list(module.modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, TimmGRN):
                setattr(child, attr, GlobalResponseNorm(sub.weight.shape[0], sub.eps, tuple(sub.spatial_dim) == (1, 2)))
                swapped += 1
    return swapped
