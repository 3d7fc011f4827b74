"""What ``slt live`` writes besides its lines: JSON lines (one object per frame) and an
annotated video (headless: the frames with the recognised sign and the landmarks drawn,
into a file, never a window). Both are written under temporary names and renamed into
place when the session ends (a clip's end, ``--max-frames`` or Ctrl-C); on an error or
SIGTERM the temporary file goes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from slt_cli.common.files import create_new, fsync_directory, temp_path
from slt_cli.errors import StorageError
from slt_cli.video.backend import PARTS
from slt_cli.video.live import LiveStep

# Points drawn on the annotated video: the hands and the upper body, not the face mesh.
DRAWN = {"pose": range(11, 25), "left_hand": range(21), "right_hand": range(21)}
COLOURS = {"pose": (255, 255, 255), "left_hand": (0, 200, 255), "right_hand": (255, 120, 0)}


def step_record(step: LiveStep) -> dict[str, Any]:
    """One frame as a JSON line: frame, seconds, sign (or null) and the top classes."""
    return {"frame": step.frame, "seconds": round(step.seconds, 4), "sign": step.sign,
            "top": [{"class": name, "probability": round(p, 6)} for name, p in step.top]}


class JsonLines:
    """``--jsonl FILE``: one ``step_record`` per line."""

    def __init__(self, path: Path) -> None:
        self.path, self.tmp = path, temp_path(path)
        try:
            self.handle = os.fdopen(create_new(self.tmp), "w", encoding="utf-8")
        except OSError as exc:
            raise StorageError.writing(path, exc, elsewhere="with another path") from None

    def write(self, step: LiveStep) -> None:
        self.handle.write(json.dumps(step_record(step), sort_keys=True) + "\n")

    def commit(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.tmp, self.path)
        fsync_directory(self.path.parent)

    def abort(self) -> None:
        self.handle.close()
        self.tmp.unlink(missing_ok=True)


class AnnotatedVideo:
    """``--video FILE``: the frames with the landmarks and the recognised sign drawn
    (OpenCV's ``mp4v`` codec; the container follows the file's suffix)."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = path, fps or 30.0
        self.tmp = temp_path(path).with_name(temp_path(path).name + path.suffix)
        self.writer: Any = None

    def write(self, step: LiveStep) -> None:
        import cv2

        image = cv2.cvtColor(np.ascontiguousarray(step.image), cv2.COLOR_RGB2BGR)
        height, width = image.shape[:2]
        if self.writer is None:
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"),
                                          self.fps, (width, height))
            if not self.writer.isOpened():
                raise StorageError(f"cannot write the video {self.path} (OpenCV could not "
                                   f"open a writer for {self.path.suffix or 'no suffix'})",
                                   hint="Name an .mp4 or .avi file.", machine_fault=False)
        start = 0
        for part, points, values in PARTS:
            block = step.vector[start:start + points * values].reshape(points, values)
            start += points * values
            if part in DRAWN and block.any():
                for x, y in block[list(DRAWN[part]), :2]:
                    if 0 <= x <= 1 and 0 <= y <= 1:
                        cv2.circle(image, (int(x * width), int(y * height)), 2,
                                   COLOURS[part], -1)
        text = (f"{step.sign} {step.top[0][1]:.2f}" if step.sign is not None
                else f"({step.top[0][0]} {step.top[0][1]:.2f})" if step.top else "...")
        cv2.putText(image, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 0), 2)
        self.writer.write(image)

    def commit(self) -> None:
        if self.writer is None:
            return
        self.writer.release()
        os.replace(self.tmp, self.path)
        fsync_directory(self.path.parent)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.release()
        self.tmp.unlink(missing_ok=True)
