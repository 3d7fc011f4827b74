"""Which MediaPipe Holistic landmarks a corpus source keeps, and what they are called.

GISLR parquet files and MediaPipe ``.pose`` files carry the same four parts: the face
mesh (468 points), both hands (21 each) and the body pose (33). Training on all 543
points is slow and mostly face; ``[data] landmarks`` picks groups of them by name.
Joint names say left and right (``left_hand_4``, ``pose_left_wrist``), so the mirror
augmentation can swap the two sides.

``parse_joint`` is the one reader of MediaPipe landmark names, whoever wrote them: the
corpus loaders' (``pose_left_shoulder``), MediaPipe's own indices as ``.npz`` files
name them (``pose_11``, ``left_hand_0``, ``face_13``). Selection (``select_named``),
per-part normalisation (``PartsLayout``) and mirroring (``mirror_name``) all follow it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
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
HANDS = ("left_hand", "right_hand")
WRIST, PALM_END = 0, 9  # hand landmark 0 is the wrist; 9 the middle finger's knuckle (MCP)
SHOULDERS = (POSE_NAMES.index("left_shoulder"), POSE_NAMES.index("right_shoulder"))
# MediaPipe's left/right pose pairs (1<->4, 2<->5, ..., 11<->12, ..., 31<->32), read off
# POSE_NAMES. Face mesh points get no partner: the mesh's left/right pairs follow no
# index rule, so a flip keeps them in place (only x is negated).
POSE_MIRROR = {i: POSE_NAMES.index(name.replace("left", "right")) if "left" in name
               else POSE_NAMES.index(name.replace("right", "left")) if "right" in name else i
               for i, name in enumerate(POSE_NAMES)}
_NAME = re.compile(r"(left_hand|right_hand|pose|face)_([a-z0-9_]+)")


def position_name(side: str) -> str:
    """The name of a hand's wrist in the body frame (``parts``): ``left_hand_position``."""
    return f"{side}_position"


def shape_name(side: str, index: int | str) -> str:
    """The name of a hand's point ``index`` in that hand's own frame (``sequence+hands``):
    ``left_hand_shape_8``."""
    return f"{side}_shape_{index}"


class Landmark(NamedTuple):
    """One kept landmark: the Holistic part it comes from, its index there, its name."""

    part: str  # "face", "left_hand", "pose" or "right_hand"
    index: int
    name: str
    group: str  # how `slt data inspect` reports it: left_hand, right_hand, pose, face


class Joint(NamedTuple):
    """Where a named landmark sits in MediaPipe Holistic: its part and index there."""

    part: str  # "face", "left_hand", "pose" or "right_hand"
    index: int


def parse_joint(name: str) -> Joint | None:
    """A MediaPipe landmark name as (part, index); None for any other name.

    Known: ``left_hand_<i>`` / ``right_hand_<i>`` (0-20), ``pose_<i>`` (0-32) and
    ``pose_<name>`` of POSE_NAMES (``pose_left_shoulder`` is pose 11), ``face_<i>``
    (0-467).
    """
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    part, rest = match.groups()
    if rest.isdigit() and rest == str(int(rest)):
        index = int(rest)
        return Joint(part, index) if index < PART_SIZES[part] else None
    if part == "pose" and rest in POSE_NAMES:
        return Joint(part, POSE_NAMES.index(rest))
    return None


def landmark_key(name: str) -> Joint | str:
    """What a landmark is, whoever named it: MediaPipe's (part, index) for its names
    (``pose_11`` and ``pose_left_shoulder`` are one key), else the name itself."""
    return parse_joint(name) or name


def match_landmarks(names: Sequence[str], wanted: Sequence[str], what: str) -> list[int]:
    """For each of ``wanted`` (a checkpoint's landmarks, in its order), its index among
    ``names`` (the input's), matched by meaning (``landmark_key``).

    Raises:
        DataError: naming the wanted landmarks the input lacks.
    """
    index: dict[Joint | str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(landmark_key(name), i)
    missing = [name for name in wanted if landmark_key(name) not in index]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5
                                          else "")
        raise DataError(f"{what}: lacks {len(missing)} of the {len(wanted)} landmarks the "
                        f"checkpoint takes: {shown}",
                        hint="Give sequences with the landmarks the checkpoint was trained on "
                             "(a wider [data] landmarks selection when reading them).")
    return [index[landmark_key(name)] for name in wanted]


def mirror_name(name: str) -> str:
    """The name of a landmark's mirror image: ``left`` and ``right`` swapped in the
    name, and MediaPipe's pose points named by index swapped by index (``pose_11`` is
    the left shoulder, ``pose_12`` the right). A name without a side is its own."""
    joint = parse_joint(name)
    if joint is not None and joint.part == "pose" and name == f"pose_{joint.index}":
        return f"pose_{POSE_MIRROR[joint.index]}"
    return name.replace("left", "\0").replace("right", "left").replace("\0", "right")


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


def select_named(joints: Sequence[str], text: str) -> tuple[int, ...] | None:
    """Which of an ``.npz`` file's landmarks a selection keeps, in the file's order.

    The corpus loaders' rule: the groups of ``text``, the pose's UPPER_BODY points, the
    LIPS points of the face (when the file has the face). None when some name is not
    MediaPipe's: such data keeps every landmark.

    Raises:
        DataError: for a bad selection, or one that keeps none of the landmarks.
    """
    parsed = [parse_joint(name) for name in joints]
    if not joints or None in parsed:
        return None
    wanted = {(landmark.part, landmark.index) for landmark in select_landmarks(text)}
    kept = tuple(i for i, joint in enumerate(parsed) if tuple(joint) in wanted)
    if not kept:
        parts = sorted({joint.part for joint in parsed})
        raise DataError(f"landmarks {text!r} keep none of the data's {len(joints)} landmarks "
                        f"(it has {', '.join(parts)} points)",
                        hint="Set [data] landmarks to groups the data has, e.g. 'hands'.")
    return kept


@dataclass(frozen=True)
class Hand:
    """One hand of a ``PartsLayout``: indices into the sequence's landmarks."""

    side: str  # "left_hand" or "right_hand"
    points: tuple[int, ...]  # all of its landmarks, its wrist among them
    wrist: int
    # Its size is the mean distance from the wrist to these: the palm's end (landmark 9)
    # when kept, since the palm is rigid and a fist or an open hand has the same one;
    # else every other point of the hand.
    anchors: tuple[int, ...]

    @property
    def shape_points(self) -> tuple[int, ...]:
        """The landmarks its shape keeps (``sequence+hands``): all but the wrist, which is
        always 0 in the hand's own frame."""
        return tuple(i for i in self.points if i != self.wrist)

    @property
    def position_name(self) -> str:
        return position_name(self.side)


@dataclass(frozen=True)
class PartsLayout:
    """Which landmarks of a sequence form the body, each hand and the face, by name.

    Per-part normalisation (``data.parts``) puts the body (pose and any other point
    that is not a hand's or the face's) in a frame fixed on the shoulders, each hand
    in its own frame at its wrist, and the face in its own; each hand's wrist in the
    body frame is appended as one more landmark, ``<side>_hand_position``.
    """

    joints: tuple[str, ...]  # the sequence's landmark names, in its order
    body: tuple[int, ...]
    shoulders: tuple[int, int] | None  # (left, right) when both are among the body's
    hands: tuple[Hand, ...]
    face: tuple[int, ...]
    # ``[data] normalise = "sequence+hands"``: the sequence stays one cloud, and each
    # hand's shape (its points but the wrist, in the hand's own frame) is appended
    shapes: bool = False

    @classmethod
    def of(cls, joints: Sequence[str] | None, *, shapes: bool = False) -> PartsLayout | None:
        """The layout of named landmarks; None when no name is MediaPipe's (such data
        is normalised as one cloud of points)."""
        if not joints:
            return None
        parsed = [parse_joint(name) for name in joints]
        if all(joint is None for joint in parsed):
            return None
        first: dict[tuple[str, int], int] = {}
        for i, joint in enumerate(parsed):
            if joint is not None:
                first.setdefault(tuple(joint), i)
        hands, in_hand = [], set()
        for side in HANDS:
            points = tuple(i for i, joint in enumerate(parsed)
                           if joint is not None and joint.part == side)
            wrist = first.get((side, WRIST))
            if wrist is None or len(points) < 2:
                continue  # a hand without its wrist (or only that) has no frame of its own
            palm = first.get((side, PALM_END))
            anchors = (palm,) if palm is not None else tuple(i for i in points if i != wrist)
            hands.append(Hand(side, points, wrist, anchors))
            in_hand.update(points)
        face = tuple(i for i, joint in enumerate(parsed)
                     if joint is not None and joint.part == "face")
        body = tuple(i for i in range(len(joints)) if i not in in_hand and i not in face)
        left, right = (first.get(("pose", index)) for index in SHOULDERS)
        shoulders = (left, right) if left is not None and right is not None else None
        return cls(tuple(joints), body, shoulders, tuple(hands), face, shapes)

    @property
    def mode(self) -> str:
        """The ``[data] normalise`` value this layout serves."""
        return "sequence+hands" if self.shapes else "parts"

    @property
    def prepared_joints(self) -> tuple[str, ...]:
        """The names of the normalised landmarks: the sequence's, then the positions
        (``parts``) or the hands' shapes (``sequence+hands``: ``left_hand_shape_8`` is
        landmark 8 of the left hand in that hand's frame)."""
        if not self.shapes:
            return self.joints + tuple(hand.position_name for hand in self.hands)
        return self.joints + tuple(  # a hand's points are named <side>_<index>
            shape_name(hand.side, self.joints[i].removeprefix(hand.side + "_"))
            for hand in self.hands for i in hand.shape_points)


def normalisation_layout(joints: Sequence[str] | None, normalise: str) -> PartsLayout | None:
    """The layout ``[data] normalise`` follows: a ``PartsLayout`` for ``parts`` and
    ``sequence+hands``; None for ``sequence`` and for data without MediaPipe names (one
    cloud either way)."""
    if normalise == "sequence":
        return None
    return PartsLayout.of(joints, shapes=normalise == "sequence+hands")


def problems(text: str) -> list[str]:
    """What is wrong with a selection, for config checking (empty when fine)."""
    try:
        parse_landmarks(text)
    except DataError:
        return [f"must join groups of {', '.join(GROUPS)} with '+', e.g. {DEFAULT_LANDMARKS!r}"]
    return []
