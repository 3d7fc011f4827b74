"""Video in, landmarks out: ``slt extract``, ``slt predict`` on a clip and ``slt live``.

MediaPipe and OpenCV stay behind two seams in ``backend.py`` (a reader that turns a
clip or a camera into RGB frames, a detector that turns one RGB frame into a
Holistic-like result), so everything else, and the tests, run without them. This
module is light: commands import it to tell a video file by its name.
"""

from __future__ import annotations

from pathlib import Path

# What `slt extract DIR` and `slt predict DIR` take for a clip (any case).
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def is_video(path: Path) -> bool:
    """Whether ``path`` is named like a video clip."""
    return path.suffix.casefold() in VIDEO_SUFFIXES
