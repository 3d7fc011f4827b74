"""Sequences to classify, from the files ``slt predict`` takes.

- ``.npz``: ``x`` (N, T, J, C) float, NaN = missing; optional ``lengths`` (else the
  length is read from the NaN padding, as for training data), optional ``y`` with
  optional ``classes`` (the true labels, shown beside the predictions), optional
  ``joints``: with them, the checkpoint's landmarks are picked by name (as training
  picked them). Zero-filled landmarks are missing, as in training data. Other arrays
  of the training format (``split``, ``signer``) are ignored.
- ``.parquet``: one GISLR sequence (Kaggle's schema), its landmarks picked as the
  checkpoint's ``[data] landmarks`` picked them.
- ``.pose``: one pose-format file; MediaPipe Holistic files keep the same selection,
  other layouts every point.
- a video clip (``.mp4``, ...): read by ``slt predict`` itself (``video.scoring``),
  found here in folders like the rest.
- a folder of one sequence's frames: ``<frame>.npy`` MediaPipe vectors (as in
  ``mediapipe:DIR``; their order found from the frames unless the checkpoint's
  ``[data] layout`` states it) or OpenPose ``*_keypoints.json`` (as in ``openpose:DIR``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slt_cli.common.files import open_regular
from slt_cli.data.base import far_coordinate
from slt_cli.data.landmarks import match_landmarks
from slt_cli.data.sources import ReadOptions, input_folders, input_source, input_suffixes
from slt_cli.errors import DataError, UnreadableFile


@dataclass(frozen=True)
class Sequences:
    """Raw sequences of one input file."""

    source: Path
    x: np.ndarray  # float32 (N, T, J, C), NaN = missing or padding
    lengths: np.ndarray  # int64 (N,)
    labels: tuple[str | None, ...] | None  # the true label of each, when the file says
    notes: tuple[str, ...] = ()  # what reading changed (zeros made missing, landmarks picked)

    def __len__(self) -> int:
        return int(self.x.shape[0])


MAX_FOUND = 100_000  # sequences one folder may hold for `slt predict DIR`
# What `slt extract DIR` and `slt predict DIR` take for a clip (any case).
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def is_video(path: Path) -> bool:
    """Whether ``path`` is named like a video clip."""
    return path.suffix.casefold() in VIDEO_SUFFIXES


def find_inputs(path: Path, classes: tuple[str, ...]) -> list[tuple[Path, str | None]]:
    """What ``slt predict PATH`` classifies: ``path`` itself when it is a file or one
    sequence's frame folder; for any other folder, every such file and sequence folder
    under it (hidden folders and links skipped, in sorted order), each with its label
    when a folder above it is named like one of ``classes`` (``<sign>/<sequence>/``).

    Raises:
        DataError: for a folder that holds nothing slt can classify.
    """
    if not path.is_dir() or input_source(path) is not None:
        return [(path, None)]
    known = {name.casefold(): name for name in classes}
    found: list[tuple[Path, str | None]] = []
    suffixes = set(input_suffixes())

    def walk(folder: Path, label: str | None) -> None:
        try:
            entries = sorted(folder.iterdir())
        except OSError as exc:
            raise DataError(f"{folder}: cannot be listed ({exc.strerror or exc})") from None
        for entry in entries:
            if entry.name.startswith(".") or entry.is_symlink():
                continue
            if len(found) >= MAX_FOUND:
                raise DataError(f"{path}: holds more than {MAX_FOUND} sequences",
                                hint="Give a smaller folder, or convert it with "
                                     "`slt data convert` and predict on the .npz.")
            here = known.get(entry.name.casefold(), label)
            if entry.is_dir():
                if input_source(entry) is not None:
                    found.append((entry, label))
                else:
                    walk(entry, here)
            elif entry.suffix in suffixes or is_video(entry):
                found.append((entry, label))

    walk(path, None)
    if not found:
        raise DataError(f"{path}: holds no sequence slt can classify",
                        hint=f"Give {', '.join(input_suffixes())} files, or folders of "
                             f"frames: {', '.join(input_folders())}.")
    return found


def read_sequences(path: Path, *, landmarks: str, classes: tuple[str, ...],
                   joints: tuple[str, ...] | None = None,
                   options: ReadOptions | None = None, label: str | None = None) -> Sequences:
    """Read one input file (or folder of one sequence's frames).

    Args:
        path: An ``.npz``, ``.parquet`` or ``.pose`` file, or a folder of frames.
        landmarks: The landmark groups to keep from MediaPipe-named input.
        classes: The checkpoint's class names (name the labels of an ``.npz`` ``y``
            when the file has no ``classes`` of its own).
        joints: The names of the landmarks the checkpoint takes, when it knows them:
            an ``.npz`` with ``joints`` gives exactly these, in this order.
        options: How frame folders are read (the checkpoint's ``[data]`` settings).
        label: The true label of a single sequence, when its folder says it.

    Raises:
        DataError: naming the file, when it is missing, unreadable, of an unknown
            kind or malformed.
    """
    source = input_source(path)
    if source is None:
        what = "folder" if path.is_dir() else f"{path.suffix or 'suffix-less'} file"
        raise DataError(f"{path}: cannot classify a {what}",
                        hint=f"Give {', '.join(input_suffixes())} files, or folders of one "
                             f"sequence's frames: {', '.join(input_folders())}.")
    if not (path.exists() or path.is_symlink()):
        raise DataError(f"{path}: no such file")
    if not path.is_dir():
        try:
            open_regular(path).close()  # a FIFO or a device is refused, never read
        except UnreadableFile as exc:
            raise DataError(str(exc)) from None
    if source.read_input is None:  # an .npz: many sequences, labels, landmark names
        return _read_npz(path, classes, landmarks, joints)
    source.require()
    one, names = source.read_input(path, landmarks, options or ReadOptions())
    if far := far_coordinate(one[None]):
        raise DataError(f"{path}: holds {far}", hint="NaN marks a missing landmark.")
    if joints is not None and tuple(names) != tuple(joints):
        one = np.ascontiguousarray(one[:, match_landmarks(names, joints, str(path))])
    return Sequences(source=path, x=one[None], lengths=np.array([len(one)], np.int64),
                     labels=None if label is None else (label,))


def _read_npz(path: Path, classes: tuple[str, ...], landmarks: str,
              joints: tuple[str, ...] | None) -> Sequences:
    from slt_cli.data.npz import lengths_from_padding, zeros_as_missing
    from slt_cli.data.npzfile import read_npz

    # no pickle; shapes checked against the file before anything is read
    arrays = read_npz(path, ("x", "lengths", "y", "classes", "joints"))
    if "x" not in arrays:
        raise DataError(f"{path}: missing array 'x'",
                        hint="Store the sequences as x, float (N, T, J, C), NaN = missing.")
    x = arrays["x"]
    if x.ndim != 4 or not np.issubdtype(x.dtype, np.floating) or 0 in x.shape[:2]:
        raise DataError(f"{path}: 'x' must be a float array (N, T, J, C) with N, T > 0, "
                        f"got {x.dtype} {x.shape}")
    if far := far_coordinate(x):
        raise DataError(f"{path}: 'x' holds {far}",
                        hint="Fix or leave out that sequence; NaN marks a missing landmark.")
    x = np.where(np.isfinite(x), x, np.nan).astype(np.float32, copy=False)
    x, zeros = zeros_as_missing(x)
    n, frames = x.shape[:2]
    lengths = arrays.get("lengths")
    if lengths is None:
        lengths = lengths_from_padding(x)
    elif (lengths.shape != (n,) or not np.issubdtype(lengths.dtype, np.integer)
          or lengths.min() < 1 or lengths.max() > frames):
        raise DataError(f"{path}: 'lengths' must be ({n},) integers in 1..{frames}")
    x, picked = _pick(path, x, arrays.get("joints"), landmarks, joints)
    return Sequences(source=path, x=x, lengths=lengths.astype(np.int64),
                     labels=_labels(path, arrays, n, classes),
                     notes=tuple(note for note in (zeros and f"{path.name}: {zeros}", picked)
                                 if note))


def _pick(path: Path, x: np.ndarray, names: np.ndarray | None, landmarks: str,
          wanted: tuple[str, ...] | None) -> tuple[np.ndarray, str | None]:
    """The landmarks of ``x`` a checkpoint takes: by the names it was trained on, else
    by its ``landmarks`` selection (MediaPipe names); unnamed input as it is."""
    from slt_cli.data.landmarks import select_named

    if names is None:
        return x, None
    if names.ndim != 1 or len(names) != x.shape[2]:
        raise DataError(f"{path}: 'joints' must name the {x.shape[2]} landmarks of 'x'")
    names = tuple(str(v) for v in names.tolist())
    if wanted is not None:
        kept: Sequence[int] | None = match_landmarks(names, wanted, str(path))
    else:
        kept = select_named(names, landmarks)
    if kept is None:
        return x, None
    return (np.ascontiguousarray(x[:, :, list(kept)]),
            f"{path.name}: took {len(kept)} of {len(names)} landmarks by name")


def _labels(path: Path, arrays: dict[str, np.ndarray], n: int,
            classes: tuple[str, ...]) -> tuple[str | None, ...] | None:
    y = arrays.get("y")
    if y is None:
        return None
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: 'y' must be integers of shape ({n},), got {y.dtype} {y.shape}")
    names = (tuple(str(v) for v in arrays["classes"].tolist())
             if "classes" in arrays and arrays["classes"].ndim == 1 else classes)
    return tuple(names[k] if 0 <= k < len(names) else None for k in y.tolist())
