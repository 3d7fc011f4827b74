"""Normalisation of (B, T, J, C) landmark sequences, NaN = missing, written once in torch.

Three modes (``[data] normalise``):

- ``sequence``: each sequence centred on its mean landmark and scaled to unit spread,
  as one cloud of points (``normalise_sequence``; numpy twin in ``preprocess``).
- ``parts``: by the landmarks' names (``landmarks.PartsLayout``), each part in its own
  frame (``normalise_parts``). On real recordings one cloud is dominated by whatever
  lies farthest out (off-screen legs), and the hands shrink to a few pixels; here the
  body is measured by its shoulders, each hand by its palm and the face by itself.
- ``sequence+hands``: the first, with each hand's shape of the second appended
  (``with_hand_shapes``).

All are plain sums, counts and gathers in float64 (no ``nanmean``, no data-dependent
shapes), so the same code runs at data preparation (``preprocess.normalise`` calls it),
in ``slt predict`` and inside the graphs ``slt export`` writes. Statistics ignore NaN,
missing stays NaN, and every scale has a floor, so present values stay finite.
"""

from __future__ import annotations

import torch

from slt_cli.data.landmarks import Hand, PartsLayout

SPREAD_FLOOR = 1e-6  # a scale this small (one still point) is left at 1: nothing to scale


def normalise(x: torch.Tensor, layout: PartsLayout | None = None) -> torch.Tensor:
    """``normalise_sequence`` without a layout, else the layout's mode:
    ``normalise_parts`` or ``with_hand_shapes``."""
    if layout is None:
        return normalise_sequence(x)
    return with_hand_shapes(x, layout) if layout.shapes else normalise_parts(x, layout)


def with_hand_shapes(x: torch.Tensor, layout: PartsLayout) -> torch.Tensor:
    """(B, T, J, C) sequences as one cloud (``normalise_sequence``), each hand's shape
    appended: its points but the wrist, in the hand's own frame as ``normalise_parts``
    puts them (relative to the wrist in every frame, divided by the hand's size), in
    ``layout.hands`` order. The cloud keeps where the hands go; the shapes keep the
    handshape at the size of every signer's hand, which the cloud shrinks with the
    distance from the camera."""
    dtype = x.dtype
    x = x.double()
    shapes = [_hand_frame(x, hand, hand.shape_points) for hand in layout.hands]
    return torch.cat([normalise_sequence(x), *shapes], dim=2).to(dtype)


def normalise_sequence(x: torch.Tensor) -> torch.Tensor:
    """Torch twin of ``data.preprocess.normalise`` for (B, T, J, C), NaN = missing.

    Each sequence is centred on its mean landmark and scaled to unit spread; NaN
    values are left out of both statistics and stay NaN.

    Computed in float64, returned in ``x``'s dtype: a signer who barely moves has a
    spread of a few thousandths, and centring in float32 then loses digits that the
    division by that spread magnifies, differently in every runtime's summation order.
    """
    dtype = x.dtype
    centre, spread = _cloud(x.double())
    return ((x.double() - centre[:, None, None]) / _floored(spread)[:, None, None, None]).to(dtype)


def normalise_parts(x: torch.Tensor, layout: PartsLayout) -> torch.Tensor:
    """Each part of (B, T, J, C) sequences in its own frame; J grows by one landmark per
    hand of ``layout`` (its wrist in the body frame), appended in ``layout.hands`` order.

    - Body (pose and other points, not hands or face): origin at the shoulders'
      midpoint, unit the shoulder width, both averaged over the frames where both
      shoulders are seen; without them, the body points' mean and RMS spread (all
      points' when no body point is seen), as ``sequence`` does.
    - Each hand: every frame relative to its own wrist, divided by the hand's size
      (see ``landmarks.Hand.anchors``), averaged over the frames it is seen in.
    - Face: every frame relative to its own centre, divided by its RMS size over the
      sequence (where it is, the pose's head points say).

    Distances for scales are measured in the image plane (x, y): depth from one
    camera is the least reliable channel.
    """
    dtype = x.dtype
    x = x.double()
    origin, unit = _body_frame(x, layout)  # (B, C), (B,)
    pieces, order = [], []
    if layout.body:
        pieces.append((_take(x, layout.body) - origin[:, None, None]) / unit[:, None, None, None])
        order += layout.body
    positions = []
    for hand in layout.hands:
        pieces.append(_hand_frame(x, hand, hand.points))
        order += hand.points
        positions.append((x.select(2, hand.wrist) - origin[:, None]) / unit[:, None, None])
    if layout.face:
        face = _take(x, layout.face)
        seen = ~torch.isnan(face)
        centre = (torch.where(seen, face, 0.0).sum(dim=2, keepdim=True)
                  / seen.sum(dim=2, keepdim=True))
        offset = face - centre
        size = torch.sqrt(_mean((offset[..., :2] * offset[..., :2]).sum(dim=-1), dims=(1, 2)))
        pieces.append(offset / _floored(size)[:, None, None, None])
        order += layout.face
    if positions:
        pieces.append(torch.stack(positions, dim=2))
    # Back to the sequence's own order (where is joint j among the pieces?), positions last.
    back = sorted(range(len(order)), key=order.__getitem__)
    back += range(len(order), len(order) + len(positions))
    return _take(torch.cat(pieces, dim=2), back).to(dtype)


def _hand_frame(x: torch.Tensor, hand: Hand, points: tuple[int, ...]) -> torch.Tensor:
    """Landmarks ``points`` of (B, T, J, C) in ``hand``'s frame: relative to its wrist
    in every frame, divided by its size (see ``landmarks.Hand.anchors``) averaged over
    the frames it is seen in."""
    wrist = x.select(2, hand.wrist)[:, :, None]  # (B, T, 1, C)
    size = _mean(_plane_distance(_take(x, hand.anchors), wrist), dims=(1, 2))
    return (_take(x, points) - wrist) / _floored(size)[:, None, None, None]


def _body_frame(x: torch.Tensor, layout: PartsLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """The body frame's origin (B, C) and unit (B,) of each sequence."""
    centre, spread = _cloud(_take(x, layout.body) if layout.body else x)
    if layout.body:  # no body point seen at all: every point's statistics
        every_centre, every_spread = _cloud(x)
        centre = torch.where(torch.isnan(spread)[:, None], every_centre, centre)
        spread = torch.where(torch.isnan(spread), every_spread, spread)
    if layout.shoulders is not None:
        left, right = (x.select(2, i) for i in layout.shoulders)  # (B, T, C)
        both = ~torch.isnan((left + right).sum(dim=-1))  # (B, T)
        count = both.sum(dim=1)
        middle = torch.where(both[..., None], (left + right) / 2, 0.0).sum(dim=1)
        width = torch.where(both, _plane_distance(left, right), 0.0).sum(dim=1)
        seen = count > 0
        centre = torch.where(seen[:, None], middle / count[:, None], centre)
        spread = torch.where(seen, width / count, spread)
    return centre, _floored(spread)


def _cloud(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean landmark (B, C) and RMS spread about it (B,) of (B, T, J, C), NaN ignored;
    NaN where a sequence has nothing."""
    missing = torch.isnan(x)
    centre = (torch.where(missing, 0.0, x).sum(dim=(1, 2))
              / (~missing).sum(dim=(1, 2)))
    offset = x - centre[:, None, None]
    return centre, torch.sqrt(_mean((offset * offset).sum(dim=-1), dims=(1, 2)))


def _mean(values: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Mean over ``dims`` of the values that are not NaN (NaN where none is)."""
    seen = ~torch.isnan(values)
    return torch.where(seen, values, 0.0).sum(dim=dims) / seen.sum(dim=dims)


def _plane_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    step = (a - b)[..., :2]
    return torch.sqrt((step * step).sum(dim=-1))


def _floored(scale: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(scale) & (scale > SPREAD_FLOOR), scale, 1.0)


def _take(x: torch.Tensor, indices: tuple[int, ...] | list[int]) -> torch.Tensor:
    """Landmarks ``indices`` of (B, T, J, C); a constant index, so exports keep it."""
    return x.index_select(2, torch.tensor(list(indices), dtype=torch.long, device=x.device))
