"""A folder of ``.pose`` files (the ``pose-format`` package's format) and a ``labels.csv``.

``labels.csv`` has the columns ``file`` (relative to the folder) and ``label``, and
optionally ``signer`` and ``split`` (train / val / test). Classes are the distinct
labels, sorted. Files from MediaPipe Holistic (components ``POSE_LANDMARKS``,
``FACE_LANDMARKS``, ``LEFT_HAND_LANDMARKS``, ``RIGHT_HAND_LANDMARKS``) keep the
``[data] landmarks`` selection, named as GISLR's are; files of any other layout keep
every point, named ``<component>_<index>`` in lower case (so OpenPose's
``hand_left_keypoints_2d_0`` pairs with ``hand_right_keypoints_2d_0`` for mirroring).
The first person of each file is used; masked points (confidence 0) are missing.
Needs pose-format (``pip install -e ".[pose]"``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from slt_cli.common.files import read_bounded, read_csv
from slt_cli.data.base import listing_row, signer_ids
from slt_cli.data.cache import Corpus
from slt_cli.data.landmarks import PART_SIZES, canonical_landmarks, select_landmarks
from slt_cli.errors import DataError, UnreadableFile

LISTING = "labels.csv"
HOLISTIC = {"face": "FACE_LANDMARKS", "left_hand": "LEFT_HAND_LANDMARKS",
            "pose": "POSE_LANDMARKS", "right_hand": "RIGHT_HAND_LANDMARKS"}
Layout = tuple[tuple[str, int], ...]  # (component name, number of points) in file order


def scan_pose(root: Path, landmarks: str) -> Corpus:
    """Read and check ``labels.csv`` and the first file's header.

    Raises:
        DataError: naming the file (and line) that is missing or wrong.
    """
    listing = root / LISTING
    if not listing.is_file():
        raise DataError(f"{root}: no {LISTING}",
                        hint=f"A pose folder holds .pose files and {LISTING} with the columns "
                             "file, label and optionally signer, split.")
    files, labels, signers, splits = [], [], [], []
    fields, rows = read_csv(listing)
    missing = [c for c in ("file", "label") if c not in fields]
    if missing:
        raise DataError(f"{listing}: missing column(s) {', '.join(missing)}",
                        hint=f"{LISTING} needs file and label (signer, split optional).")
    for line, row in enumerate(rows, start=2):
        name, label, split = listing_row(listing, line, row, "file", "split" in fields)
        files.append(name)
        labels.append(label)
        signers.append(row.get("signer") or "")
        splits.append(split)
    if not files:
        raise DataError(f"{listing}: lists no files")
    first = root / files[0]
    if not first.is_file():
        raise DataError(f"{first}: no such file (listed in {listing})")
    layout, channels = _header(first)
    names, slots = _selection(layout, landmarks)
    classes = tuple(sorted(set(labels)))
    index = {label: i for i, label in enumerate(classes)}
    signer, signer_names = signer_ids(signers) if "signer" in fields else (None, None)
    return Corpus(
        kind="pose", root=root, sequences=tuple(files),
        key_files=(LISTING, *sorted(set(files))), listing=LISTING,
        y=np.asarray([index[label] for label in labels], np.int64), classes=classes,
        signer=signer, signer_names=signer_names,
        split=np.asarray(splits) if "split" in fields else None,
        joints=names, channels=channels,
        settings=canonical_landmarks(landmarks) if _is_holistic(layout) else "all",
        reader=functools.partial(read_pose, layout=layout, slots=slots, channels=channels))


def read_pose(path: Path, *, layout: Layout, slots: np.ndarray, channels: int) -> np.ndarray:
    """The kept points of a file's first person as float32 ``(T, J, C)``, NaN = missing.

    Raises:
        DataError: naming the file, when unreadable, empty or of another layout.
    """
    pose = _read(path)
    found = tuple((c.name, len(c.points)) for c in pose.header.components)
    if found != layout:
        raise DataError(f"{path}: its components differ from the other files' "
                        f"({', '.join(n for n, _ in found)})",
                        hint="Every file of a folder must come from the same pose estimator.")
    data = pose.body.data
    if data.ndim != 4 or data.shape[0] == 0 or data.shape[1] == 0:
        raise DataError(f"{path}: holds no frames", hint=f"Remove it from {LISTING}.")
    person = np.ma.filled(data[:, 0, :, :channels].astype(np.float32), np.nan)
    person = np.where(np.isfinite(person), person, np.nan)
    return np.ascontiguousarray(person[:, slots])


def read_pose_input(path: Path, landmarks: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """One ``.pose`` file on its own (``slt predict``): MediaPipe Holistic files keep
    the ``landmarks`` selection, other layouts every point; float32 ``(T, J, C)`` and
    the points' names.

    Raises:
        DataError: naming the file, when unreadable or empty.
    """
    layout, channels = _header(path)
    names, slots = _selection(layout, landmarks)
    return read_pose(path, layout=layout, slots=slots, channels=channels), names


def _read(path: Path) -> Any:
    """A parsed ``pose_format.Pose``; any parser failure becomes a DataError naming the file."""
    from pose_format import Pose

    try:
        blob = read_bounded(path, "data")  # a FIFO or a device is refused, never read
    except UnreadableFile as exc:
        raise DataError(str(exc)) from None
    try:
        return Pose.read(blob)
    except Exception as exc:  # pose-format raises whatever its parser hits
        raise DataError(f"{path}: not a readable .pose file ({type(exc).__name__}: {exc})"
                        ) from None


def _header(path: Path) -> tuple[Layout, int]:
    pose = _read(path)
    layout = tuple((c.name, len(c.points)) for c in pose.header.components)
    dims = pose.header.num_dims()
    if not layout or dims < 2:
        raise DataError(f"{path}: has no points with 2 or 3 coordinates")
    return layout, min(dims, 3)


def _is_holistic(layout: Layout) -> bool:
    sizes = dict(layout)
    return all(sizes.get(component, 0) >= PART_SIZES[part]
               for part, component in HOLISTIC.items())


def _selection(layout: Layout, landmarks: str) -> tuple[tuple[str, ...], np.ndarray]:
    """Joint names and their indices among a frame's points."""
    offsets, start = {}, 0
    for name, count in layout:
        offsets.setdefault(name, start)
        start += count
    if _is_holistic(layout):
        chosen = select_landmarks(landmarks)
        slots = [offsets[HOLISTIC[lm.part]] + lm.index for lm in chosen]
        return tuple(lm.name for lm in chosen), np.asarray(slots, np.int64)
    return _all_points(layout), np.arange(start, dtype=np.int64)


def _all_points(layout: Layout) -> tuple[str, ...]:
    return tuple(f"{name.lower()}_{i}" for name, count in layout for i in range(count))
