"""A 1-D residual network over the frames: the time-series classification baseline.

Wang, Yan and Oates (2017), "Time series classification from scratch with deep neural
networks", found a plain residual network of temporal convolutions over the raw
channels among the strongest classifiers of multivariate series, and it has stayed the
field's reference point (InceptionTime, the UEA benchmarks). Here every frame's
feature vector is one time step: residual blocks of three temporal convolutions
(``kernel_size``, 5 and 3 frames), the first block ``width`` channels wide and the
rest twice that, then mean+max pooling over frames and a linear classifier.

As everywhere in slt, normalisation is per clip (LayerNorm over each frame's
channels, where the original used BatchNorm) and dropout is the engine's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slt_cli.models.layers import DropBranch, PooledClassifier, TemporalConv, init_weights

SECOND_KERNELS = (5, 3)  # the block's second and third convolutions, after Wang et al.


class ResidualBlock(nn.Module):
    """Three temporal convolutions, each normalised, with a shortcut around them.

    ``silu(shortcut(x) + drop(norm(conv3(silu(norm(conv2(silu(norm(conv1(x))))))))))``;
    the shortcut is a linear map when the width changes, else the identity.

    Args:
        channels_in: Channels of the incoming frames.
        channels: Channels inside and out.
        kernel_size: Frames the first convolution spans.
    """

    def __init__(self, channels_in: int, channels: int, kernel_size: int) -> None:
        super().__init__()
        kernels = (kernel_size, *SECOND_KERNELS)
        widths = (channels_in, channels, channels)
        self.convs = nn.ModuleList(TemporalConv(w, channels, k) for w, k in zip(widths, kernels,
                                                                                strict=True))
        self.norms = nn.ModuleList(nn.LayerNorm(channels) for _ in kernels)
        self.dropout = nn.Dropout(p=0.0)
        self.shortcut = (nn.Identity() if channels_in == channels
                         else nn.Linear(channels_in, channels, bias=False))
        self.drop = DropBranch()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for index, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            h = norm(conv(self.dropout(h) if index else h))
            if index < len(self.convs) - 1:
                h = F.silu(h)
        return F.silu(self.shortcut(x) + self.drop(h))


class ResNet1d(nn.Module):
    """Keypoint sequence classifier ``(B, T, F) -> (B, K)``; see `build_resnet1d`."""

    def __init__(self, *, in_features: int, num_classes: int, width: int, blocks: int,
                 kernel_size: int) -> None:
        super().__init__()
        # A linear stem first: the frames carry hundreds of features, and a first
        # convolution straight over them would hold most of the parameters.
        self.stem = nn.Linear(in_features, width, bias=False)
        self.stem_norm = nn.LayerNorm(width)
        widths = [width] + [2 * width] * (blocks - 1)
        self.blocks = nn.Sequential(*(
            ResidualBlock(w_in, w_out, kernel_size)
            for w_in, w_out in zip([width, *widths[:-1]], widths, strict=True)))
        self.head = PooledClassifier(widths[-1], num_classes)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map frames ``(B, T, F)`` to class logits ``(B, K)``."""
        return self.head(self.blocks(F.silu(self.stem_norm(self.stem(x)))))


def build_resnet1d(
    *,
    in_features: int,
    num_classes: int,
    num_frames: int,
    width: int = 64,
    blocks: int = 3,
    kernel_size: int = 7,
) -> nn.Module:
    """Build the 1-D residual network.

    With 300 features and 20 classes the defaults (Wang et al.'s 64/128/128 channels;
    their kernels were 8/5/3 frames, an odd first one keeps "same" padding symmetric)
    give about 530k parameters.

    Args:
        in_features: Features per frame (F), from the data.
        num_classes: Number of classes (K), from the data.
        num_frames: Frames per clip (T), from the data; unused, convolutions take any length.
        width: Channels of the first block; later blocks have twice as many.
        blocks: Residual blocks.
        kernel_size: Frames the first convolution of each block spans.

    Returns:
        An ``nn.Module`` mapping ``(B, T, in_features)`` to logits ``(B, num_classes)``.
    """
    del num_frames  # Part of every builder's signature; convolutions take any length.
    return ResNet1d(in_features=in_features, num_classes=num_classes, width=width,
                    blocks=blocks, kernel_size=kernel_size)
