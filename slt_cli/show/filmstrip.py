"""``slt data inspect --plot``: a few sequences drawn as skeleton filmstrips, frames
side by side, the hands coloured by side, so a person sees at once whether left and
right, x and y, or the scale are wrong.

Coordinates are drawn as images have them (y down), each strip at one scale. Which
sequences and frames are drawn is decided first, without matplotlib (``pick``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slt_cli.data.landmarks import parse_joint

HAND_BONES = ((0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10),
              (10, 11), (11, 12), (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (0, 17),
              (17, 18), (18, 19), (19, 20))
POSE_BONES = ((11, 12), (11, 13), (13, 15), (12, 14), (14, 16), (11, 23), (12, 24), (23, 24),
              (0, 11), (0, 12))  # shoulders, arms, hips; the nose to each shoulder
COLOURS = {"left_hand": "#1f5fa8", "right_hand": "#d1452c", "pose": "0.3", "face": "0.65"}
LABELS = {"left_hand": "left hand (the person's)", "right_hand": "right hand",
          "pose": "body", "face": "face"}
STRIPS, FRAMES = 4, 8


@dataclass(frozen=True)
class Strip:
    """One sequence's frames to draw."""

    title: str
    frames: np.ndarray  # (F, J, C) float, NaN = missing
    numbers: tuple[int, ...]  # which frames of the sequence they are


def pick(y: np.ndarray, lengths: np.ndarray, classes: Sequence[str], signer: np.ndarray | None,
         read: Callable[[int], np.ndarray], strips: int = STRIPS,
         frames: int = FRAMES) -> list[Strip]:
    """The first sequence of each of the first ``strips`` classes (of other signers when
    the data names them), ``frames`` of its frames evenly spread.

    Args:
        read: Sequence index -> its frames ``(T, J, C)``.
    """
    chosen: list[int] = []
    used: set[int] = set()
    for c in range(len(classes)):
        rows = np.flatnonzero(y == c)
        if not len(rows):
            continue
        fresh = [r for r in rows if signer is None or int(signer[r]) not in used]
        row = int((fresh or rows)[0])
        chosen.append(row)
        if signer is not None:
            used.add(int(signer[row]))
        if len(chosen) == strips:
            break
    out = []
    for row in chosen:
        length = int(lengths[row])
        numbers = tuple(sorted(set(np.linspace(0, length - 1, min(frames, length))
                                   .round().astype(int).tolist())))
        who = "" if signer is None else f" · signer {int(signer[row])}"
        out.append(Strip(f"{classes[int(y[row])]}{who} · #{row}",
                         read(row)[list(numbers)], numbers))
    return out


def save_filmstrips(strips: Sequence[Strip], joints: Sequence[str] | None, title: str,
                    path: Path) -> None:
    """Draw ``strips`` (one row each) into the image ``path``.

    Raises:
        SltError: when matplotlib is missing; StorageError when the file cannot be written.
    """
    from matplotlib.lines import Line2D

    from slt_cli.show.plots import new_figure, save_figure

    columns = max(len(strip.numbers) for strip in strips)
    figure = new_figure(figsize=(1.6 * columns + 0.4, 1.9 * len(strips) + 0.6))
    grid = figure.subplots(len(strips), columns, squeeze=False)
    parts = _parts(joints, strips[0].frames.shape[1])
    for strip, row in zip(strips, grid, strict=False):
        xy = strip.frames[..., :2]
        limits = _limits(xy)
        for k, axes in enumerate(row):
            axes.set_xticks([])
            axes.set_yticks([])
            if k >= len(strip.numbers):
                axes.set_axis_off()
                continue
            _draw(axes, xy[k], parts)
            axes.set_xlim(limits[0])
            axes.set_ylim(limits[1][::-1])  # image coordinates: y grows downwards
            axes.set_aspect("equal", adjustable="box")
            axes.set_title(f"frame {strip.numbers[k]}", fontsize=7)
        row[0].set_ylabel(strip.title, fontsize=8)
    handles = [Line2D([], [], color=COLOURS[part], marker="o", markersize=3, label=LABELS[part])
               for part in COLOURS if any(p == part for p, _ in parts.values())]
    if handles:
        figure.legend(handles=handles, loc="outside lower center", ncols=len(handles),
                      fontsize=8, frameon=False)
    figure.suptitle(f"{title} (x right, y down, as in the image)", fontsize=9)
    save_figure(figure, path)


def _parts(joints: Sequence[str] | None, count: int) -> dict[int, tuple[str, int]]:
    """Column -> (part, index) for MediaPipe-named landmarks; others as ``other``."""
    out = {}
    for j in range(count):
        joint = parse_joint(joints[j]) if joints else None
        out[j] = (joint.part, joint.index) if joint else ("other", j)
    return out


def _limits(xy: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """x and y ranges holding every point of a strip, with a margin."""
    finite = xy[np.isfinite(xy).all(axis=-1)]
    if not len(finite):
        return (0.0, 1.0), (0.0, 1.0)
    low, high = finite.min(axis=0), finite.max(axis=0)
    pad = 0.08 * max(float((high - low).max()), 1e-6)
    return (float(low[0] - pad), float(high[0] + pad)), (float(low[1] - pad), float(high[1] + pad))


def _draw(axes: Any, xy: np.ndarray, parts: dict[int, tuple[str, int]]) -> None:
    """One frame: bones as lines, landmarks as dots, coloured by part (one collection
    per part: a figure of 32 frames draws in well under a second)."""
    from matplotlib.collections import LineCollection

    where = {(part, index): j for j, (part, index) in parts.items()}
    for part, bones in (("pose", POSE_BONES), ("left_hand", HAND_BONES),
                        ("right_hand", HAND_BONES)):
        pairs = [(where[(part, a)], where[(part, b)]) for a, b in bones
                 if (part, a) in where and (part, b) in where]
        segments = [xy[[ja, jb]] for ja, jb in pairs if np.isfinite(xy[[ja, jb]]).all()]
        if segments:
            axes.add_collection(LineCollection(segments, colors=COLOURS[part], linewidths=0.8))
    for part in ("face", "pose", "other", "left_hand", "right_hand"):
        columns = [j for j, (p, _) in parts.items() if p == part]
        if columns:
            axes.scatter(xy[columns, 0], xy[columns, 1], s=2 if part == "face" else 4,
                         color=COLOURS.get(part, "0.5"), linewidths=0)
