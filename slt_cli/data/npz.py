"""The ``.npz`` source: arrays ``x``, ``y`` and optional ``classes``, ``split``,
``signer``, ``lengths``, ``joints``; checked field by field, nothing trusted. Other
arrays (what other tools add) are named in a note and ignored.

Two rules for what MediaPipe-based recorders write (training and ``slt predict``
alike): a landmark whose channels are all exactly 0.0 in a frame was not detected,
so it is missing (NaN); and when every ``joints`` name is MediaPipe's, ``[data]
landmarks`` picks the landmarks as the corpus loaders do (``select_npz``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from slt_cli.common.reporting import Reporter
from slt_cli.data.base import MAX_CLASSES, SPLITS, RawData, far_coordinate, signer_ids
from slt_cli.data.landmarks import select_named
from slt_cli.data.npzfile import member_names, read_npz
from slt_cli.errors import DataError

KNOWN_ARRAYS = ("x", "y", "classes", "split", "signer", "lengths", "joints")


def load_npz(path: Path, reporter: Reporter | None = None) -> RawData:
    """Read and check an ``.npz`` file of keypoint sequences; zero-filled landmarks
    become missing (a note to ``reporter`` says how many there were).

    Raises:
        DataError: naming the file and the array that is wrong.
    """
    if not (path.exists() or path.is_symlink()):
        raise DataError(f"{path}: no such data file", hint="Give a .npz path or 'synthetic'.")
    unknown = sorted(set(member_names(path)) - set(KNOWN_ARRAYS))
    if unknown and reporter is not None:  # other tools' extras (e.g. fps): not ours to refuse
        reporter.note(f"{path.name}: ignored unknown array(s) {', '.join(unknown)}; slt reads "
                      f"{', '.join(KNOWN_ARRAYS)}")
    # no pickle; shapes checked against the file before reading; unknown arrays not read
    arrays = read_npz(path, KNOWN_ARRAYS)

    def fail(message: str) -> DataError:
        return DataError(f"{path}: {message}", hint="The format: docs/data.md, '.npz files'.")
    for required in ("x", "y"):
        if required not in arrays:
            raise fail(f"missing array {required!r}")
    x, y = arrays["x"], arrays["y"]
    if x.ndim != 4 or not np.issubdtype(x.dtype, np.floating):
        raise fail(f"'x' must be a float array (N, T, J, C), got {x.dtype} {x.shape}")
    n, frames, _, channels = x.shape
    if n == 0 or frames == 0 or channels not in (2, 3):
        raise fail(f"'x' must hold N>0 sequences of T>0 frames with C=2 or 3, got {x.shape}")
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise fail(f"'y' must be integers of shape ({n},), got {y.dtype} {y.shape}")
    if y.min() < 0:
        raise fail("'y' holds negative class indices")
    if y.max() >= MAX_CLASSES:
        raise fail(f"'y' holds class {int(y.max())}; slt takes at most {MAX_CLASSES} classes")
    x = x.astype(np.float32, copy=False)
    if np.isinf(x).any():
        raise fail("'x' holds infinite values; use NaN for missing landmarks")
    if far := far_coordinate(x):
        raise fail(f"'x' holds {far}")
    zeros = (x == 0).all(axis=-1).sum(axis=(0, 1)).astype(np.int64)
    x, note = zeros_as_missing(x)
    if note and reporter is not None:
        reporter.note(f"{path.name}: {note}")

    classes = _names(arrays.get("classes"), "classes", fail)
    if classes is None:
        classes = tuple(str(i) for i in range(int(y.max()) + 1))
    if int(y.max()) >= len(classes):
        raise fail(f"'y' holds class {int(y.max())} but 'classes' names only {len(classes)}")
    joints = _names(arrays.get("joints"), "joints", fail)
    if joints is not None and len(joints) != x.shape[2]:
        raise fail(f"'joints' names {len(joints)} landmarks but 'x' has {x.shape[2]}")

    split = arrays.get("split")
    if split is not None:
        split = split.astype(str)
        bad = sorted(set(split.tolist()) - set(SPLITS))
        if split.shape != (n,) or bad:
            raise fail(f"'split' must be ({n},) of {'/'.join(SPLITS)}; found {bad or split.shape}")
    signer, signer_names = arrays.get("signer"), None
    if signer is not None:
        if signer.shape != (n,):
            raise fail(f"'signer' must have shape ({n},), got {signer.shape}")
        signer, signer_names = signer_ids(signer)
    lengths = arrays.get("lengths")
    if lengths is None:
        lengths = lengths_from_padding(x)
    elif (lengths.shape != (n,) or not np.issubdtype(lengths.dtype, np.integer)
          or lengths.min() < 1 or lengths.max() > frames):
        raise fail(f"'lengths' must be ({n},) integers in 1..{frames}")
    raw = RawData(x=x, y=y.astype(np.int64), classes=classes,
                  lengths=lengths.astype(np.int64), split=split, signer=signer, joints=joints,
                  zeros=zeros, signer_names=signer_names)
    return _without_empty(raw, path, fail, reporter)


def _without_empty(raw: RawData, path: Path, fail, reporter: Reporter | None) -> RawData:
    """``raw`` without the sequences that hold no landmark at all: recorders write a clip
    in which nothing was detected as all zeros (or NaN), and such a clip teaches nothing
    and can be scored only by guessing. A note names how many and the first.

    Raises:
        DataError: when no sequence is left.
    """
    empty = np.isnan(raw.x).all(axis=(1, 2, 3))
    if not empty.any():
        return raw
    if empty.all():
        raise fail("no sequence holds any landmark (all NaN or exactly zero)")
    if reporter is not None:
        reporter.note(f"{path.name}: left out {int(empty.sum())} sequence(s) with no landmark "
                      f"at all (all NaN or zero), the first at index {int(np.argmax(empty))}")
    keep = ~empty

    def kept(values: np.ndarray | None) -> np.ndarray | None:
        return None if values is None else values[keep]

    return dataclasses.replace(raw, x=raw.x[keep], y=raw.y[keep], lengths=raw.lengths[keep],
                               split=kept(raw.split), signer=kept(raw.signer))


def zeros_as_missing(x: np.ndarray) -> tuple[np.ndarray, str | None]:
    """``x`` with every landmark whose channels are all exactly 0.0 in a frame set to
    NaN (MediaPipe-based recorders write undetected parts as zeros), and a note saying
    what share of the landmark values that was (None when none). A single 0.0
    coordinate (x = 0 on the image's edge, y not) is a real value and stays."""
    zero = (x == 0).all(axis=-1)  # (N, T, J)
    count = int(zero.sum())
    if not count:
        return x, None
    seen = int((~np.isnan(x).any(axis=-1)).sum())
    x = np.where(zero[..., None], np.float32(np.nan), x)
    return x, (f"{count / seen:.1%} of landmark values were exactly zero and are treated "
               "as missing")


def select_npz(raw: RawData, landmarks: str, reporter: Reporter | None = None) -> RawData:
    """The landmarks ``landmarks`` keeps of data whose ``joints`` are MediaPipe's (a
    note says how many); other data as it is.

    Raises:
        DataError: when the selection keeps none of the landmarks.
    """
    kept = select_named(raw.joints, landmarks) if raw.joints else None
    if kept is None:
        return raw
    if reporter is not None:
        reporter.note(f"kept {len(kept)} of {len(raw.joints)} landmarks ({landmarks}); "
                      "set [data] landmarks to change")
    return dataclasses.replace(raw, x=np.ascontiguousarray(raw.x[:, :, list(kept)]),
                               joints=tuple(raw.joints[i] for i in kept),
                               zeros=None if raw.zeros is None else raw.zeros[list(kept)])


def _names(array: np.ndarray | None, key: str, fail) -> tuple[str, ...] | None:
    if array is None:
        return None
    if array.ndim != 1:
        raise fail(f"{key!r} must be a 1-D array of names")
    if len(array) > MAX_CLASSES:
        raise fail(f"{key!r} holds {len(array)} names; slt takes at most {MAX_CLASSES}")
    names = tuple(str(v) for v in array.tolist())
    seen: set[str] = set()
    for name in names:  # two classes of one name would be merged in every result
        if name in seen:
            raise fail(f"{key!r} names {name!r} twice")
        if not name.isprintable():  # escape sequences would reach the terminal
            raise fail(f"{key!r} holds a name with a control character: {name!r}")
        seen.add(name)
    return names


def lengths_from_padding(x: np.ndarray) -> np.ndarray:
    """Real length = index after the last frame that has any landmark."""
    has_data = ~np.isnan(x).all(axis=(2, 3))
    last = x.shape[1] - np.argmax(has_data[:, ::-1], axis=1)
    return np.where(has_data.any(axis=1), last, 1).astype(np.int64)
