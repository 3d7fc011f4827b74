"""``mediapipe:DIR``: the tutorial layout ``DIR/<sign>/<sequence>/<frame>.npy`` that
hundreds of projects record MediaPipe Holistic into.

Each frame is one flat vector: pose 33 x (x, y, z, visibility), face 468 x 3, left
hand 21 x 3, right hand 21 x 3 (1662 values), or 1692 (478-point face), 1704 (hands
with a fourth value), 258 (no face), 126 (hands only), with zeros where a part was not
detected. The length narrows the parts; their order is not fixed (projects put the
face second, last or first), so it is found from the data (``detect_order``: pose
visibility lies in [0, 1], the pose nose sits on the face's nose tip, each hand at its
own side's pose wrist) unless ``[data] layout`` states it, or ``DIR/layout.json``
(written by ``slt extract``: see ``stated_options``) does. With signers from the top
folders, each signer's order is found (or read from ``DIR/<signer>/layout.json``) on
its own: people recorded with different programs can be merged into one folder. Sign
folders are matched without regard to case (the class is the lower-cased name); a part
that is all zeros in a frame is missing (NaN); the landmarks are named and selected as
the other corpus loaders name them. Signers come from ``signers.csv`` (``folder,signer``: a sequence
folder or any folder above it) or, with ``[data] signer_from = "top"``, from the top
folders of ``DIR/<signer>/<sign>/<sequence>/<frame>.npy``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from slt_cli.common.files import load_json, open_regular, read_csv
from slt_cli.data.base import MAX_COORDINATE, in_frame_order, signer_ids
from slt_cli.data.cache import Corpus
from slt_cli.data.frameparts import FRAME_PARTS, TUTORIAL, detect_order, part_block
from slt_cli.data.landmarks import PART_SIZES, canonical_landmarks, select_landmarks
from slt_cli.data.options import ReadOptions
from slt_cli.errors import DataError, UnreadableFile

SIGNERS = "signers.csv"
# What `slt extract` writes beside its frame folders: the parts' order (and signers).
LAYOUT_FILE = "layout.json"
LAYOUT_FORMAT = "slt mediapipe frames"
MAX_FRAME_BYTES = 1 << 20  # a frame of 1704 float64 values is 14 KB
OFFSETS = {part: sum(list(PART_SIZES.values())[:i]) for i, part in enumerate(PART_SIZES)}
SAMPLE_SEQUENCES, SAMPLE_FRAMES = 32, 5  # frames read to find the order
SIGNER_SAMPLE = 4  # sequences read at least per signer when each signer's order is found
LAYOUT_HINT = "State the order with --layout or [data] layout, e.g. pose+face+left_hand+right_hand."
NAMED_SIGNERS = 3  # signers named per order in a note; the rest are counted


def layout_problem(text: str) -> str | None:
    """What is wrong with a ``[data] layout`` (None when it is fine)."""
    if text == "auto":
        return None
    parts = text.split("+")
    if len(set(parts)) != len(parts) or not set(parts) <= set(TUTORIAL):
        return (f"must be auto or parts joined with '+', each once, from {', '.join(TUTORIAL)}"
                " (e.g. pose+face+left_hand+right_hand)")
    return None


def scan_mediapipe(root: Path, landmarks: str, options: ReadOptions) -> Corpus:
    """List the frame folders of ``root``, read a sample to tell the frame layout.

    Raises:
        DataError: naming the folder or file that does not fit the layout.
    """
    options, stated_by = stated_options(root, options)
    top = options.signer_from == "top"
    found = _sequence_folders(root, top)
    if not found:
        shape = "<signer>/<sign>/<sequence>" if top else "<sign>/<sequence>"
        raise DataError(f"{root}: holds no {shape}/<frame>.npy folders",
                        hint="The tutorial layout: one folder per sign, one per sequence in "
                             "it, frames 0.npy, 1.npy, ... in that.")
    files = {rel: frame_files(root / rel) for rel, _, _ in found}
    first = root / next(iter(files)) / files[next(iter(files))][0]
    length = len(read_vector(first))
    if length not in FRAME_PARTS:
        raise DataError(f"{first}: holds {length} values; slt knows MediaPipe frames of "
                        f"{', '.join(map(str, FRAME_PARTS))} values",
                        hint="Frames are flat vectors of pose (x, y, z, visibility), face, "
                             "left and right hand (x, y, z).")
    if top and options.layout == "auto":
        orders, note = _signer_orders(root, files, found, length, options)
    else:
        order, how = _order(root, files, length, options.layout, stated_by)
        orders, note = {who: order for _, _, who in found}, _order_note(root, length, order, how)
    order = next(iter(orders.values()))  # every order holds the same parts
    chosen = [lm for lm in select_landmarks(landmarks) if lm.part in order]
    if not chosen:
        raise DataError(f"landmarks {landmarks!r} keep none of {root}'s parts "
                        f"({', '.join(order)})", hint="Set [data] landmarks, e.g. 'hands'.")
    classes = tuple(sorted({sign for _, sign, _ in found}))
    index = {sign: i for i, sign in enumerate(classes)}
    names, listing = (([who for _, _, who in found], "") if top
                      else _signers_from_csv(root, found))
    signer, signer_names = signer_ids(names) if names is not None else (None, None)
    slots = np.asarray([OFFSETS[lm.part] + lm.index for lm in chosen], np.int64)
    if len(set(orders.values())) == 1:
        code = "".join(part[0] for part in order)  # pflr
        reader = functools.partial(read_sequence, length=length, order=order, slots=slots)
    else:  # a code per signer would make the cache's folder name as long as the corpus
        listed = json.dumps(sorted(orders.items())).encode()
        code = f"mixed{hashlib.sha256(listed).hexdigest()[:8]}"
        reader = functools.partial(read_signer_sequence, length=length, orders=orders,
                                   slots=slots)
    return Corpus(
        kind="mediapipe", root=root, sequences=tuple(files),
        key_files=tuple(f"{rel}/{name}" for rel, names in files.items() for name in names)
        + ((listing,) if listing else ()), listing=listing,
        y=np.asarray([index[sign] for _, sign, _ in found], np.int64), classes=classes,
        signer=signer, signer_names=signer_names, split=None,
        joints=tuple(lm.name for lm in chosen), channels=3,
        settings=f"{canonical_landmarks(landmarks)}+{code}{length}+{options.signer_from}",
        reader=reader, notes=(note,))


def read_sequence_input(folder: Path, landmarks: str,
                        options: ReadOptions) -> tuple[np.ndarray, tuple[str, ...]]:
    """One sequence folder on its own (``slt predict``): its kept landmarks as float32
    ``(T, J, 3)`` and their names, the parts' order stated by ``options.layout`` or
    found from its frames.

    Raises:
        DataError: naming the frame file that is missing, unreadable or does not fit.
    """
    names = frame_files(folder)
    length = len(read_vector(folder / names[0]))
    if length not in FRAME_PARTS:
        raise DataError(f"{folder / names[0]}: holds {length} values; slt knows MediaPipe "
                        f"frames of {', '.join(map(str, FRAME_PARTS))} values")
    for above in (folder.parent.parent, folder.parent.parent.parent):  # <sign>/, <signer>/
        if above != folder and (above / LAYOUT_FILE).is_file():
            options = stated_options(above, options)[0]
            break
    order, _ = _order(folder.parent, {folder.name: names}, length, options.layout)
    chosen = [lm for lm in select_landmarks(landmarks) if lm.part in order]
    slots = np.asarray([OFFSETS[lm.part] + lm.index for lm in chosen], np.int64)
    return (read_sequence(folder, length=length, order=order, slots=slots)[0],
            tuple(lm.name for lm in chosen))


def stated_options(root: Path, options: ReadOptions) -> tuple[ReadOptions, str]:
    """``options`` with what ``root/layout.json`` (written by ``slt extract``) states:
    the parts' order when ``options.layout`` is auto, one signer per top folder when it
    says so and no ``signers.csv`` names them; and how a stated order is described.
    A ``layout.json`` of another program (without slt's ``format``) is ignored.

    Raises:
        DataError: when slt's layout file cannot be read or states what slt cannot read.
    """
    path = root / LAYOUT_FILE
    if not (path.exists() or path.is_symlink()):
        return options, "as stated"
    try:
        record = load_json(path)
    except UnreadableFile as exc:
        raise DataError(str(exc), hint="Remove it, or state the order with --layout.") from None
    if not isinstance(record, dict) or record.get("format") != LAYOUT_FORMAT:
        return options, "as stated"
    layout, signer_from = record.get("layout"), record.get("signer_from", "csv")
    if (not isinstance(layout, str) or layout == "auto" or layout_problem(layout)
            or signer_from not in ("csv", "top")):
        raise DataError(f"{path}: states layout {str(layout)[:80]!r} and signers "
                        f"{str(signer_from)[:20]!r}; slt reads a layout such as "
                        "pose+face+left_hand+right_hand and signers csv or top",
                        hint="Remove it, or state the order with --layout.")
    top = signer_from == "top" and not (root / SIGNERS).exists()
    stated = options.layout == "auto"
    return (dataclasses.replace(options, layout=layout if stated else options.layout,
                                signer_from="top" if top else options.signer_from),
            f"as {LAYOUT_FILE} states" if stated else "as stated")


def _sequence_folders(root: Path, top: bool) -> list[tuple[str, str, str]]:
    """(relative sequence folder, class, signer folder) of every sequence, sorted;
    hidden folders (``.slt-cache``) skipped, sign names lower-cased."""
    found = []
    for owner in (_folders(root) if top else [root]):
        who = owner.name if top else ""
        for sign in _folders(owner):
            for sequence in _folders(sign):
                found.append((sequence.relative_to(root).as_posix(), sign.name.casefold(), who))
    return found


def _folders(path: Path) -> list[Path]:
    entries = [Path(e.path) for e in os.scandir(path) if e.is_dir() and not e.name.startswith(".")]
    return sorted(entries, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit()
                                          else 0, p.name.casefold(), p.name))


def frame_files(folder: Path) -> list[str]:
    """The frame files of a sequence folder, in frame order.

    Raises:
        DataError: naming the file that is missing or misnamed.
    """
    numbers: dict[int, str] = {}
    for entry in os.scandir(folder):
        if entry.name.endswith(".npy"):
            stem = entry.name[:-4]
            if not stem.isdigit():
                raise DataError(f"{folder / entry.name}: frame files are named 0.npy, 1.npy, ...")
            if int(stem) in numbers:
                raise DataError(f"{folder}: {numbers[int(stem)]} and {entry.name} are both "
                                f"frame {int(stem)}", hint="Keep one file per frame.")
            numbers[int(stem)] = entry.name
    if not numbers:
        raise DataError(f"{folder}: holds no <frame>.npy files")
    return in_frame_order(folder, numbers, "Put the frame back, or remove the sequence folder.",
                          file_of=lambda number: f"{number}.npy")


def read_vector(path: Path) -> np.ndarray:
    """One frame file as a float64 vector; never unpickled, size checked first.

    Raises:
        DataError: naming the file when it is not a 1-D numeric ``.npy`` array.
    """
    try:
        with open_regular(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_FRAME_BYTES:
                raise DataError(f"{path}: {size} bytes is too large for a frame")
            version = np.lib.format.read_magic(handle)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(handle)
            if dtype.hasobject:
                raise DataError(f"{path}: an object array; slt never unpickles data")
            if dtype.kind not in "fiu":
                raise DataError(f"{path}: holds {dtype} values, not numbers")
            if len(shape) != 1 or shape[0] * dtype.itemsize > size - handle.tell():
                raise DataError(f"{path}: must be a flat vector of numbers, got shape "
                                f"{tuple(shape)} in {size} bytes")
            handle.seek(0)
            vector = np.lib.format.read_array(handle, allow_pickle=False)
    except UnreadableFile as exc:
        raise DataError(str(exc)) from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None
    vector = vector.astype(np.float64)
    far = np.abs(vector) > MAX_COORDINATE  # inf too; NaN is a missing value
    if far.any():
        at = int(np.argmax(far))
        raise DataError(f"{path}: value {at} is {vector[at]:.3g}; coordinates beyond "
                        f"±{MAX_COORDINATE:g} are not keypoints",
                        hint="Re-extract the frame, or remove its sequence folder.")
    return vector


def read_sequence(folder: Path, *, length: int, order: tuple[str, ...],
                  slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One sequence folder's kept landmarks as float32 ``(T, J, 3)``, NaN = missing, and
    per landmark the number of frames in which its part was written as zeros.

    Raises:
        DataError: naming a frame file that is missing, unreadable or of another length.
    """
    frames = []
    for name in frame_files(folder):
        vector = read_vector(folder / name)
        if len(vector) != length:
            raise DataError(f"{folder / name}: holds {len(vector)} values, the other frames "
                            f"{length}", hint="Every frame of a folder tree must be recorded "
                                              "with the same layout.")
        frames.append(vector)
    stacked = np.stack(frames)
    points = holistic(stacked, order)[:, slots]
    zeros = np.zeros(points.shape[:2], bool)
    for part in order:  # which kept points lie in a part the frame held as zeros
        kept = (slots >= OFFSETS[part]) & (slots < OFFSETS[part] + PART_SIZES[part])
        zeros[:, kept] = np.isnan(part_block(stacked, order, part)[:, :1, 0])
    return points.astype(np.float32), zeros.sum(axis=0)


def read_signer_sequence(folder: Path, *, length: int, orders: dict[str, tuple[str, ...]],
                         slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``read_sequence`` of ``DIR/<signer>/<sign>/<sequence>`` in its signer's order."""
    return read_sequence(folder, length=length, order=orders[folder.parent.parent.name],
                         slots=slots)


def holistic(frames: np.ndarray, order: tuple[str, ...]) -> np.ndarray:
    """``(T, values)`` flat frames in ``order`` as ``(T, 543, 3)`` in GISLR's part order,
    NaN for a part the frame lacks or holds as all zeros."""
    out = np.full((len(frames), sum(PART_SIZES.values()), 3), np.nan)
    for part in order:
        block = part_block(frames, order, part)
        kept = min(block.shape[1], PART_SIZES[part])  # a 478-point face keeps the mesh's 468
        out[:, OFFSETS[part]:OFFSETS[part] + kept] = block[:, :kept, :3]
    return out


def _order(root: Path, files: dict[str, list[str]], length: int, layout: str,
           stated_by: str = "as stated", sample: int = SAMPLE_SEQUENCES,
           hint: str = LAYOUT_HINT) -> tuple[tuple[str, ...], str]:
    """The parts' order (stated, else detected from ``sample`` of the sequence folders
    ``files``, relative to ``root``) and how it was found (``stated_by`` when stated).

    Raises:
        DataError: naming ``root`` when a stated order does not fit its frames or none
            fits them well, or the frame that holds another number of values.
    """
    parts = FRAME_PARTS[length]
    if layout != "auto":
        order = tuple(layout.split("+"))
        if set(order) != set(parts):
            raise DataError(f"layout {layout!r} does not fit {root}'s frames of {length} "
                            f"values, which hold {', '.join(parts)}", hint=hint)
        return order, stated_by
    rels = list(files)
    picked = [rels[i] for i in np.linspace(0, len(rels) - 1, min(len(rels), sample), dtype=int)]
    frames = []
    for rel in dict.fromkeys(picked):
        names = files[rel]
        for name in names[::max(1, len(names) // SAMPLE_FRAMES)]:
            vector = read_vector(root / rel / name)
            if len(vector) != length:
                raise DataError(f"{root / rel / name}: holds {len(vector)} values, the other "
                                f"frames {length}", hint="Every frame of a folder tree must be "
                                                         "recorded with the same layout.")
            frames.append(vector)
    order, cost = detect_order(np.stack(frames))
    if "pose" in order and cost > 0.5:
        raise DataError(f"{root}: cannot tell the order of the parts in its {length}-value "
                        f"frames (best guess {'+'.join(order)} fits poorly)", hint=hint)
    return order, ("found from the data" if "pose" in order
                   else "assumed: without the pose the hands cannot be told apart")


def _order_note(root: Path, length: int, order: tuple[str, ...], how: str) -> str:
    """What a user hears about the parts' order of ``root``'s frames."""
    if how.startswith("as "):  # stated
        return f"{root}: frames of {length} values, read as {'+'.join(order)} ({how})"
    return (f"{root}: frames of {length} values in the order {'+'.join(order)} ({how}); "
            "--layout or [data] layout states it")


def _signer_orders(root: Path, files: dict[str, list[str]], found: list[tuple[str, str, str]],
                   length: int, options: ReadOptions
                   ) -> tuple[dict[str, tuple[str, ...]], str]:
    """Each signer folder's parts' order (``DIR/<signer>/layout.json``'s, else found from
    its own frames) and a note: people merged into one folder may have been recorded
    by programs that order the parts differently.

    Raises:
        DataError: naming the signer's folder whose order cannot be told.
    """
    people: dict[str, dict[str, list[str]]] = {}
    for rel, _, who in found:
        people.setdefault(who, {})[rel.partition("/")[2]] = files[rel]
    sample = max(SIGNER_SAMPLE, SAMPLE_SEQUENCES // len(people))
    orders, hows = {}, {}
    for who, theirs in people.items():
        folder = root / who
        stated, stated_by = stated_options(folder, options)
        stated_by = stated_by.replace(LAYOUT_FILE, f"{who}/{LAYOUT_FILE}")
        hint = (f"State its order in {folder / LAYOUT_FILE}: {{\"format\": \"{LAYOUT_FORMAT}\", "
                "\"layout\": \"pose+face+left_hand+right_hand\"}, or one order for every signer "
                "with --layout.")
        orders[who], hows[who] = _order(folder, theirs, length, stated.layout, stated_by,
                                        sample=sample, hint=hint)
    if len(set(orders.values())) == 1 and len(set(hows.values())) == 1:
        return orders, _order_note(root, length, orders[who], hows[who])
    by_order: dict[tuple[str, ...], list[str]] = {}
    for who, order in orders.items():
        by_order.setdefault(order, []).append(who)
    listed = "; ".join(f"{'+'.join(order)} for {_some(names)}" for order, names in by_order.items())
    return orders, (f"{root}: frames of {length} values, each signer's parts in their own order "
                    f"(found from the data or stated by the signer's folder's {LAYOUT_FILE}): "
                    f"{listed}")


def _some(names: list[str]) -> str:
    """Up to ``NAMED_SIGNERS`` names, and how many more."""
    shown = ", ".join(names[:NAMED_SIGNERS])
    more = len(names) - NAMED_SIGNERS
    return f"{shown} and {more} more" if more > 0 else shown


def _signers_from_csv(root: Path, found: list[tuple[str, str, str]]
                      ) -> tuple[list[str] | None, str]:
    """Each sequence's signer named by ``signers.csv`` (None, "" without one)."""
    path = root / SIGNERS
    if not (path.exists() or path.is_symlink()):  # a FIFO or a dangling link is refused
        return None, ""
    try:
        fields, rows = read_csv(path)
    except UnreadableFile as exc:
        raise DataError(str(exc)) from None
    if "folder" not in fields or "signer" not in fields:
        raise DataError(f"{path}: needs the columns folder and signer")
    owners = {}
    for line, row in enumerate(rows, start=2):
        folder, who = (row["folder"] or "").strip().strip("/"), (row["signer"] or "").strip()
        if not folder or not who:
            raise DataError(f"{path}: line {line}: empty folder or signer")
        owners[folder.casefold()] = who
    signers = []
    for rel, _, _ in found:
        steps = rel.casefold().split("/")
        who = next((owners[key] for key in ("/".join(steps[:n]) for n in range(len(steps), 0, -1))
                    if key in owners), None)
        if who is None:
            raise DataError(f"{path}: names no signer for {rel}",
                            hint="Give each sequence folder, or a folder above it, a line "
                                 "folder,signer.")
        signers.append(who)
    return signers, SIGNERS
