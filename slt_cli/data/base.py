"""The in-memory form every data source produces: plain numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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

    @property
    def num_sequences(self) -> int:
        return int(self.x.shape[0])


# Landmark coordinates are image-normalised (MediaPipe: about 0..1), pixels (OpenPose:
# thousands at most) or metres; anything beyond this is a broken recording or a broken
# file, and would make training diverge rather than learn.
MAX_COORDINATE = 1e6
# Class labels: more than this is a broken file, not a vocabulary (GISLR has 250 signs).
MAX_CLASSES = 100_000


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
