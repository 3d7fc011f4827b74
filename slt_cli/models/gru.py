"""A recurrent baseline: linear stem, stacked (bidirectional) GRUs, pooling, classifier."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slt_cli.models.layers import PooledClassifier, init_weights


class GruClassifier(nn.Module):
    """Keypoint sequence classifier ``(B, T, F) -> (B, K)``; see `build_gru`."""

    def __init__(
        self,
        *,
        in_features: int,
        num_classes: int,
        dim: int,
        hidden: int,
        layers: int,
        bidirectional: bool,
    ) -> None:
        super().__init__()
        self.stem = nn.Linear(in_features, dim, bias=False)
        self.stem_norm = nn.LayerNorm(dim)
        directions = 2 if bidirectional else 1
        # One single-layer GRU per layer rather than ``nn.GRU(num_layers=...,
        # dropout=...)``: that float would escape the engine, which controls
        # dropout only through ``nn.Dropout`` modules.
        self.dropouts = nn.ModuleList(nn.Dropout(p=0.0) for _ in range(layers))
        self.grus = nn.ModuleList(
            nn.GRU(
                dim if i == 0 else hidden * directions,
                hidden,
                batch_first=True,
                bidirectional=bidirectional,
            )
            for i in range(layers)
        )
        self.head = PooledClassifier(hidden * directions, num_classes)
        # Linear and LayerNorm only; the GRUs keep PyTorch's uniform(±1/sqrt(hidden)).
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map frames ``(B, T, F)`` to class logits ``(B, K)``."""
        x = F.silu(self.stem_norm(self.stem(x)))
        for dropout, gru in zip(self.dropouts, self.grus, strict=True):
            # Keeps cuDNN's weights in one block after DataParallel replicates the
            # module (otherwise a warning and a copy every step); no-op on CPU.
            gru.flatten_parameters()
            x, _ = gru(dropout(x))
        return self.head(x)


def build_gru(
    *,
    in_features: int,
    num_classes: int,
    num_frames: int,
    dim: int = 64,
    hidden: int = 64,
    layers: int = 2,
    bidirectional: bool = True,
) -> nn.Module:
    """Build the GRU baseline.

    With 300 features and 20 classes the defaults give about 150k parameters. It
    is slower per step than the conv+transformer on CPU (a GRU runs frame by
    frame) and usually less accurate; it is here as a simple, well-understood
    point of comparison.

    Args:
        in_features: Features per frame (F), from the data.
        num_classes: Number of classes (K), from the data.
        num_frames: Frames per clip (T), from the data; unused, a GRU takes any length.
        dim: Channels of the linear stem.
        hidden: GRU hidden size per direction.
        layers: Stacked GRU layers, with a dropout before each.
        bidirectional: Read each clip both forwards and backwards.

    Returns:
        An ``nn.Module`` mapping ``(B, T, in_features)`` to logits ``(B, num_classes)``.
    """
    del num_frames  # Part of every builder's signature; a GRU needs no fixed length.
    return GruClassifier(
        in_features=in_features,
        num_classes=num_classes,
        dim=dim,
        hidden=hidden,
        layers=layers,
        bidirectional=bidirectional,
    )
