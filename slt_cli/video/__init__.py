"""Video in, landmarks out: ``slt extract``, ``slt predict`` on a clip and ``slt live``.

MediaPipe and OpenCV stay behind two seams in ``backend.py`` (a reader that turns a
clip or a camera into RGB frames, a detector that turns one RGB frame into a
Holistic-like result), so everything else, and the tests, run without them. What is
named like a clip is the inputs' to say (``data.inputs.is_video``), handed on here.

May import: ``errors``, ``common``, ``data``, ``models``, ``cfg``, ``store``, ``run``,
``use``, ``show``.
"""

from __future__ import annotations

from slt_cli.data.inputs import VIDEO_SUFFIXES, is_video

__all__ = ["VIDEO_SUFFIXES", "is_video"]
