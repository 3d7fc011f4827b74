"""The one registry of data sources: every kind of ``--data`` spec, and every kind of
file ``slt predict`` reads, is a ``Source`` record here.

Training (``data.load_data``), ``slt data inspect``/``convert``, ``slt export``'s
reference check and ``slt predict`` all look a spec (or an input file's suffix) up
here instead of testing kinds themselves. A source is either read whole into memory
(``synthetic``, ``.npz``) or a *corpus*: listed by its ``scan`` and converted once
into the cache of ``corpus.py`` (``gislr``, ``pose``, ``mediapipe``, ``openpose``).
The readers are imported only when a source is used, so the registry costs nothing.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from slt_cli.common.extras import require
from slt_cli.data.options import ReadOptions
from slt_cli.errors import DataError

if TYPE_CHECKING:
    from slt_cli.common.reporting import Reporter
    from slt_cli.data.base import RawData
    from slt_cli.data.cache import Corpus

SYNTHETIC = "synthetic"


Scan = Callable[[Path, str, ReadOptions], "Corpus"]
Load = Callable[[str, str, ReadOptions, "Reporter | None"], "RawData"]
Named = tuple[np.ndarray, tuple[str, ...]]  # a sequence (T, J, C) and its J landmarks' names
ReadInput = Callable[[Path, str, ReadOptions], Named]


@dataclass(frozen=True)
class Source:
    """One kind of data source.

    Attributes:
        kind: The spec prefix (``gislr`` in ``gislr:DIR``).
        usage: How a spec of this kind is written, for hints.
        describe: What it reads, in a few words.
        extra: The optional extra it needs (a key of ``extras.EXTRAS``), or None.
        scan: For a corpus: lists a folder into a ``cache.Corpus`` (None otherwise).
        load: For an in-memory source: reads a spec whole (None for a corpus).
        input_suffixes: Single files of this kind ``slt predict`` classifies.
        input_folder: A pattern whose matches mark a folder as one sequence of this
            kind (``*.npy`` frames), which ``slt predict`` classifies too.
        read_input: Reads one such file or folder to float32 ``(T, J, C)``, NaN =
            missing, and the names of its J landmarks.
    """

    kind: str
    usage: str
    describe: str
    extra: str | None = None
    scan: Scan | None = None
    load: Load | None = None
    input_suffixes: tuple[str, ...] = ()
    input_folder: str | None = None
    read_input: ReadInput | None = None

    @property
    def corpus(self) -> bool:
        """Whether it goes through the corpus cache (``corpus.py``)."""
        return self.scan is not None

    def require(self) -> None:
        """Raises: DataError naming the extra to install when this source needs one."""
        if self.extra is not None:
            require(self.extra, f"reading {self.describe}", DataError)

    def canonical(self, spec: str) -> str:
        """The spec as a checkpoint records it: a corpus folder or an existing ``.npz``
        path made absolute, so it is found from any folder; other specs as given."""
        if self.corpus:
            _, _, folder = spec.partition(":")
            return f"{self.kind}:{Path(folder).expanduser().resolve()}" if folder else spec
        if self.kind == "npz":
            path = Path(spec.removeprefix("npz:"))
            if path.suffix == ".npz" and path.exists():
                return str(path.resolve())
        return spec


# --- the readers, imported when used ---------------------------------------------------


def _load_synthetic(spec: str, landmarks: str, options: ReadOptions,
                    reporter: Reporter | None) -> RawData:
    from slt_cli.data.synthetic import SyntheticSpec, generate

    return generate(parse_options(SyntheticSpec, spec.partition(":")[2], spec))


def _load_npz(spec: str, landmarks: str, options: ReadOptions,
              reporter: Reporter | None) -> RawData:
    from slt_cli.data.npz import load_npz, select_npz

    return select_npz(load_npz(Path(spec.removeprefix("npz:")), reporter), landmarks, reporter)


def _scan_gislr(root: Path, landmarks: str, options: ReadOptions) -> Corpus:
    from slt_cli.data.gislr import scan_gislr

    return scan_gislr(root, landmarks)


def _scan_pose(root: Path, landmarks: str, options: ReadOptions) -> Corpus:
    from slt_cli.data.posefile import scan_pose

    return scan_pose(root, landmarks)


def _scan_mediapipe(root: Path, landmarks: str, options: ReadOptions) -> Corpus:
    from slt_cli.data.mediapipe import scan_mediapipe

    return scan_mediapipe(root, landmarks, options)


def _scan_openpose(root: Path, landmarks: str, options: ReadOptions) -> Corpus:
    from slt_cli.data.openpose import scan_openpose

    return scan_openpose(root, landmarks, options)


def _read_parquet(path: Path, landmarks: str, options: ReadOptions) -> Named:
    from slt_cli.data.gislr import read_parquet_input

    return read_parquet_input(path, landmarks)


def _read_pose(path: Path, landmarks: str, options: ReadOptions) -> Named:
    from slt_cli.data.posefile import read_pose_input

    return read_pose_input(path, landmarks)


def _read_frames(path: Path, landmarks: str, options: ReadOptions) -> Named:
    from slt_cli.data.mediapipe import read_sequence_input

    return read_sequence_input(path, landmarks, options)


def _read_clip(path: Path, landmarks: str, options: ReadOptions) -> Named:
    from slt_cli.data.openpose import read_clip_input

    return read_clip_input(path, landmarks, options)


SOURCES: dict[str, Source] = {source.kind: source for source in (
    Source(SYNTHETIC, "synthetic[:classes=60,signers=12,seed=0]", "generated signs",
           load=_load_synthetic),
    Source("npz", "a .npz path", ".npz arrays", load=_load_npz, input_suffixes=(".npz",)),
    Source("gislr", "gislr:DIR", "GISLR parquet files", extra="gislr", scan=_scan_gislr,
           input_suffixes=(".parquet",), read_input=_read_parquet),
    Source("pose", "pose:DIR", ".pose files", extra="pose", scan=_scan_pose,
           input_suffixes=(".pose",), read_input=_read_pose),
    Source("mediapipe", "mediapipe:DIR", "MediaPipe frame folders", scan=_scan_mediapipe,
           input_folder="*.npy", read_input=_read_frames),
    Source("openpose", "openpose:DIR", "OpenPose JSON folders", scan=_scan_openpose,
           input_folder="*_keypoints.json", read_input=_read_clip),
)}


def usages() -> str:
    """Every spec form, for help and hints: ``synthetic[...], a .npz path, gislr:DIR, ...``."""
    return ", ".join(source.usage for source in SOURCES.values())


def find_source(spec: str) -> Source | None:
    """The source a spec names: by its ``kind:`` prefix, else a ``.npz`` path; None
    when no source reads it."""
    kind = spec.partition(":")[0]
    if kind in SOURCES:
        return SOURCES[kind]
    return SOURCES["npz"] if Path(spec).suffix == ".npz" else None


# what marks a folder of each kind, by file name; the first found wins
_FOLDER_MARKS = (("openpose", "_keypoints.json"), ("pose", ".pose"), ("gislr", ".parquet"),
                 ("mediapipe", ".npy"))
_FOLDER_SCAN = 2_000  # entries looked at, at most: a guess for a hint, never a full walk


def folder_kind(folder: Path) -> str | None:
    """The source kind whose files ``folder`` holds (``mediapipe`` for ``<sign>/<n>/0.npy``
    frames, ...), from the names of its first few thousand entries; None when none fits."""
    seen = 0
    for _, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in files:
            for kind, mark in _FOLDER_MARKS:
                # MediaPipe tutorial frames are numbered: 0.npy, 1.npy, ...
                if name.endswith(mark) and (kind != "mediapipe" or name[:-4].isdigit()):
                    return kind
        seen += len(files) + len(folders)
        if seen > _FOLDER_SCAN:
            break
    return None


def source_for(spec: str) -> Source:
    """``find_source``, for a spec that must name a source.

    Raises:
        DataError: for a spec no source reads.
    """
    found = find_source(spec)
    if found is None:
        path = Path(spec)
        kind = folder_kind(path) if path.is_dir() else None
        if kind is not None:
            raise DataError(f"unknown data source {spec!r}: a folder, whose files look like "
                            f"{kind}'s", hint=f"Name its kind: {kind}:{spec}")
        if not path.exists() and ":" not in spec:
            raise DataError(f"unknown data source {spec!r}: no such file or folder",
                            hint=f"Use {usages()}.")
        raise DataError(f"unknown data source {spec!r}", hint=f"Use {usages()}.")
    return found


def is_corpus_spec(spec: str) -> bool:
    """Whether ``spec`` names a corpus (converted once, read from the cache)."""
    found = find_source(spec)
    return found is not None and found.corpus


def input_source(path: Path) -> Source | None:
    """The source whose single files have ``path``'s suffix, or, for a folder, whose
    frame files it holds (None: no source reads it)."""
    for source in SOURCES.values():
        if path.is_dir():
            if source.input_folder and next(path.glob(source.input_folder), None):
                return source
        elif path.suffix in source.input_suffixes:
            return source
    return None


def input_folders() -> tuple[str, ...]:
    """What marks a folder as one sequence, per source: ``*.npy (mediapipe)``, ..."""
    return tuple(f"{source.input_folder} ({source.kind})" for source in SOURCES.values()
                 if source.input_folder)


def input_suffixes() -> tuple[str, ...]:
    return tuple(s for source in SOURCES.values() for s in source.input_suffixes)


def parse_options(cls: type, text: str, spec: str) -> Any:
    """``classes=60,signers=12`` into ``cls(classes=60, signers=12)`` (int fields).

    Raises:
        DataError: for an unknown option or a value that is not an integer.
    """
    known = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, int] = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in known:
            raise DataError(f"data spec {spec!r}: unknown option {item!r}",
                            hint=f"Options: {', '.join(known)} (e.g. classes=60).")
        if key in values:  # which one was meant cannot be told
            raise DataError(f"data spec {spec!r}: {key} is given twice",
                            hint="Give each option once.")
        try:
            values[key] = int(value)
        except ValueError:
            raise DataError(f"data spec {spec!r}: {key} must be an integer") from None
    return cls(**values)
