"""The in-memory form every data source produces: plain numpy arrays."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slt_cli.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class RawData:
    """Keypoint sequences as a source delivers them, before any preprocessing.

    Attributes:
        x: float32 ``(N, T, J, C)``; NaN marks a missing landmark or padding after
            a sequence's end.
        y: int64 ``(N,)`` class indices into ``classes``.
        classes: The K label names.
        lengths: int64 ``(N,)`` number of real frames of each sequence (<= T).
        split: ``(N,)`` str array of "train" / "val" / "test", or None when the
            source has no split of its own.
        signer: int64 ``(N,)`` signer ids, or None when unknown.
        signer_names: Each id's name as the source gave it (``signer_names[id]``), or
            None when the ids are the source's own (generated data).
        joints: The J landmark names, or None when the source does not name them.
        zeros: int64 ``(J,)``: the frames in which each landmark was written as zeros
            (and made missing), or None when the source does not say.
    """

    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    lengths: np.ndarray
    split: np.ndarray | None = None
    signer: np.ndarray | None = None
    joints: tuple[str, ...] | None = None
    zeros: np.ndarray | None = None
    signer_names: tuple[str, ...] | None = None

    @property
    def num_sequences(self) -> int:
        return int(self.x.shape[0])


# Landmark coordinates are image-normalised (MediaPipe: about 0..1), pixels (OpenPose:
# thousands at most) or metres; anything beyond this is a broken recording or a broken
# file, and would make training diverge rather than learn.
MAX_COORDINATE = 1e6
# Class labels: more than this is a broken file, not a vocabulary (GISLR has 250 signs).
MAX_CLASSES = 100_000


def signer_ids(values: Sequence[Any] | np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Each sequence's signer (any ids or names a source gives) as an int64 index into
    the distinct signers, sorted, and their names as text: ``--by signer`` shows those."""
    names, ids = np.unique(np.asarray(values), return_inverse=True)
    return ids.astype(np.int64).reshape(-1), tuple(str(name) for name in names)


def far_coordinate(x: np.ndarray) -> str | None:
    """Where ``x`` (N, T, J, C) first holds a finite value beyond ±MAX_COORDINATE, said
    for a user ("1e+30 at sequence 3, frame 0, landmark 2, channel 1"); None when nowhere."""
    far = (x > MAX_COORDINATE) | (x < -MAX_COORDINATE)
    far &= np.isfinite(x)
    if not far.any():
        return None
    where = np.unravel_index(int(np.argmax(far)), x.shape)
    return (f"{float(x[where]):.3g} at sequence {where[0]}, frame {where[1]}, landmark "
            f"{where[2]}, channel {where[3]}; coordinates beyond ±{MAX_COORDINATE:g} are not "
            "keypoints")


def listing_row(listing: Path, line: int, row: Mapping[str, str | None], column: str,
                has_split: bool) -> tuple[str, str, str | None]:
    """One row of a corpus listing (``metadata.csv``, ``labels.csv``): the relative path
    in ``column``, the label, and the split when the listing has that column.

    Raises:
        DataError: naming the listing and line of a path that is absolute or climbs out
            with ``..``, an empty label, or an unknown split.
    """
    name, label = (row[column] or "").strip().strip("/"), (row["label"] or "").strip()
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise DataError(f"{listing}: line {line}: {column} {name!r} must be relative to "
                        "the folder, without '..'")
    if not label:
        raise DataError(f"{listing}: line {line}: empty label")
    split = (row.get("split") or "").strip() if has_split else None
    if split is not None and split not in SPLITS:
        raise DataError(f"{listing}: line {line}: split {split!r} is not one of "
                        f"{', '.join(SPLITS)}")
    return name, label, split


def in_frame_order(folder: Path, numbered: Mapping[int, str], hint: str,
                   file_of: Callable[[int], str] | None = None) -> list[str]:
    """The frame files of ``folder`` (frame number -> file name) in order.

    Raises:
        DataError: naming the first frame missing between the first and the last (its
            file, when ``file_of`` says how frame files are named).
    """
    order = sorted(numbered)
    for expected, number in enumerate(order, start=order[0]):
        if number != expected:
            where = (f"{folder / file_of(expected)}: missing" if file_of
                     else f"{folder}: frame {expected} is missing")
            raise DataError(f"{where} (frames {order[0]} to {order[-1]} of {folder} are "
                            "there but not this one)", hint=hint)
    return [numbered[n] for n in order]
