"""Per-batch work on the training device: augmentation and feature building.

Everything is batched torch (no Python loop over samples) and reads its randomness
from one ``torch.Generator``, so a seeded run repeats exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F

from slt_cli.data.landmarks import mirror_name


class Augmentation(Protocol):
    """The settings ``augment`` reads (``cfg.settings.AugmentConfig`` is one, and
    documents each): maximum strengths and probabilities, 0 = off."""

    rotate: float
    scale: float
    shear: float
    shift: float
    jitter: float
    speed: float
    time_mask: float
    joint_drop: float
    mirror: float
    mixup: float

    @property
    def enabled(self) -> bool: ...


def feature_count(num_joints: int, num_channels: int, motion: bool) -> int:
    """Width of a frame's feature vector as ``features`` builds it."""
    return num_joints * num_channels * (2 if motion else 1) + num_joints


def features(x: torch.Tensor, motion: bool) -> torch.Tensor:
    """Turn (B, T, J, C) landmarks (NaN = missing) into (B, T, F) model input.

    Missing coordinates become 0 *and* a per-landmark presence flag says so, so a
    zero is never mistaken for a real point at the origin.
    """
    # A landmark is missing when any coordinate is NaN, i.e. when their sum is: a
    # sum of C slices runs several times faster than an any() over a tiny last axis.
    present = ~torch.isnan(sum(x.unbind(dim=-1)))  # (B, T, J)
    parts = [torch.nan_to_num(x, nan=0.0).flatten(2)]
    if motion:
        step = torch.nan_to_num(x[:, 1:] - x[:, :-1], nan=0.0)
        parts.append(F.pad(step, (0, 0, 0, 0, 1, 0)).flatten(2))
    parts.append(present.to(x.dtype))
    return torch.cat(parts, dim=-1)


def mirror_permutation(joints: Sequence[str] | None) -> list[int] | None:
    """Index that swaps left and right landmarks, or None when names don't say.

    Without left/right names a flip would turn one sign into another (clockwise
    into anticlockwise) instead of into the same sign by a left-handed signer.
    Partners follow ``landmarks.mirror_name``: ``left``/``right`` in the name
    (``left_hand_3``, ``pose_left_wrist``, ``left_hand_position``) or MediaPipe's pose
    index pairs (``pose_11`` and ``pose_12``).
    """
    if not joints:
        return None
    position = {name: i for i, name in enumerate(joints)}
    permutation, swapped = [], False
    for name in joints:
        partner = mirror_name(name)
        if partner != name and partner in position:
            permutation.append(position[partner])
            swapped = True
        else:
            permutation.append(position[name])
    return permutation if swapped else None


def hand_sides(joints: Sequence[str] | None) -> tuple[list[int], list[int]] | None:
    """The indices of the left hand's and the right hand's landmarks (``left_hand_*``,
    ``right_hand_*``), or None when the names do not show both hands."""
    left = [i for i, name in enumerate(joints or ()) if name.startswith("left_hand")]
    right = [i for i, name in enumerate(joints or ()) if name.startswith("right_hand")]
    return (left, right) if left and right else None


def dominant_hand_swap(joints: Sequence[str] | None,
                       mode: str) -> tuple[list[int], list[int], list[int]] | None:
    """What ``right_handed`` needs for ``[data] dominant_hand = mode`` on clips with
    these landmarks: (left hand, right hand, mirror index); None when clips stay as
    recorded (``keep``, or names that show no two hands to swap)."""
    sides = hand_sides(joints) if mode == "right" else None
    mirror = mirror_permutation(joints) if sides else None
    return (*sides, mirror) if sides and mirror else None


def right_handed(x: torch.Tensor, left: Sequence[int] | torch.Tensor,
                 right: Sequence[int] | torch.Tensor,
                 mirror: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """(B, T, J, C) prepared clips with the dominant hand on the right: a clip whose left
    hand is seen (not NaN) in more frames than its right is mirrored (``mirror_clips``),
    as a left-handed signer, or a recorder that flips the image, turns it. One-handed
    signs leave the other hand mostly undetected, so the hand seen more is the one
    signing."""
    def seen(hand: Sequence[int] | torch.Tensor) -> torch.Tensor:
        points = x.index_select(2, torch.as_tensor(hand, device=x.device))[..., 0]
        return (~torch.isnan(points)).any(dim=2).sum(dim=1)

    flip = (seen(left) > seen(right))[:, None, None, None]
    return torch.where(flip, mirror_clips(x, mirror), x)


def mirror_clips(x: torch.Tensor, mirror: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """The left/right mirror image of (B, T, J, C) clips: joints swapped by ``mirror``
    (``mirror_permutation``'s index) and x negated, as the ``mirror`` augmentation
    flips a clip (prepared clips are centred, so x = 0 is the body's midline)."""
    swapped = x.index_select(2, torch.as_tensor(mirror, device=x.device))
    sign = torch.ones(x.shape[-1], device=x.device, dtype=x.dtype)
    sign[0] = -1.0
    return swapped * sign


def mean_probabilities(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """log of the mean of two logits' softmax probabilities (B, K): logits again, so
    ``argmax`` picks the class of highest mean probability, ``softmax`` gives the mean
    probabilities and cross-entropy is the mixture's own negative log-likelihood."""
    stacked = torch.stack([first.float().log_softmax(-1), second.float().log_softmax(-1)])
    return torch.logsumexp(stacked, dim=0) - math.log(2.0)


def augment(
    x: torch.Tensor,
    settings: Augmentation,
    generator: torch.Generator,
    mirror: Sequence[int] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Random keypoint augmentations of a (B, T, J, C) batch; NaN stays NaN.

    ``mirror`` is ``mirror_permutation``'s index; as a tensor on the batch's device
    it saves a copy to the device (which waits for the GPU) on every call.
    """
    if not settings.enabled:
        return x
    batch, frames, joints, channels = x.shape

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        draw = torch.rand(shape, generator=generator, device=x.device, dtype=x.dtype)
        return low + (high - low) * draw

    flip = None  # per clip: -1 where it is mirrored (x negated), else 1
    if settings.mirror > 0 and mirror is not None:
        chosen = uniform(0, 1, batch) < settings.mirror
        # One gather over each frame's J*C values, where the chosen clips read their
        # joints swapped; their x is negated with the linear maps below.
        values = torch.arange(joints * channels, device=x.device).view(joints, channels)
        source = torch.where(chosen[:, None], values[torch.as_tensor(mirror, device=x.device)]
                             .flatten(), values.flatten())  # (B, J*C)
        x = x.reshape(batch, frames, -1).gather(2, source[:, None].expand(-1, frames, -1))
        x = x.view(batch, frames, joints, channels)
        flip = torch.where(chosen, -1.0, 1.0).to(x.dtype)
    if settings.speed > 0:
        x = _time_warp(x, uniform(-settings.speed, settings.speed, batch))
    maps = shift = None
    if settings.rotate > 0 or settings.scale > 0 or settings.shear > 0:
        maps = _linear_maps(settings, channels, uniform, batch)
    if settings.shift > 0:
        shift = uniform(-settings.shift, settings.shift, batch, channels)
        shift[:, 2:] = 0  # depth is the least reliable axis: leave it
    x = _move(x, maps, flip, shift)
    if settings.jitter > 0:
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = x.add(noise, alpha=settings.jitter)
    blank = torch.zeros(batch, frames, joints, dtype=torch.bool, device=x.device)
    if settings.time_mask > 0:
        width = (uniform(0, settings.time_mask, batch) * frames).long()
        start = (uniform(0, 1, batch) * (frames - width + 1)).long().clamp(max=frames - 1)
        step = torch.arange(frames, device=x.device)[None]
        hidden = (step >= start[:, None]) & (step < (start + width)[:, None])
        blank |= hidden[:, :, None]
    if settings.joint_drop > 0:
        dropped = uniform(0, 1, batch, 1, joints) < settings.joint_drop
        # Never every landmark of a sequence: with few joints (one tracked hand) that
        # would leave an empty clip that still carries its label, i.e. label noise.
        dropped &= ~dropped.all(dim=-1, keepdim=True)
        blank |= dropped
    # Adding NaN (or 0) per landmark: a masked fill across the C channels of each
    # landmark is several times slower on the CPU.
    holes = torch.where(blank, float("nan"), 0.0).to(x.dtype)
    return x + holes[..., None]


def mix(inputs: torch.Tensor, probability: float,
        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mixup of model inputs (B, T, F): each chosen clip is blended with a random
    partner from the batch, keeping a weight between 0.5 and 1 for itself.

    Returns:
        The blended inputs, each sample's partner index (B,) and its own weight (B,);
        the loss blends the two labels with the same weights.
    """
    batch = inputs.shape[0]
    draws = torch.rand(2, batch, generator=generator, device=inputs.device)
    partner = torch.randperm(batch, generator=generator, device=inputs.device)
    weight = torch.where(draws[0] < probability, 0.5 + 0.5 * draws[1], 1.0).to(inputs.dtype)
    blended = torch.lerp(inputs.index_select(0, partner), inputs, weight[:, None, None])
    return blended, partner, weight


def _move(x: torch.Tensor, maps: torch.Tensor | None, flip: torch.Tensor | None,
          shift: torch.Tensor | None) -> torch.Tensor:
    """Every point of clip b through ``maps[b]`` (C, C), x times ``flip[b]``, plus
    ``shift[b]`` (C,): with maps, all of it in one batched product."""
    batch, frames, joints, channels = x.shape
    if maps is None:
        if flip is not None:
            sign = torch.ones(batch, channels, device=x.device, dtype=x.dtype)
            sign[:, 0] = flip
            x = x * sign[:, None, None, :]
        return x if shift is None else x + shift[:, None, None, :]
    if flip is not None:
        maps[:, :, 0] *= flip[:, None]  # maps @ diag(flip, 1, ...): negate x first
    # maps @ x^T with the points along the long side: one batched (C, C) x (C, T*J)
    # product is several times faster than T*J tiny (1, C) x (C, C) ones.
    points = x.reshape(batch, frames * joints, channels).transpose(1, 2).contiguous()
    moved = (torch.bmm(maps, points) if shift is None
             else torch.baddbmm(shift[:, :, None], maps, points))
    # Back to (B, T, J, C) as a view: what follows (noise, masks, features) is
    # elementwise, and runs faster over long rows of one channel than over rows of C.
    return moved.view(batch, channels, frames, joints).permute(0, 2, 3, 1)


def _linear_maps(settings: Augmentation, channels: int, uniform, batch: int) -> torch.Tensor:
    """One random rotation, shear and scale matrix (C, C) per sample."""
    # The planes turned: x-y by up to the full angle and, with depth, x-z and y-z by
    # up to half of it (out-of-plane turns of the camera are smaller than in-plane ones).
    planes = 3 if channels == 3 else min(channels - 1, 1)
    spread = uniform(-1.0, 1.0, batch, planes + 2)  # scale, shear, one angle per plane
    device, dtype = spread.device, spread.dtype
    theta = spread[:, 2:] * math.radians(settings.rotate)
    theta[:, 1:] /= 2
    first, second = torch.triu_indices(channels, channels, 1, device=device)[:, :planes]
    plane = torch.arange(planes, device=device)
    turns = torch.eye(channels, device=device, dtype=dtype).repeat(batch, planes, 1, 1)
    cos, sin = theta.cos(), theta.sin()
    turns[:, plane, first, first], turns[:, plane, second, second] = cos, cos
    turns[:, plane, first, second], turns[:, plane, second, first] = -sin, sin
    maps = turns[:, 0] if planes else torch.eye(channels, device=device, dtype=dtype)[None]
    for index in range(1, planes):
        maps = maps @ turns[:, index]
    if settings.shear > 0 and channels > 1:  # maps @ [[1, s], [0, 1]]: y's column += s x's
        maps[:, :, 1] += (settings.shear * spread[:, 1, None]) * maps[:, :, 0]
    return maps * (1 + settings.scale * spread[:, 0])[:, None, None]


def _time_warp(x: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """Resample time through t**gamma: the sign speeds up or slows down unevenly,
    but starts and ends where it did, so nothing of it is cut."""
    batch, frames = x.shape[:2]
    gamma = torch.exp(amount)[:, None]
    grid = torch.linspace(0, 1, frames, device=x.device, dtype=x.dtype)[None] ** gamma
    position = grid * (frames - 1)
    lower = position.floor().long().clamp(max=frames - 1)
    upper = (lower + 1).clamp(max=frames - 1)
    weight = (position - lower)[:, :, None, None]
    # Frames gathered by index_select over (B*T) rows: several times faster than
    # x[rows, lower] on the CPU.
    first = (torch.arange(batch, device=x.device) * frames)[:, None]
    rows = x.reshape(batch * frames, *x.shape[2:])

    def frames_at(index: torch.Tensor) -> torch.Tensor:
        return rows.index_select(0, (first + index).flatten()).view(x.shape)

    return torch.lerp(frames_at(lower), frames_at(upper), weight)
