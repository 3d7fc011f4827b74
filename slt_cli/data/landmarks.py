"""Which MediaPipe Holistic landmarks a corpus source keeps, and what they are called.

GISLR parquet files and MediaPipe ``.pose`` files carry the same four parts: the face
mesh (468 points), both hands (21 each) and the body pose (33). Training on all 543
points is slow and mostly face; ``[data] landmarks`` picks groups of them by name.
Joint names say left and right (``left_hand_4``, ``pose_left_wrist``), so the mirror
augmentation can swap the two sides.
"""

from __future__ import annotations

from typing import NamedTuple

from slt_cli.errors import DataError

DEFAULT_LANDMARKS = "hands+pose+lips"

HAND_SIZE = 21
FACE_SIZE = 468
POSE_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index",
)
# The parts of a Holistic frame and their sizes, in the order GISLR stores them.
PART_SIZES = {"face": FACE_SIZE, "left_hand": HAND_SIZE, "pose": len(POSE_NAMES),
              "right_hand": HAND_SIZE}
UPPER_BODY = tuple(range(11, 25))  # shoulders, elbows, wrists, hand points, hips
# The 40 lip points of the face mesh that GISLR's strongest solutions used.
LIPS = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 146, 91, 181, 84, 17, 314, 405, 321,
        375, 78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 95, 88, 178, 87, 14, 317, 402, 318,
        324, 308)
GROUPS = ("left_hand", "right_hand", "hands", "pose", "lips", "face")


class Landmark(NamedTuple):
    """One kept landmark: the Holistic part it comes from, its index there, its name."""

    part: str  # "face", "left_hand", "pose" or "right_hand"
    index: int
    name: str
    group: str  # how `slt data inspect` reports it: left_hand, right_hand, pose, face


def parse_landmarks(text: str) -> tuple[str, ...]:
    """``"hands+pose+lips"`` into its groups, in a canonical order.

    Raises:
        DataError: for an empty selection or an unknown group.
    """
    groups = {item.strip() for item in text.split("+") if item.strip()}
    unknown = sorted(groups - set(GROUPS))
    if unknown or not groups:
        raise DataError(f"landmarks {text!r}: unknown group {', '.join(unknown) or '(none)'}",
                        hint=f"Join groups with '+', from: {', '.join(GROUPS)}.")
    if "hands" in groups:
        groups = (groups - {"hands"}) | {"left_hand", "right_hand"}
    if "face" in groups:
        groups.discard("lips")
    return tuple(g for g in GROUPS if g in groups)


def canonical_landmarks(text: str) -> str:
    """The selection as one stable string (part of a cache's key)."""
    return "+".join(parse_landmarks(text))


def select_landmarks(text: str) -> tuple[Landmark, ...]:
    """The Holistic landmarks a selection keeps, hands first, then pose, then face."""
    groups = parse_landmarks(text)
    chosen: list[Landmark] = []
    for side in ("left_hand", "right_hand"):
        if side in groups:
            chosen += [Landmark(side, i, f"{side}_{i}", side) for i in range(HAND_SIZE)]
    if "pose" in groups:
        chosen += [Landmark("pose", i, f"pose_{POSE_NAMES[i]}", "pose") for i in UPPER_BODY]
    face = range(FACE_SIZE) if "face" in groups else LIPS if "lips" in groups else ()
    chosen += [Landmark("face", i, f"face_{i}", "face") for i in face]
    return tuple(chosen)


def problems(text: str) -> list[str]:
    """What is wrong with a selection, for config checking (empty when fine)."""
    try:
        parse_landmarks(text)
    except DataError:
        return [f"must join groups of {', '.join(GROUPS)} with '+', e.g. {DEFAULT_LANDMARKS!r}"]
    return []
