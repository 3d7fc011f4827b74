"""A spatial-temporal graph network over the skeleton (ST-GCN's shape).

Yan, Xiong and Lin (2018) and the sign-language variants after them (SL-GCN,
OpenHands' pose models) keep a feature vector per landmark and alternate two
convolutions: over the skeleton's graph within a frame, and over frames per landmark.
Here a block is

    x + drop(project(silu(norm(temporal(silu(h W_self + (Â + B) h W_neighbours)))))),
    h = norm(x)

where ``Â`` is the normalised skeleton adjacency of the data's landmarks
(`skeleton.adjacency`: MediaPipe's hand, pose and lip topology), ``B`` a learned
``J x J`` offset per block (2s-AGCN's adaptive graph, zero at the start: it finds the
links the skeleton lacks, such as fingertip to lips, and all of them when the data
names no landmarks), and ``temporal`` a depthwise convolution over frames. Half-way
the frames are halved (stride 2), as ST-GCN does, which also halves the cost of the
later blocks. The landmarks are then averaged and the frames pooled (mean+max).

The network reads the feature layout of ``data.transforms.features``: per frame ``J*C``
coordinates, then with motion ``J*C`` differences, then ``J`` presence flags, and
regroups them into ``(B, T, J, features per landmark)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from slt_cli.models.layers import DropBranch, PooledClassifier, init_weights
from slt_cli.models.skeleton import adjacency

# features per landmark -> (coordinates, motion): the widths features() can make
_LAYOUTS = {3: (2, False), 4: (3, False), 5: (2, True), 7: (3, True)}


def per_landmark_index(in_features: int, num_joints: int) -> torch.Tensor:
    """The order that regroups a frame's features landmark by landmark: ``x[..., index]``
    viewed ``(J, W)`` holds each landmark's coordinates, differences and presence.

    Raises:
        ValueError: ``in_features`` is not a layout ``features`` makes of ``num_joints``.
    """
    width, rest = divmod(in_features, num_joints)
    if rest or width not in _LAYOUTS:
        raise ValueError(f"{in_features} features are not a layout of {num_joints} landmarks")
    channels, motion = _LAYOUTS[width]
    block = num_joints * channels
    index = []
    for joint in range(num_joints):
        coordinates = [joint * channels + c for c in range(channels)]
        moves = [block + joint * channels + c for c in range(channels)] if motion else []
        index += [*coordinates, *moves, (2 if motion else 1) * block + joint]
    return torch.tensor(index)


class GraphBlock(nn.Module):
    """One spatial graph convolution and one temporal convolution, with a residual.

    Args:
        channels_in: Channels per landmark coming in.
        channels: Channels per landmark out.
        skeleton: The normalised adjacency ``(J, J)``.
        kernel_size: Frames the temporal convolution spans (odd).
        stride: 2 halves the frames.
    """

    def __init__(self, channels_in: int, channels: int, skeleton: torch.Tensor,
                 kernel_size: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.norm = nn.LayerNorm(channels_in)
        self.register_buffer("skeleton", skeleton, persistent=False)  # rebuilt from the names
        self.learned = nn.Parameter(torch.zeros_like(skeleton))
        self.self_weight = nn.Linear(channels_in, channels)
        self.neighbour_weight = nn.Linear(channels_in, channels, bias=False)
        self.dropout = nn.Dropout(p=0.0)
        self.temporal = nn.Conv2d(channels, channels, (kernel_size, 1), stride=(stride, 1),
                                  padding=(kernel_size // 2, 0), groups=channels)
        self.temporal_norm = nn.LayerNorm(channels)
        self.project = nn.Linear(channels, channels)
        self.shortcut = (nn.Identity() if channels_in == channels
                         else nn.Linear(channels_in, channels, bias=False))
        self.drop = DropBranch()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, J, C_in)`` to ``(B, T / stride, J, C)``."""
        h = self.norm(x)
        # (Â + B) h W = (Â + B) (h W): mixing after the linear is the cheaper order
        mixed = torch.matmul(self.skeleton + self.learned, self.neighbour_weight(h))
        h = F.silu(self.self_weight(h) + mixed)
        h = self.temporal(self.dropout(h).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        h = self.project(F.silu(self.temporal_norm(h)))
        return self.shortcut(x[:, :: self.stride]) + self.drop(h)


class GraphNetwork(nn.Module):
    """Keypoint sequence classifier ``(B, T, F) -> (B, K)``; see `build_gcn`."""

    def __init__(self, *, in_features: int, num_classes: int, joints: Sequence[str], dim: int,
                 depth: int, kernel_size: int) -> None:
        super().__init__()
        index = per_landmark_index(in_features, len(joints))
        self.register_buffer("index", index, persistent=False)
        self.width = in_features // len(joints)
        self.stem = nn.Linear(self.width, dim, bias=False)
        self.stem_norm = nn.LayerNorm(dim)
        skeleton = adjacency(joints)
        half = depth // 2  # the block that halves the frames, and doubles the channels
        widths = [dim if i < half else 2 * dim for i in range(depth)]
        self.blocks = nn.Sequential(*(
            GraphBlock(w_in, w_out, skeleton, kernel_size, stride=2 if half and i == half else 1)
            for i, (w_in, w_out) in enumerate(zip([dim, *widths[:-1]], widths, strict=True))))
        self.head = PooledClassifier(widths[-1], num_classes)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map frames ``(B, T, F)`` to class logits ``(B, K)``."""
        batch, frames, _ = x.shape
        landmarks = x.index_select(-1, self.index).view(batch, frames, -1, self.width)
        h = self.blocks(F.silu(self.stem_norm(self.stem(landmarks))))
        return self.head(h.mean(dim=2))


def build_gcn(
    *,
    in_features: int,
    num_classes: int,
    num_frames: int,
    joints: Sequence[str],
    dim: int = 16,
    depth: int = 3,
    kernel_size: int = 9,
) -> nn.Module:
    """Build the spatial-temporal graph network.

    With 56 landmarks (hands and upper body) and 5 classes the defaults give about
    18k parameters, half of them in the learned adjacencies. Every landmark keeps its
    own features, so a step costs several times the conv+transformer's: about 4 times
    on one CPU thread there (a GPU's model, like the field's ST-GCNs; ``dim = 64,
    depth = 6`` is nearer their size).

    Args:
        in_features: Features per frame (F), from the data.
        num_classes: Number of classes (K), from the data.
        num_frames: Frames per clip (T), from the data; unused, convolutions take any length.
        joints: The landmarks' names, from the data (the skeleton is read off them).
        dim: Channels per landmark in the first half of the blocks; twice that after.
        depth: Graph blocks; the one half-way halves the frames.
        kernel_size: Frames each temporal convolution spans (odd).

    Returns:
        An ``nn.Module`` mapping ``(B, T, in_features)`` to logits ``(B, num_classes)``.
    """
    del num_frames  # Part of every builder's signature; convolutions take any length.
    return GraphNetwork(in_features=in_features, num_classes=num_classes, joints=joints,
                        dim=dim, depth=depth, kernel_size=kernel_size)


def gcn_setting_problems(settings: dict[str, object]) -> list[str]:
    """Problems that involve more than one setting, or a rule beyond one's type."""
    kernel = settings["kernel_size"]
    assert isinstance(kernel, int)
    return [] if kernel % 2 else [f"model.kernel_size: must be odd, got {kernel}"]
