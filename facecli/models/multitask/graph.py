"""Action-unit branch: per-AU node features, a k-NN feature graph, and a similarity head.

This is the ANFL part of ME-GraphAU (Luo et al., IJCAI 2022) as the feat-v2 model uses it
with the edge (MEFL) module dropped: AU probabilities are cosine similarities between the
graph-refined AU nodes and one learned prototype per AU.

Module and parameter names (``heads.<i>.0/1``, ``W``, ``W_self``, ``s``) follow the published
weight file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class AUNodeFeatures(nn.Module):
    """One 1x1 conv + BatchNorm + ReLU branch per AU, spatially averaged into a node.

    Args:
        channels: input and node width C.
        n_au: number of AU branches N.
    """

    def __init__(self, channels: int, n_au: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels, channels, kernel_size=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            )
            for _ in range(n_au)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Args: x: Tensor[B, C, H, W]. Returns: nodes Tensor[B, N, C]."""
        return torch.stack([head(x).mean(dim=(-2, -1)) for head in self.heads], dim=1)


def knn_adjacency(nodes: Tensor, k: int) -> Tensor:
    """Row-normalised k-nearest-neighbour adjacency from cosine similarity.

    Each node links to the ``k + 1`` most similar nodes (itself normally among them), the
    self link is removed, and each row is divided by its degree (at least 1).

    Args:
        nodes: Tensor[B, N, C].
        k: neighbours per node, k + 1 <= N.

    Returns:
        Tensor[B, N, N] float, rows summing to 1 (or 0 for an isolated node).
    """
    unit = F.normalize(nodes, dim=-1)
    similarity = unit @ unit.transpose(1, 2)  # [B, N, N]
    nearest = similarity.topk(k + 1, dim=-1).indices  # [B, N, k+1]
    adjacency = torch.zeros_like(similarity).scatter_(2, nearest, 1.0)
    adjacency = adjacency * (1.0 - torch.eye(nodes.shape[1], device=nodes.device, dtype=nodes.dtype))
    return adjacency / adjacency.sum(dim=-1, keepdim=True).clamp_min(1.0)


class FeatureGraph(nn.Module):
    """One graph-convolution step over AU nodes: relu(W_self v + A (W v)).

    Args:
        channels: node width C.
        k: neighbours per node in the k-NN graph.
    """

    def __init__(self, channels: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.W = nn.Linear(channels, channels, bias=False)
        self.W_self = nn.Linear(channels, channels, bias=False)

    def forward(self, nodes: Tensor) -> Tensor:
        """Args: nodes: Tensor[B, N, C]. Returns: Tensor[B, N, C], non-negative."""
        adjacency = knn_adjacency(nodes, self.k)
        return F.relu(self.W_self(nodes) + adjacency @ self.W(nodes))


class PrototypeSimilarity(nn.Module):
    """AU probability = cosine(relu(node), relu(prototype)) clamped to [0, 1].

    Args:
        n_au: number of AUs N (one prototype each).
        channels: node width C.
    """

    def __init__(self, n_au: int, channels: int) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.randn(n_au, channels) * 0.02)

    def forward(self, nodes: Tensor) -> Tensor:
        """Args: nodes: Tensor[B, N, C]. Returns: Tensor[B, N] in [0, 1]."""
        nodes = F.normalize(F.relu(nodes), dim=-1)
        prototypes = F.normalize(F.relu(self.s), dim=-1)  # [N, C]
        return (nodes * prototypes).sum(dim=-1).clamp(0.0, 1.0)
