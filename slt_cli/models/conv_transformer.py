"""The default recogniser: depthwise temporal convolutions interleaved with attention.

Modelled on the winning solutions of Kaggle's Google Isolated Sign Language
Recognition competition (2023): a linear stem lifts each frame's keypoint features
to ``dim`` channels, then ``depth`` groups of ``convs_per_group`` convolution
blocks followed by one transformer block, then mean+max pooling over frames and a
linear classifier. Convolutions capture local motion (a few frames), attention
relates distant parts of the sign.
"""

from __future__ import annotations

import torch
from torch import nn

from slt_cli.models.layers import (
    ConvBlock,
    LearnedPositions,
    PooledClassifier,
    TransformerBlock,
    hidden_width,
    init_weights,
)


class ConvTransformer(nn.Module):
    """Keypoint sequence classifier ``(B, T, F) -> (B, K)``; see `build_conv_transformer`."""

    def __init__(
        self,
        *,
        in_features: int,
        num_classes: int,
        num_frames: int,
        dim: int,
        depth: int,
        convs_per_group: int,
        heads: int,
        kernel_size: int,
        expand: float,
    ) -> None:
        super().__init__()
        hidden = hidden_width(dim, expand)
        # No bias: the LayerNorm right after it would cancel one anyway.
        self.stem = nn.Linear(in_features, dim, bias=False)
        self.stem_norm = nn.LayerNorm(dim)
        self.positions = LearnedPositions(num_frames, dim)
        blocks: list[nn.Module] = []
        for _ in range(depth):
            blocks.extend(ConvBlock(dim, hidden, kernel_size) for _ in range(convs_per_group))
            blocks.append(TransformerBlock(dim, heads, hidden))
        self.blocks = nn.Sequential(*blocks)
        self.head = PooledClassifier(dim, num_classes)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map frames ``(B, T, F)`` to class logits ``(B, K)``."""
        x = self.positions(self.stem_norm(self.stem(x)))
        return self.head(self.blocks(x))


def build_conv_transformer(
    *,
    in_features: int,
    num_classes: int,
    num_frames: int,
    dim: int = 64,
    depth: int = 2,
    convs_per_group: int = 2,
    heads: int = 4,
    kernel_size: int = 9,
    expand: float = 2.0,
) -> nn.Module:
    """Build the conv+transformer recogniser (the default model).

    The defaults are sized for training on a 2-core CPU: with 300 features, 20
    classes and 48 frames the model has about 165k parameters, and a forward plus
    backward pass over 64 clips takes roughly 50 ms there. On a GPU, ``dim=192``
    with ``convs_per_group=3`` is close to the GISLR winners' size.

    Args:
        in_features: Features per frame (F), from the data.
        num_classes: Number of classes (K), from the data.
        num_frames: Frames per clip (T), from the data; sizes the learned positions.
        dim: Channels between blocks.
        depth: Groups of ``convs_per_group`` conv blocks plus one transformer block.
        convs_per_group: Convolution blocks before each transformer block.
        heads: Attention heads; must divide ``dim``.
        kernel_size: Frames each depthwise temporal convolution spans.
        expand: Width of the conv blocks' inner layer and of the MLPs, as a
            multiple of ``dim``.

    Returns:
        An ``nn.Module`` mapping ``(B, T, in_features)`` to logits ``(B, num_classes)``.
    """
    return ConvTransformer(
        in_features=in_features,
        num_classes=num_classes,
        num_frames=num_frames,
        dim=dim,
        depth=depth,
        convs_per_group=convs_per_group,
        heads=heads,
        kernel_size=kernel_size,
        expand=expand,
    )


# (sequences x classes below this, dim, depth): the sizes "auto" picks. Small data
# (LIBRAS, 150 x 15; mediapipe-dev, ~900 x 5) gets the CPU default and never less: on
# LIBRAS dim 32 scored 0.961 against 0.969 (3 seeds). GISLR-sized data (~75k x 250)
# gets about the winners' width.
DATA_SIZES = ((20_000, 64, 2), (200_000, 96, 2), (2_000_000, 128, 3))
LARGEST = (192, 3)


def data_sized(sequences: int, classes: int) -> dict[str, int]:
    """``dim`` and ``depth`` for ``sequences`` training sequences of ``classes`` classes.

    Sized by ``sequences * classes``, a rough measure of how much a network can learn
    from the data without memorising it: tiny sets get a small network, large
    vocabularies with many recordings a wider and deeper one.
    """
    amount = sequences * classes
    for limit, dim, depth in DATA_SIZES:
        if amount < limit:
            return {"dim": dim, "depth": depth}
    return {"dim": LARGEST[0], "depth": LARGEST[1]}


def conv_transformer_setting_problems(settings: dict[str, object]) -> list[str]:
    """Problems that involve more than one setting (each is checked alone elsewhere).

    Args:
        settings: Every builder setting, defaults filled in, each of the right type.

    Returns:
        One message per problem; empty when the settings fit together.
    """
    dim, heads = settings["dim"], settings["heads"]
    assert isinstance(dim, int) and isinstance(heads, int)
    if dim % heads:
        return [f"model.heads: must divide model.dim ({dim}), got {heads}"]
    return []
