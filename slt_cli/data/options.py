"""What the data readers take from a ``[data]`` table, without knowing the config.

The config (``cfg.settings.DataConfig``) stands above the readers, since checking a
``[data]`` table asks them what they accept; the readers see a table as anything with
its fields (``DataSettings``), and a frame-folder or OpenPose reader as its
``ReadOptions``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol


class DataSettings(Protocol):
    """The ``[data]`` fields the readers use (``cfg.settings.DataConfig`` documents each)."""

    source: str
    val_fraction: float
    frames: int
    motion: bool
    landmarks: str
    normalise: str
    coordinates: str
    folds: int
    fold: int
    layout: str
    signer_from: str
    min_confidence: float
    person: str


@dataclass(frozen=True)
class ReadOptions:
    """How a reader takes a source apart, beyond the landmark selection: the
    ``[data]`` settings that change what a frame-folder or OpenPose corpus reads to
    (see ``cfg.settings.DataConfig``, where each is documented)."""

    layout: str = "auto"  # mediapipe: the order of a frame's parts, or auto-detected
    signer_from: str = "csv"  # mediapipe: signers.csv, or "top" (one per top folder)
    min_confidence: float = 0.0  # openpose: points at or below this are missing
    person: str = "first"  # openpose: the first person of a frame, or the "best"

    @classmethod
    def of(cls, data: DataSettings) -> ReadOptions:
        """The options a ``[data]`` table (a run's, or a checkpoint's) sets."""
        return cls(**{f.name: getattr(data, f.name) for f in dataclasses.fields(cls)})
