"""Building blocks shared by the architectures.

Every block works on frame sequences laid out ``(B, T, D)`` (batch, frames,
channels). Two rules hold everywhere, because the training engine relies on them:

* Normalisation is per clip (LayerNorm), never BatchNorm: the engine may wrap a model
  in ``torch.nn.DataParallel``, where each replica would keep its own BatchNorm
  statistics on a fraction of the batch.
* All dropout goes through ``nn.Dropout`` modules created with ``p=0.0``. The
  engine sets ``module.p`` on every ``nn.Dropout`` to the current stage's value, so
  a model has no dropout of its own until a stage asks for it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class DropBranch(nn.Module):
    """Drops a whole residual branch per sample (stochastic depth).

    This is how the Kaggle GISLR winners regularised their blocks (Keras dropout
    with ``noise_shape=(None, 1, 1)``). The random mask comes from an inner
    ``nn.Dropout`` applied to a tensor of ones, so the engine's ``module.p``
    setting controls it like any other dropout, and the kept branches are scaled
    by ``1 / (1 - p)`` exactly as ``nn.Dropout`` does.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=0.0)

    def forward(self, branch: torch.Tensor) -> torch.Tensor:
        if not self.training or self.dropout.p == 0.0:
            return branch
        keep = self.dropout(branch.new_ones(branch.shape[0], *(1,) * (branch.dim() - 1)))
        return branch * keep


class ChannelAttention(nn.Module):
    """Efficient channel attention (ECA-Net): gate channels by a 1-D conv over them.

    The clip-level average of each channel is mixed with its neighbouring
    channels by a tiny convolution (``kernel_size`` weights in all), and the
    sigmoid of the result rescales the channel in every frame.

    Args:
        kernel_size: How many neighbouring channels each gate looks at (odd).
    """

    def __init__(self, kernel_size: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean(dim=1, keepdim=True)  # (B, 1, C): channels as a 1-D signal
        gate = torch.sigmoid(self.conv(squeezed))
        return x * gate


class ConvBlock(nn.Module):
    """Pre-norm residual block: expand, depthwise temporal conv, ECA, project.

    ``x + drop(project(eca(norm(dwconv(silu(expand(norm(x)))))))``, the GISLR
    winner's Conv1DBlock with LayerNorm in place of BatchNorm. The depthwise
    convolution is the part that sees neighbouring frames; it also gives the model
    a sense of order that attention alone lacks.

    Args:
        dim: Channels in and out.
        hidden: Channels inside the block (after the expansion).
        kernel_size: Frames the depthwise convolution spans; "same" padding keeps
            the number of frames (even sizes work too).
    """

    def __init__(self, dim: int, hidden: int, kernel_size: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.expand = nn.Linear(dim, hidden)
        self.depthwise = TemporalConv(hidden, hidden, kernel_size, groups=hidden)
        self.conv_norm = nn.LayerNorm(hidden)
        self.channel_attention = ChannelAttention()
        self.project = nn.Linear(hidden, dim)
        self.drop = DropBranch()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.depthwise(F.silu(self.expand(self.norm(x))))
        h = self.channel_attention(self.conv_norm(h))
        return x + self.drop(self.project(h))


class TemporalConv(nn.Conv2d):
    """A convolution over frames of ``(B, T, C)`` sequences, "same" padded.

    A ``(1, k)`` Conv2d rather than a Conv1d: fed a ``(B, C, 1, T)`` view of the
    ``(B, T, C)`` frames, which is channels-last memory, oneDNN runs it without
    transposing copies, about twice as fast on CPU as Conv1d on ``(B, C, T)``. Its
    weights are a Conv2d's (``weight``, ``bias``), as saved checkpoints hold them.

    Args:
        channels_in: Channels of the incoming frames.
        channels_out: Channels out.
        kernel_size: Frames it spans (even sizes work too).
        groups: As ``nn.Conv2d``'s; ``channels_in`` makes it depthwise.
    """

    def __init__(self, channels_in: int, channels_out: int, kernel_size: int,
                 groups: int = 1) -> None:
        super().__init__(channels_in, channels_out, (1, kernel_size), padding="same",
                         groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self._conv_forward(x.unsqueeze(1).permute(0, 3, 1, 2), self.weight, self.bias)
        return h.permute(0, 2, 3, 1).squeeze(1)  # (B, C, 1, T) back to (B, T, C)


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: self-attention over frames, then an MLP.

    Args:
        dim: Channels in and out; must be divisible by ``heads``.
        heads: Attention heads.
        hidden: Width of the MLP's hidden layer.
    """

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads = heads
        self.attn_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_out = nn.Linear(dim, dim)
        self.attn_drop = DropBranch()
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, dim))
        self.mlp_drop = DropBranch()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, dim = x.shape
        qkv = self.qkv(self.attn_norm(x)).view(batch, frames, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, T, head_dim)
        # Sequences arrive resampled to a fixed length without padding: no mask.
        attended = F.scaled_dot_product_attention(q, k, v)
        attended = attended.transpose(1, 2).reshape(batch, frames, dim)
        x = x + self.attn_drop(self.attn_out(attended))
        return x + self.mlp_drop(self.mlp(self.mlp_norm(x)))


class LearnedPositions(nn.Module):
    """A learned embedding per frame index, added to the frame features.

    Sized for ``num_frames``; a clip of another length gets the table linearly
    resampled to its length, so a model still runs (if less well) when the
    engine's frame count changes.

    Args:
        num_frames: Frames per clip the model is built for.
        dim: Channels.
    """

    def __init__(self, num_frames: int, dim: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(1, num_frames, dim))
        nn.init.trunc_normal_(self.table, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        table = self.table
        if x.shape[1] != table.shape[1]:
            table = F.interpolate(
                table.transpose(1, 2), size=x.shape[1], mode="linear", align_corners=True
            ).transpose(1, 2)
        return x + table


class PooledClassifier(nn.Module):
    """Final norm, mean+max pooling over frames, dropout, linear classifier.

    Mean pooling summarises the whole sign; max pooling keeps brief, decisive
    moments (a handshape held for a few frames) that a mean would wash out.

    Args:
        dim: Channels of the incoming frames.
        num_classes: Number of output logits.
    """

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        # Named so an engine that wants a stronger "late dropout" on the head alone
        # can find it: ``model.head.dropout``.
        self.dropout = nn.Dropout(p=0.0)
        self.classifier = nn.Linear(2 * dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        pooled = torch.cat([x.mean(dim=1), x.amax(dim=1)], dim=-1)
        return self.classifier(self.dropout(pooled))


def init_weights(module: nn.Module) -> None:
    """Initialise a module the way small transformers are usually started.

    Linear layers get a truncated normal with std 0.02 and zero bias (nanoGPT,
    timm); depthwise convolutions keep PyTorch's fan-in scaled default, which
    suits their tiny fan-in; LayerNorm starts as the identity.

    Args:
        module: Called on every submodule via ``model.apply(init_weights)``.
    """
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def hidden_width(dim: int, expand: float) -> int:
    """Width of an expansion layer: ``dim * expand`` rounded, at least 1."""
    return max(1, math.floor(dim * expand + 0.5))
