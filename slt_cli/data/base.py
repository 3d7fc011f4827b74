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
    """

    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    lengths: np.ndarray
    split: np.ndarray | None = None
    signer: np.ndarray | None = None
    joints: tuple[str, ...] | None = None

    @property
    def num_sequences(self) -> int:
        return int(self.x.shape[0])
