"""Kaggle's Google Isolated Sign Language Recognition corpus (GISLR), as published.

A folder holds ``train.csv`` (``path``, ``participant_id``, ``sequence_id``, ``sign``),
``sign_to_prediction_index_map.json`` (sign -> class index) and one parquet file per
sequence with columns ``frame``, ``row_id``, ``type`` (face, left_hand, pose,
right_hand), ``landmark_index``, ``x``, ``y``, ``z``: 543 rows per frame, NaN where a
part was not detected. Participants are the signers, so a validation split made by
slt holds out whole participants. Needs pyarrow (``pip install -e ".[gislr]"``).
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from slt_cli.common.files import load_json, read_csv
from slt_cli.data.base import signer_ids
from slt_cli.data.cache import Corpus
from slt_cli.data.landmarks import (
    PART_SIZES,
    Landmark,
    canonical_landmarks,
    select_landmarks,
)
from slt_cli.errors import DataError, UnreadableFile

LISTING = "train.csv"
SIGN_MAP = "sign_to_prediction_index_map.json"
LISTING_COLUMNS = ("path", "participant_id", "sequence_id", "sign")
COLUMNS = ("frame", "type", "landmark_index", "x", "y", "z")  # the ones slt reads
PART_OFFSETS = {part: sum(list(PART_SIZES.values())[:i]) for i, part in enumerate(PART_SIZES)}
ROWS_PER_FRAME = sum(PART_SIZES.values())  # 543
MAX_FRAMES = 20_000  # ten minutes at 30 fps; GISLR's longest sign has 537 frames
LAYOUT_HINT = ("A GISLR folder (Kaggle layout) holds train.csv, "
               "sign_to_prediction_index_map.json and the parquet files train.csv names.")


def scan_gislr(root: Path, landmarks: str) -> Corpus:
    """Read and check ``train.csv`` and the sign map of the GISLR folder ``root``.

    Raises:
        DataError: naming the file (and line) that is missing or wrong.
    """
    classes = _read_sign_map(root)
    index = {sign: i for i, sign in enumerate(classes)}
    listing = root / LISTING
    if not listing.is_file():
        raise DataError(f"{root}: no {LISTING} (is this a GISLR folder?)", hint=LAYOUT_HINT)
    paths, labels, signers = [], [], []
    fields, rows = read_csv(listing)
    missing = [c for c in LISTING_COLUMNS if c not in fields]
    if missing:
        raise DataError(f"{listing}: missing column(s) {', '.join(missing)}",
                        hint=f"{LISTING} needs the columns {', '.join(LISTING_COLUMNS)}.")
    for line, row in enumerate(rows, start=2):
        path, sign = row["path"] or "", row["sign"]
        if sign not in index:
            raise DataError(f"{listing}: line {line}: sign {sign!r} is not in {SIGN_MAP}",
                            hint=f"Add it to {SIGN_MAP} or remove the line.")
        if not path or posixpath.isabs(path) or ".." in path.replace("\\", "/").split("/"):
            raise DataError(f"{listing}: line {line}: path {path!r} must be relative to "
                            "the folder, without '..'")
        paths.append(path)
        labels.append(index[sign])
        signers.append(row["participant_id"] or "")
    if not paths:
        raise DataError(f"{listing}: lists no sequences", hint=LAYOUT_HINT)
    chosen = select_landmarks(landmarks)
    slots = landmark_slots(chosen)
    signer, signer_names = signer_ids(signers)
    return Corpus(
        kind="gislr", root=root, sequences=tuple(paths),
        key_files=(LISTING, SIGN_MAP, *sorted(set(paths))), listing=LISTING,
        y=np.asarray(labels, np.int64), classes=classes,
        signer=signer, signer_names=signer_names, split=None,
        joints=tuple(landmark.name for landmark in chosen), channels=3,
        settings=canonical_landmarks(landmarks),
        reader=functools.partial(read_parquet, slots=slots, joints=len(chosen)))


def read_parquet_input(path: Path, landmarks: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """One GISLR parquet file on its own (``slt predict``): the ``landmarks`` selection
    as float32 ``(T, J, 3)``, NaN = missing, and its names.

    Raises:
        DataError: naming the file, for an unreadable file or a wrong schema.
    """
    chosen = select_landmarks(landmarks)
    return (read_parquet(path, slots=landmark_slots(chosen), joints=len(chosen)),
            tuple(lm.name for lm in chosen))


def landmark_slots(chosen: Sequence[Landmark]) -> np.ndarray:
    """For each of a frame's ROWS_PER_FRAME parquet rows, its column among ``chosen``
    (the kept landmarks, in order), or -1 for a row that is not kept."""
    slots = np.full(ROWS_PER_FRAME, -1, np.int64)
    for slot, landmark in enumerate(chosen):
        slots[PART_OFFSETS[landmark.part] + landmark.index] = slot
    return slots


def read_parquet(path: Path, *, slots: np.ndarray, joints: int) -> np.ndarray:
    """One sequence's kept landmarks as float32 ``(T, J, 3)``, NaN = missing.

    Rows are placed by (frame, type, landmark_index), so their order does not matter;
    frames are the file's distinct ``frame`` values, in order.

    A file is read whole, so it is first checked, from its footer, to hold at most
    ``MAX_FRAMES`` frames' rows.

    Raises:
        DataError: naming the file, for an unreadable, oversized or wrongly shaped file.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        absent = [c for c in COLUMNS if c not in parquet.schema_arrow.names]
        if absent:
            raise DataError(f"{path}: missing column(s) {', '.join(absent)}",
                            hint=f"A GISLR file has the columns frame, row_id, type, "
                                 f"landmark_index, x, y, z ({ROWS_PER_FRAME} rows per frame).")
        if parquet.metadata.num_rows > MAX_FRAMES * ROWS_PER_FRAME:
            raise DataError(f"{path}: {parquet.metadata.num_rows:,} rows, more than "
                            f"{MAX_FRAMES:,} frames of {ROWS_PER_FRAME} landmarks",
                            hint="One parquet file holds one sign.")
        table = parquet.read(columns=list(COLUMNS))
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: not a readable parquet file ({exc})") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: holds no frames", hint="Remove it from train.csv.")
    try:
        kinds = table.column("type").combine_chunks()
        if not pa.types.is_dictionary(kinds.type):
            kinds = kinds.dictionary_encode()
        names = kinds.dictionary.to_pylist()
        codes = kinds.indices.to_numpy(zero_copy_only=False)
        index = table.column("landmark_index").to_numpy().astype(np.int64)
        frame = table.column("frame").to_numpy()
        xyz = np.stack([table.column(c).to_numpy().astype(np.float32) for c in "xyz"], axis=-1)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise DataError(f"{path}: columns of the wrong type ({exc})") from None
    unknown = [name for name in names if name not in PART_OFFSETS]
    if unknown:
        raise DataError(f"{path}: unknown landmark type {unknown[0]!r}",
                        hint=f"GISLR types are {', '.join(PART_OFFSETS)}.")
    offsets = np.array([PART_OFFSETS[name] for name in names], np.int64)[codes]
    sizes = np.array([PART_SIZES[name] for name in names], np.int64)[codes]
    if ((index < 0) | (index >= sizes)).any():
        raise DataError(f"{path}: landmark_index out of range for its type")
    frames, row_frame = np.unique(frame, return_inverse=True)
    slot = slots[offsets + index]
    keep = slot >= 0
    out = np.full((len(frames), joints, 3), np.nan, np.float32)
    out[row_frame[keep], slot[keep]] = np.where(np.isfinite(xyz[keep]), xyz[keep], np.nan)
    return out


def _read_sign_map(root: Path) -> tuple[str, ...]:
    path = root / SIGN_MAP
    if not path.is_file():
        raise DataError(f"{root}: no {SIGN_MAP} (is this a GISLR folder?)", hint=LAYOUT_HINT)
    try:
        mapping = load_json(path)
    except UnreadableFile as exc:
        raise DataError(str(exc)) from None
    if (not isinstance(mapping, dict) or not mapping
            or not all(type(v) is int for v in mapping.values())
            or sorted(mapping.values()) != list(range(len(mapping)))):
        raise DataError(f"{path}: must map each sign to a distinct class index 0..K-1")
    return tuple(sorted(mapping, key=mapping.__getitem__))
