"""The two seams between slt and MediaPipe/OpenCV, and what crosses them.

- A ``Clip`` yields RGB frames (uint8 ``(H, W, 3)``) of a video file or a camera;
  ``open_capture`` is OpenCV's.
- A ``Detector`` maps one RGB frame to a Holistic-like result: an object with
  ``pose_landmarks``, ``face_landmarks``, ``left_hand_landmarks`` and
  ``right_hand_landmarks``, each None (not detected) or holding ``.landmark``, a list
  of points with ``x``, ``y``, ``z`` (and ``visibility`` for the pose);
  ``holistic_detector`` is MediaPipe's, one per clip (it tracks from frame to frame).

``frame_vector`` turns such a result into the tutorial's flat 1662-value frame (pose
33 x 4, face 468 x 3, left hand 21 x 3, right hand 21 x 3, zeros for a part not
detected); ``named_landmarks`` turns frames into slt's named landmarks. Tests swap
``load_backend`` for a stand-in that returns known landmarks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from slt_cli.common.extras import require
from slt_cli.common.files import open_regular
from slt_cli.errors import DataError, SltError, UnreadableFile

# The tutorial's frame: (part, points, values per point), in this order.
PARTS = (("pose", 33, 4), ("face", 468, 3), ("left_hand", 21, 3), ("right_hand", 21, 3))
LAYOUT = "+".join(part for part, _, _ in PARTS)  # pose+face+left_hand+right_hand
FRAME_VALUES = sum(points * values for _, points, values in PARTS)  # 1662
RESULT_FIELDS = {"pose": "pose_landmarks", "face": "face_landmarks",
                 "left_hand": "left_hand_landmarks", "right_hand": "right_hand_landmarks"}
MODEL_COMPLEXITY = 1  # the one pose model mediapipe 0.10.21's wheel carries (0, 2 download)
MAX_CLIP_FRAMES = 200_000  # almost two hours at 30 frames/s; a longer clip is refused


class VideoError(DataError):
    """A clip or camera that cannot be opened or decoded."""


class Clip(Protocol):
    """An opened video file or camera."""

    fps: float  # frames per second the source states (0: unknown)
    frame_count: int  # frames its header states (0: unknown; decoding may give fewer)

    def frames(self) -> Iterator[np.ndarray]:
        """RGB uint8 frames ``(H, W, 3)``, in order, until the source ends."""
        ...

    def close(self) -> None: ...


class Detector(Protocol):
    """MediaPipe Holistic's interface: one RGB frame in, a Holistic-like result out."""

    def process(self, image: np.ndarray) -> Any: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Backend:
    """How clips are opened (a path, or a camera's index) and detectors made."""

    open_clip: Callable[[Path | int], Clip]
    new_detector: Callable[[], Detector]


def load_backend(purpose: str) -> Backend:
    """MediaPipe Holistic and OpenCV, once the ``video`` extra is known to be installed.

    Raises:
        SltError: naming the extra to install when mediapipe or OpenCV is missing.
    """
    require("video", purpose, SltError)
    return Backend(open_clip=open_capture, new_detector=holistic_detector)


def holistic_detector() -> Detector:
    """A fresh MediaPipe Holistic in video mode (it tracks from one frame to the next)."""
    # MediaPipe's C++ side logs several lines per graph to stderr; keep the warnings and
    # info away unless the user asked for them.
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import mediapipe as mp

    return mp.solutions.holistic.Holistic(static_image_mode=False,
                                          model_complexity=MODEL_COMPLEXITY,
                                          refine_face_landmarks=False)


class _Capture:
    """A ``cv2.VideoCapture`` as a ``Clip``."""

    def __init__(self, capture: Any) -> None:
        import cv2

        self.capture = capture
        self.fps = _number(capture.get(cv2.CAP_PROP_FPS))
        self.frame_count = int(_number(capture.get(cv2.CAP_PROP_FRAME_COUNT)))

    def frames(self) -> Iterator[np.ndarray]:
        import cv2

        while True:
            ok, bgr = self.capture.read()
            if not ok or bgr is None:
                return
            if bgr.ndim == 2:
                bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self.capture.release()


def _number(value: float) -> float:
    return float(value) if np.isfinite(value) and 0 < value < 1e9 else 0.0


def open_capture(source: Path | int) -> Clip:
    """A video file (a regular file: a FIFO or a device is refused, never read) or a
    camera (its index) opened with OpenCV.

    Raises:
        VideoError: when it cannot be opened.
    """
    import cv2

    if isinstance(source, Path):
        try:
            open_regular(source).close()
        except UnreadableFile as exc:
            raise VideoError(str(exc)) from None
        capture = cv2.VideoCapture(str(source))
        what = f"{source}: cannot be opened as a video"
    else:
        capture = cv2.VideoCapture(source)
        what = f"camera {source} cannot be opened"
    if not capture.isOpened():
        capture.release()
        raise VideoError(what, hint="Check the file plays (ffprobe), or give another source.")
    return _Capture(capture)


def frame_vector(result: Any) -> np.ndarray:
    """A Holistic-like result as the tutorial's flat float32 frame of FRAME_VALUES
    values; a part not detected (or not of its size, or not finite) is all zeros."""
    out = np.zeros(FRAME_VALUES, np.float32)
    start = 0
    for part, points, values in PARTS:
        found = getattr(result, RESULT_FIELDS[part], None)
        marks = list(getattr(found, "landmark", None) or ())[:points]
        if len(marks) == points:
            fields = ("x", "y", "z", "visibility")[:values]
            block = np.asarray([[getattr(p, f) for f in fields] for p in marks], np.float32)
            if np.isfinite(block).all():
                out[start:start + points * values] = block.ravel()
        start += points * values
    return out


def detected(frames: np.ndarray) -> dict[str, int]:
    """Per part, the number of flat ``(T, FRAME_VALUES)`` frames in which it was found."""
    counts, start = {}, 0
    for part, points, values in PARTS:
        block = frames[:, start:start + points * values]
        counts[part] = int((block != 0).any(axis=1).sum())
        start += points * values
    return counts


def named_landmarks(frames: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Flat ``(T, FRAME_VALUES)`` frames as float32 ``(T, 543, 3)``, NaN where a part was
    not detected, and the landmarks' names, as ``mediapipe:DIR`` reads them."""
    from slt_cli.data.landmarks import PART_SIZES, POSE_NAMES
    from slt_cli.data.mediapipe import holistic

    names = tuple(f"pose_{POSE_NAMES[i]}" if part == "pose" else f"{part}_{i}"
                  for part, size in PART_SIZES.items() for i in range(size))
    points = holistic(np.asarray(frames, np.float64), tuple(p for p, _, _ in PARTS))
    return points.astype(np.float32), names


def read_clip(clip: Clip, detector: Detector,
              progress: Callable[[int, int], None] | None = None,
              stop: Callable[[], bool] | None = None) -> np.ndarray:
    """Every frame of ``clip`` through ``detector``: float32 ``(T, FRAME_VALUES)``.

    Args:
        progress: Called with (frames done, frames expected) after each frame.
        stop: Asked after each frame; True ends the reading with KeyboardInterrupt.

    Raises:
        VideoError: when no frame decodes, or the clip is longer than MAX_CLIP_FRAMES.
    """
    vectors = []
    for image in clip.frames():
        if len(vectors) >= MAX_CLIP_FRAMES:
            raise VideoError(f"longer than {MAX_CLIP_FRAMES:,} frames",
                             hint="Cut the clip into shorter ones.")
        vectors.append(frame_vector(detector.process(np.ascontiguousarray(image))))
        if progress is not None:
            progress(len(vectors), max(clip.frame_count, len(vectors)))
        if stop is not None and stop():
            raise KeyboardInterrupt
    if not vectors:
        raise VideoError("no frame could be decoded")
    return np.stack(vectors)
