"""The skeleton a graph network convolves over, read off the landmarks' names.

MediaPipe's own topology: the hand's 21 points (``HAND_CONNECTIONS``), the pose's 33
(``POSE_CONNECTIONS``) and the lips of the face mesh (``FACEMESH_LIPS``), with each
hand's wrist joined to the pose's wrist on its side (Holistic's ``left_hand`` is the
body's left, as its pose's ``left_wrist``) and a hand's ``_position`` landmark (the
per-part normalisation's) to that hand's wrist. A hand's shape (``left_hand_shape_8``,
``[data] normalise = "sequence+hands"``) has the hand's edges among its points, and each
of its points is joined to the same point of the hand. Only edges between landmarks the data
has are kept; landmarks of other names join nothing, and the network's learned
adjacency finds their neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from slt_cli.data.landmarks import (
    HAND_SIZE,
    HANDS,
    Joint,
    landmark_key,
    position_name,
    shape_name,
)

HAND_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10),
    (10, 11), (11, 12), (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (0, 17), (17, 18),
    (18, 19), (19, 20),
)
POSE_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12),
    (11, 13), (13, 15), (15, 17), (15, 19), (15, 21), (17, 19), (12, 14), (14, 16), (16, 18),
    (16, 20), (16, 22), (18, 20), (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27),
    (26, 28), (27, 29), (28, 30), (29, 31), (30, 32), (27, 31), (28, 32),
)
LIP_EDGES = (
    (61, 146), (146, 91), (91, 181), (181, 84), (84, 17), (17, 314), (314, 405), (405, 321),
    (321, 375), (375, 291), (61, 185), (185, 40), (40, 39), (39, 37), (37, 0), (0, 267),
    (267, 269), (269, 270), (270, 409), (409, 291), (78, 95), (95, 88), (88, 178), (178, 87),
    (87, 14), (14, 317), (317, 402), (402, 318), (318, 324), (324, 308), (78, 191), (191, 80),
    (80, 81), (81, 82), (82, 13), (13, 312), (312, 311), (311, 310), (310, 415), (415, 308),
    (61, 78), (291, 308),  # each corner's outer ring to its inner ring
)
WRISTS = {"left_hand": 15, "right_hand": 16}  # the pose's wrist on each hand's side


def skeleton_edges() -> list[tuple[Joint | str, Joint | str]]:
    """Every edge of the Holistic skeleton, between landmark keys (``landmark_key``)."""
    edges: list[tuple[Joint | str, Joint | str]] = []
    for hand in HANDS:
        edges += [(Joint(hand, a), Joint(hand, b)) for a, b in HAND_EDGES]
        edges.append((Joint(hand, 0), Joint("pose", WRISTS[hand])))
        edges.append((Joint(hand, 0), position_name(hand)))
        shape = [shape_name(hand, i) for i in range(HAND_SIZE)]  # [0] (the wrist) unused
        edges += [(shape[a], shape[b]) for a, b in HAND_EDGES if a and b]
        edges += [(Joint(hand, i), shape[i]) for i in range(1, HAND_SIZE)]
    edges += [(Joint("pose", a), Joint("pose", b)) for a, b in POSE_EDGES]
    edges += [(Joint("face", a), Joint("face", b)) for a, b in LIP_EDGES]
    return edges


def adjacency(joints: Sequence[str]) -> torch.Tensor:
    """The normalised adjacency ``D^-1/2 (A + I) D^-1/2`` of ``joints`` (Kipf and
    Welling's), ``(J, J)`` float32: ``A`` joins the skeleton's neighbours among them."""
    where: dict[Joint | str, int] = {}
    for index, name in enumerate(joints):
        where.setdefault(landmark_key(name), index)
    matrix = torch.eye(len(joints))
    for a, b in skeleton_edges():
        if a in where and b in where:
            matrix[where[a], where[b]] = matrix[where[b], where[a]] = 1.0
    scale = matrix.sum(dim=1).rsqrt()
    return scale[:, None] * matrix * scale[None, :]
