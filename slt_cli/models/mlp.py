"""The simplest baseline: per-frame encoder, coarse pooling over time, MLP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slt_cli.models.layers import init_weights


class SegmentMlp(nn.Module):
    """Keypoint sequence classifier ``(B, T, F) -> (B, K)``; see `build_mlp`."""

    def __init__(
        self, *, in_features: int, num_classes: int, dim: int, segments: int, hidden: int
    ) -> None:
        super().__init__()
        self.segments = segments
        self.stem = nn.Linear(in_features, dim, bias=False)
        self.stem_norm = nn.LayerNorm(dim)
        self.stem_dropout = nn.Dropout(p=0.0)
        self.hidden = nn.Linear(segments * dim, hidden)
        self.hidden_norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(p=0.0)
        self.classifier = nn.Linear(hidden, num_classes)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map frames ``(B, T, F)`` to class logits ``(B, K)``."""
        frames = self.stem_dropout(F.silu(self.stem_norm(self.stem(x))))
        # Averaging within `segments` equal stretches keeps the coarse order of the
        # sign (start, middle, end) at a cost independent of the clip length.
        pooled = F.adaptive_avg_pool1d(frames.transpose(1, 2), self.segments)
        h = F.silu(self.hidden_norm(self.hidden(pooled.flatten(1))))
        return self.classifier(self.dropout(h))


def build_mlp(
    *,
    in_features: int,
    num_classes: int,
    num_frames: int,
    dim: int = 128,
    segments: int = 4,
    hidden: int = 256,
) -> nn.Module:
    """Build the MLP baseline: a sanity check that the data carries signal.

    With 300 features and 20 classes the defaults give about 175k parameters.

    Args:
        in_features: Features per frame (F), from the data.
        num_classes: Number of classes (K), from the data.
        num_frames: Frames per clip (T), from the data; unused, clips of any
            length are pooled to ``segments`` stretches.
        dim: Channels each frame is encoded to.
        segments: Equal stretches of the clip whose frames are averaged (clips
            shorter than this repeat frames).
        hidden: Width of the hidden layer.

    Returns:
        An ``nn.Module`` mapping ``(B, T, in_features)`` to logits ``(B, num_classes)``.
    """
    del num_frames  # Part of every builder's signature; pooling handles any length.
    return SegmentMlp(
        in_features=in_features,
        num_classes=num_classes,
        dim=dim,
        segments=segments,
        hidden=hidden,
    )
