"""The flat frame vectors of MediaPipe Holistic that recorders write, and how the
order of their parts is told from the data.

A frame holds pose 33 x (x, y, z, visibility), face 468 (or 478) x 3 and the two hands
21 x 3 (or 4) values, in an order that differs between projects; ``detect_order`` finds
the order that fits: pose visibility lies in [0, 1], the pose nose sits on the face's
nose tip, each hand at its own side's pose wrist.
"""

from __future__ import annotations

from itertools import permutations

import numpy as np

TUTORIAL = ("pose", "face", "left_hand", "right_hand")  # the tutorial's order
# Values per frame -> (part, points, values per point) of each part it holds.
FRAME_PARTS: dict[int, dict[str, tuple[int, int]]] = {
    1662: {"pose": (33, 4), "face": (468, 3), "left_hand": (21, 3), "right_hand": (21, 3)},
    1692: {"pose": (33, 4), "face": (478, 3), "left_hand": (21, 3), "right_hand": (21, 3)},
    1704: {"pose": (33, 4), "face": (468, 3), "left_hand": (21, 4), "right_hand": (21, 4)},
    258: {"pose": (33, 4), "left_hand": (21, 3), "right_hand": (21, 3)},
    126: {"left_hand": (21, 3), "right_hand": (21, 3)},
}

NOSE_TIP = 1  # face mesh point on the nose tip; pose point 0 is the nose
WRISTS = {"left_hand": 15, "right_hand": 16}  # pose wrists


def part_block(frames: np.ndarray, order: tuple[str, ...], part: str) -> np.ndarray:
    """One part of ``(T, values)`` flat frames in ``order``: ``(T, points, values)``
    float64, NaN in the frames where the part is all zeros (not detected)."""
    sizes = FRAME_PARTS[frames.shape[1]]
    start = sum(sizes[p][0] * sizes[p][1] for p in order[:order.index(part)])
    points, values = sizes[part]
    block = frames[:, start:start + points * values].reshape(len(frames), points, values)
    return np.where((block == 0).all(axis=(1, 2))[:, None, None], np.nan, block)


def detect_order(frames: np.ndarray) -> tuple[tuple[str, ...], float]:
    """The order of the parts of ``frames`` ``(n, values)`` that fits best, and its cost
    (0 is a perfect fit): pose visibility outside [0, 1], the distance from the pose
    nose to the face's nose tip and from each hand's wrist to its side's pose wrist."""
    parts = [part for part in TUTORIAL if part in FRAME_PARTS[frames.shape[1]]]
    best: tuple[float, tuple[str, ...]] | None = None
    for order in permutations(parts):  # the tutorial's order first: it wins a tie
        cost = _misfit(frames, order)
        if best is None or cost < best[0]:
            best = (cost, order)
    assert best is not None
    return best[1], best[0]


def _misfit(frames: np.ndarray, order: tuple[str, ...]) -> float:
    if "pose" not in order:
        return 0.0
    pose = part_block(frames, order, "pose")
    vis = pose[:, :, 3][np.isfinite(pose[:, :, 3])]
    cost = 10.0 * float(((vis < 0) | (vis > 1)).mean()) if vis.size else 10.0
    if "face" in order:
        cost += _distance(pose[:, 0], part_block(frames, order, "face")[:, NOSE_TIP])
    for hand, wrist in WRISTS.items():
        cost += _distance(pose[:, wrist], part_block(frames, order, hand)[:, 0])
    return cost


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    """Median x-y distance between two points over the frames that have both (0: none)."""
    d = np.linalg.norm(a[:, :2] - b[:, :2], axis=-1)
    d = d[np.isfinite(d)]
    return float(np.median(d)) if d.size else 0.0
