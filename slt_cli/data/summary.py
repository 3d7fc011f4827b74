"""What ``slt data inspect`` reports and what ``slt data convert`` writes, for any source."""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slt_cli.common.files import (
    abandoned_temps,
    check_writable_output,
    create_new,
    fault_point,
    temp_path,
)
from slt_cli.data.base import RawData
from slt_cli.data.cache import Store, iter_blocks
from slt_cli.errors import DataError, StorageError

PART_PREFIXES = ("left_hand", "right_hand", "pose", "face")
MIN_SIGNERS = 2  # per class, for a signer-held-out split to train and validate it


@dataclass(frozen=True)
class Summary:
    """A data source at a glance."""

    source: str
    sequences: int
    classes: int
    signers: int | None  # None when the source does not name signers
    landmarks: int
    channels: int
    per_class: dict[str, float]  # sequences per class: min, median, max
    lengths: dict[str, float]  # frames per sequence: min, p10, median, mean, p90, max
    missing: dict[str, float]  # share of (frame, landmark) entries missing, per group
    splits: dict[str, int] | None  # sequences per split, when the source has its own
    cache: str | None  # the store folder of a corpus
    # share of (frame, landmark) entries the files held as zeros (now missing), per group;
    # None when the source does not say
    zero_filled: dict[str, float] | None = None
    per_signer: dict[str, float] | None = None  # sequences per signer: min, median, max
    signers_per_class: dict[str, float] | None = None  # min, median, max
    # classes signed by fewer than MIN_SIGNERS people: a split that holds out whole
    # signers cannot both train and validate them
    few_signers: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def joint_group(name: str) -> str:
    """``left_hand_4`` -> ``left_hand``, ``pose_left_wrist`` -> ``pose``, ``face_61`` ->
    ``face``; other names lose a trailing ``_<number>``."""
    for prefix in PART_PREFIXES:
        if name.startswith(prefix):
            return prefix
    return re.sub(r"_\d+$", "", name)


def summarise_store(source: str, store: Store) -> Summary:
    """Summary of a converted corpus; reads only its index and manifest."""
    total_frames = int(store.offsets[-1])
    return _summary(source, store.y, store.classes, store.signer, store.split, store.lengths,
                    store.joints, store.frames.shape[2], store.missing, total_frames,
                    str(store.folder), store.zeros)


def summarise_raw(source: str, raw: RawData) -> Summary:
    """Summary of in-memory sequences (synthetic, ``.npz``)."""
    real = np.arange(raw.x.shape[1])[None, :] < raw.lengths[:, None]  # (N, T)
    absent = np.isnan(raw.x).any(axis=-1) & real[:, :, None]
    joints = raw.joints or tuple(f"landmark_{i}" for i in range(raw.x.shape[2]))
    return _summary(source, raw.y, raw.classes, raw.signer, raw.split, raw.lengths, joints,
                    raw.x.shape[3], absent.sum(axis=(0, 1)), int(real.sum()), None, raw.zeros)


def _summary(source: str, y: np.ndarray, classes: tuple[str, ...], signer: np.ndarray | None,
             split: np.ndarray | None, lengths: np.ndarray, joints: tuple[str, ...],
             channels: int, missing: np.ndarray, total_frames: int,
             cache: str | None, zeros: np.ndarray | None = None) -> Summary:
    counts = np.bincount(y, minlength=len(classes))
    groups: dict[str, list[int]] = {}
    for j, name in enumerate(joints):
        groups.setdefault(joint_group(name), []).append(j)

    def shares(per_joint: np.ndarray) -> dict[str, float]:
        return {group: float(per_joint[idx].sum()) / max(1, total_frames * len(idx))
                for group, idx in groups.items()}

    lengths = np.asarray(lengths)
    people = _people(y, classes, signer)
    return Summary(
        source=source, sequences=int(len(y)), classes=len(classes),
        signers=None if signer is None else int(len(np.unique(signer))),
        landmarks=len(joints), channels=int(channels),
        per_class={"min": int(counts.min()), "median": float(np.median(counts)),
                   "max": int(counts.max())},
        lengths={"min": int(lengths.min()), "p10": float(np.percentile(lengths, 10)),
                 "median": float(np.median(lengths)), "mean": float(lengths.mean()),
                 "p90": float(np.percentile(lengths, 90)), "max": int(lengths.max())},
        missing=shares(missing),
        zero_filled=None if zeros is None else shares(zeros),
        **people,
        splits=None if split is None else {str(k): int(v) for k, v in
                                           zip(*np.unique(split, return_counts=True),
                                               strict=True)},
        cache=cache)


def _spread(values: np.ndarray) -> dict[str, float]:
    return {"min": int(values.min()), "median": float(np.median(values)),
            "max": int(values.max())}


def _people(y: np.ndarray, classes: tuple[str, ...],
            signer: np.ndarray | None) -> dict[str, Any]:
    """Sequences per signer, signers per class and the classes too few people sign."""
    if signer is None or not len(y):
        return {}
    _, per_signer = np.unique(signer, return_counts=True)
    pairs = np.unique(np.stack([y, signer]), axis=1)  # distinct (class, signer)
    per_class = np.bincount(pairs[0], minlength=len(classes))
    present = np.bincount(y, minlength=len(classes)) > 0
    few = np.flatnonzero(present & (per_class < MIN_SIGNERS))
    return {"per_signer": _spread(per_signer), "signers_per_class": _spread(per_class[present]),
            "few_signers": [classes[c] for c in few]}


def store_arrays(store: Store) -> tuple[tuple[int, ...], Iterator[np.ndarray], dict[str, Any]]:
    """A store as ``write_npz`` takes it: x's shape, x in NaN-padded blocks, the rest."""
    lengths = store.lengths
    longest = int(lengths.max())
    shape = (len(store), longest, *store.frames.shape[1:])

    def blocks() -> Iterator[np.ndarray]:
        row = int(np.prod(store.frames.shape[1:])) * 4
        for block in iter_blocks(np.arange(len(store)), np.full(len(store), longest), row):
            x, _ = store.padded(block)
            padded = np.full((len(block), *shape[1:]), np.nan, np.float32)
            padded[:, :x.shape[1]] = x
            yield padded

    arrays: dict[str, Any] = {"y": store.y, "classes": np.asarray(store.classes),
                              "lengths": lengths, "joints": np.asarray(store.joints)}
    if store.signer is not None:
        arrays["signer"] = store.signer
    if store.split is not None:
        arrays["split"] = store.split.astype(str)
    return shape, blocks(), arrays


def raw_arrays(raw: RawData) -> tuple[tuple[int, ...], Iterator[np.ndarray], dict[str, Any]]:
    arrays: dict[str, Any] = {"y": raw.y, "classes": np.asarray(raw.classes),
                              "lengths": raw.lengths}
    for name in ("split", "signer"):
        if getattr(raw, name) is not None:
            arrays[name] = getattr(raw, name)
    if raw.joints is not None:
        arrays["joints"] = np.asarray(raw.joints)
    return raw.x.shape, iter([raw.x]), arrays


def check_output(path: Path, *, overwrite: bool = False) -> None:
    """Refuse to replace an existing ``path`` without ``overwrite``; before that, remove
    what a killed ``slt data convert`` to the same file left beside it (slt's temporary
    files whose process is gone, never anyone else's).

    Raises:
        DataError: when ``path`` exists and ``overwrite`` is not set, or is a folder.
    """
    for tmp in abandoned_temps(path.parent, path.name):
        tmp.unlink(missing_ok=True)
    if path.is_dir() and not path.is_symlink():
        raise DataError(f"{path} is a folder; give the .npz file to write")
    check_writable_output(path, replace=True)  # never a link, a FIFO or a device
    if path.exists() and not overwrite:
        raise DataError(f"{path} exists; slt data convert does not replace a file without "
                        "--overwrite", hint="Pass --overwrite to replace it, or choose "
                                            "another output path.")


def write_npz(path: Path, shape: tuple[int, ...], x_blocks: Iterator[np.ndarray],
              arrays: dict[str, Any]) -> int:
    """Stream an ``.npz`` (``x`` float32 block by block, then the small arrays) to a
    temporary file beside ``path``, fsync it and rename it into place. However the
    writing ends short of that (an error, Ctrl-C, SIGTERM), the temporary file goes.

    Returns:
        The file's size in bytes.

    Raises:
        StorageError: when the file cannot be written.
    """
    scratch = temp_path(path)
    try:
        with os.fdopen(create_new(scratch), "wb") as raw, \
                zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            with archive.open("x.npy", "w", force_zip64=True) as member:
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
                          "fortran_order": False, "shape": tuple(int(n) for n in shape)}
                np.lib.format.write_array_header_1_0(member, header)
                for block in x_blocks:
                    member.write(np.ascontiguousarray(block, "<f4").tobytes())
                    fault_point()
            for name, value in arrays.items():
                with archive.open(f"{name}.npy", "w") as member:
                    np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)
        with open(scratch, "rb+") as file:
            os.fsync(file.fileno())
        fault_point()
        os.replace(scratch, path)
    except OSError as exc:
        scratch.unlink(missing_ok=True)
        raise StorageError.writing(path, exc, elsewhere="with another output path") from None
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
    return path.stat().st_size
