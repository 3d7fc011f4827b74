"""``slt live``: a checkpoint on a stream of frames (a camera or a clip), through a
sliding window of its frame count, its scores averaged over the last few windows; a
sign is recognised when that average reaches a threshold. Yields one ``LiveStep`` per
frame and never prints; ``sinks.py`` writes what the command asks for."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from slt_cli.use.inference import LoadedModel, predict_probabilities
from slt_cli.video.backend import Clip, Detector, frame_vector, named_landmarks
from slt_cli.video.scoring import pick_landmarks


@dataclass(frozen=True)
class LiveStep:
    """One frame of the stream and what the model made of it so far."""

    frame: int  # 0-based
    seconds: float  # its time in the clip (frames / fps), or since the camera started
    image: np.ndarray  # the RGB frame
    vector: np.ndarray  # its landmarks as the tutorial's flat frame (zeros: not detected)
    top: tuple[tuple[str, float], ...]  # smoothed probabilities; empty until a window fills
    sign: str | None  # the recognised sign: the top class, once at or above the threshold
    changed: bool  # a sign newly recognised (after another sign, or after none)


@dataclass
class LiveTiming:
    """Where the time goes, for the frames-per-second report."""

    frames: int = 0
    seconds: float = 0.0  # wall clock from the first frame asked for to the last done
    landmarks: float = 0.0  # in the detector
    model: float = 0.0  # in the checkpoint

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def live_steps(model: LoadedModel, clip: Clip, detector: Detector, *, window: int,
               smooth: int, threshold: float, top_k: int = 3, max_frames: int | None = None,
               timing: LiveTiming | None = None) -> Iterator[LiveStep]:
    """Recognise signs frame by frame.

    Args:
        window: Frames the model sees at once (the last ``window`` frames).
        smooth: Windows whose probabilities are averaged.
        threshold: The averaged probability at which the top class is recognised.
        max_frames: Stop after this many frames (a camera never ends by itself).
        timing: Filled in as frames go by.

    Raises:
        DataError: when the frames lack the checkpoint's landmarks.
    """
    timing = timing if timing is not None else LiveTiming()
    frames: deque[np.ndarray] = deque(maxlen=window)
    recent: deque[np.ndarray] = deque(maxlen=smooth)
    kept: list[int] | None = None
    last: str | None = None
    start = time.monotonic()
    for number, image in enumerate(clip.frames()):
        if max_frames is not None and number >= max_frames:
            break
        began = time.monotonic()
        vector = frame_vector(detector.process(np.ascontiguousarray(image)))
        detected = time.monotonic()
        points, names = named_landmarks(vector[None])
        if kept is None:
            kept = pick_landmarks(model, names, "the video's landmarks")
            model.check_layout(len(kept), 3, "the video's landmarks")
        frames.append(points[0, kept])
        top: tuple[tuple[str, float], ...] = ()
        stacked = np.stack(frames)
        if len(frames) == window and not np.isnan(stacked).all():
            recent.append(predict_probabilities(model, stacked[None], np.array([window]))[0])
            mean = np.mean(recent, axis=0)
            order = (-mean).argsort(kind="stable")[:top_k]
            top = tuple((model.classes[k], float(mean[k])) for k in order)
        sign = top[0][0] if top and top[0][1] >= threshold else None
        done = time.monotonic()
        timing.frames += 1
        timing.landmarks += detected - began
        timing.model += done - detected
        timing.seconds = done - start
        yield LiveStep(frame=number, seconds=number / clip.fps if clip.fps else done - start,
                       image=image, vector=vector, top=top, sign=sign,
                       changed=sign is not None and sign != last)
        last = sign
