"""``openpose:DIR``: one folder per clip of OpenPose's per-frame ``*_keypoints.json``
files, and ``labels.csv`` with the columns ``folder`` and ``label`` (optionally
``signer`` and ``split``).

A frame file holds ``people``, each with ``pose_keypoints_2d`` (BODY_25: 25 x (x, y,
confidence)), ``hand_left_keypoints_2d`` and ``hand_right_keypoints_2d`` (21 each) and
``face_keypoints_2d`` (70). The hands follow the same 21-point model as MediaPipe's
and the body points with a MediaPipe counterpart are named as MediaPipe's, so
``[data] landmarks`` selection, per-part normalisation and mirroring work as for the
other corpora; OpenPose's neck, mid-hip, small toes and 70-point face have no
MediaPipe name and are not read. A point whose confidence is at most ``[data]
min_confidence`` (default 0: OpenPose writes 0, 0, 0 for what it did not see) is
missing. Of several people, the first is read, or with ``[data] person = "best"`` the
one with the highest mean confidence. Frames are ordered by the number in their names
(``<clip>_000000000012_keypoints.json``).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from slt_cli.common.files import load_json, read_csv
from slt_cli.data.base import MAX_COORDINATE, in_frame_order, listing_row, signer_ids
from slt_cli.data.cache import Corpus
from slt_cli.data.landmarks import POSE_NAMES, canonical_landmarks, select_landmarks
from slt_cli.data.options import ReadOptions
from slt_cli.errors import DataError, UnreadableFile

LISTING = "labels.csv"
SUFFIX = "_keypoints.json"
# BODY_25 index -> MediaPipe pose name (the points that have one).
BODY_25 = {0: "nose", 2: "right_shoulder", 3: "right_elbow", 4: "right_wrist",
           5: "left_shoulder", 6: "left_elbow", 7: "left_wrist", 9: "right_hip", 10: "right_knee",
           11: "right_ankle", 12: "left_hip", 13: "left_knee", 14: "left_ankle", 15: "right_eye",
           16: "left_eye", 17: "right_ear", 18: "left_ear", 19: "left_foot_index",
           21: "left_heel", 22: "right_foot_index", 24: "right_heel"}
ARRAYS = {"pose": ("pose_keypoints_2d", 25), "left_hand": ("hand_left_keypoints_2d", 21),
          "right_hand": ("hand_right_keypoints_2d", 21)}
_NUMBER = re.compile(r"(\d+)" + re.escape(SUFFIX) + "$")


def scan_openpose(root: Path, landmarks: str, options: ReadOptions) -> Corpus:
    """Read and check ``labels.csv``; lists each clip's frame files.

    Raises:
        DataError: naming the file (and line) that is missing or wrong.
    """
    listing = root / LISTING
    if not listing.is_file():
        raise DataError(f"{root}: no {LISTING}",
                        hint=f"An openpose folder holds one folder of *{SUFFIX} files per clip "
                             f"and {LISTING} with the columns folder, label (signer, split "
                             "optional).")
    try:
        fields, rows = read_csv(listing)
    except UnreadableFile as exc:
        raise DataError(str(exc)) from None
    missing = [c for c in ("folder", "label") if c not in fields]
    if missing:
        raise DataError(f"{listing}: missing column(s) {', '.join(missing)}")
    folders, labels, signers, splits, key_files = [], [], [], [], []
    for line, row in enumerate(rows, start=2):
        name, label, split = listing_row(listing, line, row, "folder", "split" in fields)
        if not (root / name).is_dir():
            raise DataError(f"{root / name}: no such folder (listed in {listing})")
        key_files += [f"{name}/{file}" for file in frame_files(root / name)]
        folders.append(name)
        labels.append(label)
        signers.append(row.get("signer") or "")
        splits.append(split)
    if not folders:
        raise DataError(f"{listing}: lists no folders")
    chosen = [lm for lm in select_landmarks(landmarks) if _slot(lm.part, lm.index) is not None]
    if not chosen:
        raise DataError(f"landmarks {landmarks!r} keep none of OpenPose's points",
                        hint="OpenPose folders have hands and pose: e.g. 'hands+pose'.")
    classes = tuple(sorted(set(labels)))
    index = {label: i for i, label in enumerate(classes)}
    signer, signer_names = signer_ids(signers) if "signer" in fields else (None, None)
    return Corpus(
        kind="openpose", root=root, sequences=tuple(folders),
        key_files=(LISTING, *key_files), listing=LISTING,
        y=np.asarray([index[label] for label in labels], np.int64), classes=classes,
        signer=signer, signer_names=signer_names,
        split=np.asarray(splits) if "split" in fields else None,
        joints=tuple(lm.name for lm in chosen), channels=2,
        settings=f"{canonical_landmarks(landmarks)}+c{options.min_confidence:g}+{options.person}",
        reader=functools.partial(read_clip, points=tuple(_slot(lm.part, lm.index)
                                                         for lm in chosen),
                                 min_confidence=options.min_confidence, person=options.person))


def read_clip_input(folder: Path, landmarks: str,
                    options: ReadOptions) -> tuple[np.ndarray, tuple[str, ...]]:
    """One clip folder on its own (``slt predict``): float32 ``(T, J, 2)``, NaN = missing,
    and the MediaPipe names of its points.

    Raises:
        DataError: as ``read_clip``, or when the selection keeps none of OpenPose's points.
    """
    chosen = select_landmarks(landmarks)
    points = [_slot(lm.part, lm.index) for lm in chosen]
    if not any(points):
        raise DataError(f"landmarks {landmarks!r} keep none of OpenPose's points")
    names = tuple(lm.name for lm, point in zip(chosen, points, strict=True) if point is not None)
    return read_clip(folder, points=tuple(p for p in points if p is not None),
                     min_confidence=options.min_confidence, person=options.person), names


def _slot(part: str, index: int) -> tuple[str, int] | None:
    """Where a MediaPipe landmark is in an OpenPose frame: (part, index) or None."""
    if part in ("left_hand", "right_hand"):
        return part, index
    if part == "pose":
        for body, name in BODY_25.items():
            if POSE_NAMES[index] == name:
                return part, body
    return None


def frame_files(folder: Path) -> list[str]:
    """A clip's frame files in frame order.

    Raises:
        DataError: naming the folder without frames, or the first frame missing in
            the middle.
    """
    numbered = {}
    for entry in os.scandir(folder):
        match = _NUMBER.search(entry.name)
        if match:
            number = int(match.group(1))
            if number in numbered:
                raise DataError(f"{folder}: {numbered[number]} and {entry.name} are both "
                                f"frame {number}", hint="Keep one file per frame.")
            numbered[number] = entry.name
    if not numbered:
        raise DataError(f"{folder}: holds no *{SUFFIX} files")
    return in_frame_order(folder, numbered,
                          "Put the frame back, or remove the clip from labels.csv.")


def read_clip(folder: Path, *, points: tuple[tuple[str, int], ...], min_confidence: float,
              person: str) -> np.ndarray:
    """One clip's kept points as float32 ``(T, J, 2)``, NaN = missing.

    Raises:
        DataError: naming a frame file that is unreadable or not OpenPose's, or the
            first file of a clip in which no frame has a person.
    """
    files = frame_files(folder)
    out = np.full((len(files), len(points), 2), np.nan, np.float32)
    seen = False
    for t, name in enumerate(files):
        chosen = _person(folder / name, person)
        if chosen is None:
            continue
        seen = True
        for j, (part, index) in enumerate(points):
            x, y, c = chosen[part][index]
            if c > min_confidence:
                out[t, j] = x, y
    if not seen:
        raise DataError(f"{folder / files[0]}: no person in any frame of {folder}",
                        hint="Remove the clip from labels.csv.")
    return out


def _person(path: Path, rule: str) -> dict[str, np.ndarray] | None:
    """The chosen person of one frame file as part -> (points, 3); None when it has none."""
    try:
        frame: Any = load_json(path)
    except UnreadableFile as exc:
        raise DataError(str(exc)) from None
    people = frame.get("people") if isinstance(frame, dict) else None
    if not isinstance(people, list):
        raise DataError(f"{path}: not an OpenPose frame (no 'people' list)")
    if not people:
        return None
    parsed = [_parts(path, one) for one in people]
    if rule == "best":
        return max(parsed, key=lambda one: float(np.mean(
            np.concatenate([part[:, 2] for part in one.values()]))))
    return parsed[0]


def _parts(path: Path, person: Any) -> dict[str, np.ndarray]:
    if not isinstance(person, dict):
        raise DataError(f"{path}: each of 'people' must be an object of keypoint lists, "
                        f"got {type(person).__name__}")
    out = {}
    for part, (key, count) in ARRAYS.items():
        values = person.get(key)
        if values is None or values == []:
            out[part] = np.zeros((count, 3))
            continue
        # true and false are no numbers, though Python counts them as ints
        if (not isinstance(values, list) or len(values) != 3 * count
                or not all(isinstance(v, int | float) and not isinstance(v, bool)
                           for v in values)):
            raise DataError(f"{path}: {key} must be {3 * count} numbers (x, y, confidence "
                            f"for {count} points)")
        points = np.asarray(values, np.float64).reshape(count, 3)
        far = ~(np.abs(points[:, :2]) <= MAX_COORDINATE)  # inf and NaN too
        if far.any():
            point, axis = np.argwhere(far)[0]
            raise DataError(f"{path}: {key} point {point} has {'xy'[axis]} = "
                            f"{points[point, axis]:.3g}; coordinates beyond "
                            f"±{MAX_COORDINATE:g} (or not finite) are not keypoints")
        out[part] = points
    return out
