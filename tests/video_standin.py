"""A stand-in for MediaPipe and OpenCV: "clips" are small text files naming their frame
count, frames are tiny arrays whose first pixel is the frame's number, and the detector
returns known landmarks (the left hand only on even frames)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from slt_cli.video.backend import Backend, VideoError

MAGIC = "stand-in clip"
SIZES = {"pose": 33, "face": 468, "left_hand": 21, "right_hand": 21}


def write_clip(path: Path, frames: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{MAGIC} {frames}\n", encoding="utf-8")
    return path


class Clip:
    fps = 25.0

    def __init__(self, frames: int) -> None:
        self.frame_count = frames

    def frames(self) -> Iterator[np.ndarray]:
        for number in range(self.frame_count):
            yield np.full((4, 6, 3), number, np.uint8)

    def close(self) -> None:
        pass


def open_clip(source: Path | int) -> Clip:
    text = Path(source).read_text(encoding="utf-8") if isinstance(source, Path) else ""
    if not text.startswith(MAGIC):
        raise VideoError(f"{source}: cannot be opened as a video")
    return Clip(int(text.split()[-1]))


def landmarks(number: int) -> dict[str, np.ndarray | None]:
    """What the detector finds in frame ``number``: (points, 4) per part, or None."""
    rng = np.random.default_rng(number)
    found = {part: np.column_stack([rng.uniform(0.2, 0.8, (n, 3)), np.full(n, 0.9)])
             for part, n in SIZES.items()}
    if number % 2:
        found["left_hand"] = None
    return found


class Detector:
    """Counts the frames it is given, so tests can tell what was extracted again."""

    frames_seen = 0
    stop_after: int | None = None  # raise KeyboardInterrupt after so many frames in all

    def process(self, image: np.ndarray) -> SimpleNamespace:
        Detector.frames_seen += 1
        if Detector.stop_after is not None and Detector.frames_seen > Detector.stop_after:
            raise KeyboardInterrupt
        found = landmarks(int(image[0, 0, 0]))

        def part(values: np.ndarray | None) -> SimpleNamespace | None:
            if values is None:
                return None
            return SimpleNamespace(landmark=[SimpleNamespace(x=x, y=y, z=z, visibility=v)
                                             for x, y, z, v in values])

        return SimpleNamespace(**{f"{name}_landmarks": part(values)
                                  for name, values in found.items()})

    def close(self) -> None:
        pass


def backend(purpose: str = "") -> Backend:
    return Backend(open_clip=open_clip, new_detector=Detector)
