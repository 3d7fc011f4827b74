"""The converted form of a corpus: compact, memory-mapped, keyed, written atomically.

A corpus (GISLR parquet, ``.pose`` files) is read once into a *store*, a folder of

- ``frames.f16``: every sequence's frames, one after another, float16 ``(F, J, C)``
  with NaN for a missing landmark, read through ``np.memmap``;
- ``index.npz``: ``offsets`` (N+1: sequence i is frames ``offsets[i]:offsets[i+1]``),
  ``y``, and ``signer`` / ``split`` when the corpus has them;
- ``manifest.json`` (written last): format version, the key, shapes, class and joint
  names, missing landmarks per joint, and a SHA-256 of ``index.npz``.

The key hashes the names, sizes and modification times of every source file, the
landmark selection and the format version, so any change to the corpus or to the
settings makes a new store. A store is opened only after its manifest, index and
file sizes check out; one that does not is rebuilt, never trusted. Stores are built
in a temporary folder beside their final place, fsynced, then renamed into it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slt_cli.common.files import fsync_directory, load_json, regular_file, sha256_of
from slt_cli.errors import DataError, UnreadableFile

FORMAT_VERSION = 1
FRAMES_FILE = "frames.f16"
INDEX_FILE = "index.npz"
MANIFEST_FILE = "manifest.json"
CACHE_ENV = "SLT_CACHE_DIR"  # overrides where every cache goes
# Where slt 0.1 kept a corpus's stores, inside the corpus folder: a fresh store there is
# still read, and nothing is written there any more.
OLD_CACHE_FOLDER = ".slt-cache"
FRAME_DTYPE = np.float16  # ~3 significant digits: 0.3 px on a 640 px frame


@dataclass(frozen=True)
class Corpus:
    """What a corpus reader found before reading any landmark.

    Attributes:
        kind: The source's kind (``gislr``, ``pose``, ...); names the store.
        root: The corpus folder.
        sequences: One file per sequence, relative to ``root``.
        key_files: Every file whose name, size and time key the store (the
            sequence files and the listing files), relative to ``root``.
        listing: The file that lists the sequences, named in error messages.
        y: int64 ``(N,)`` class indices.
        classes: The K class names.
        signer: int64 ``(N,)`` signer ids, or None.
        split: ``(N,)`` str of train/val/test, or None.
        joints: The J landmark names.
        channels: C, 2 or 3.
        settings: Reader settings that change the result (the landmark selection).
        reader: Picklable ``reader(path) -> float32 (T, J, C)``, or ``(that, zeros)`` with
            zeros int ``(J,)`` counting the frames where a landmark was zero-filled
            (and is now NaN); raises DataError.
        notes: What the scan found that a user should hear (a detected frame layout).
        signer_names: The name of each signer id, as the listing gave it.
    """

    kind: str
    root: Path
    sequences: tuple[str, ...]
    key_files: tuple[str, ...]
    listing: str
    y: np.ndarray
    classes: tuple[str, ...]
    signer: np.ndarray | None
    split: np.ndarray | None
    joints: tuple[str, ...]
    channels: int
    settings: str
    reader: Callable[[Path], np.ndarray]
    notes: tuple[str, ...] = ()
    signer_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # names from folder and file names reach tables and the terminal: an escape
        # sequence in one would be played there
        for what, names in (("class", self.classes), ("signer", self.signer_names or ())):
            for name in names:
                if not name.isprintable():
                    raise DataError(f"{self.root}: a {what} name holds a control character: "
                                    f"{name!r}", hint="Rename the folder or the listing's "
                                                      "entry.")


@dataclass(frozen=True)
class Store:
    """An opened store: the frames stay on disk, the small index is in memory."""

    folder: Path
    key: str
    frames: np.ndarray  # float16 (F, J, C) memmap
    offsets: np.ndarray  # int64 (N+1,)
    y: np.ndarray
    classes: tuple[str, ...]
    signer: np.ndarray | None
    split: np.ndarray | None
    joints: tuple[str, ...]
    missing: np.ndarray  # int64 (J,): frames in which each landmark is missing
    zeros: np.ndarray | None = None  # int64 (J,): of those, the frames the files held as zeros
    signer_names: tuple[str, ...] | None = None  # each signer id's name (older stores: None)
    prepared_in: Path | None = None  # where its prepared splits go; None: inside ``folder``

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def padded(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sequences ``indices`` as float32 ``(n, T, J, C)``, NaN-padded, and their lengths."""
        lengths = self.lengths[indices]
        out = np.full((len(indices), int(lengths.max(initial=1)), *self.frames.shape[1:]),
                      np.nan, np.float32)
        for row, (i, length) in enumerate(zip(indices, lengths, strict=True)):
            out[row, :length] = self.frames[self.offsets[i]:self.offsets[i] + length]
        return out, lengths


class StaleStore(Exception):
    """A store folder that cannot be used as it is; the message says why."""


def cache_key(corpus: Corpus) -> str:
    """SHA-256 of the source files' names, sizes and times and of the settings.

    Raises:
        DataError: naming a listed file that does not exist.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps([FORMAT_VERSION, corpus.kind, corpus.settings,
                              corpus.joints]).encode())
    root = str(corpus.root)
    for name in sorted(corpus.key_files):  # plain strings: 94,000 Path objects cost seconds
        try:
            info = os.stat(os.path.join(root, name))
        except OSError:
            raise DataError(f"{corpus.root / name}: no such file (listed in "
                            f"{corpus.root / corpus.listing})",
                            hint=f"Put the file back, or remove its line from {corpus.listing}."
                            ) from None
        if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would hang or flood a read
            raise DataError(f"{corpus.root / name}: not a regular file (listed in "
                            f"{corpus.root / corpus.listing})")
        digest.update(f"{name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_root(root: Path) -> Path:
    """Where the stores of the corpus in ``root`` live: the user's cache folder,
    ``$SLT_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/slt``, else ``~/.cache/slt``, in
    a subfolder named after the corpus's resolved path (its name and a hash). Never the
    corpus folder: data can be read-only, shared, synced or backed up, and a cache
    there grows it by the corpus's size."""
    root = root.resolve()
    tag = f"{root.name}-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser() / tag
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "slt" / tag


def old_cache_root(root: Path) -> Path:
    """Where slt 0.1 kept the stores of the corpus in ``root``: read, never written."""
    return root.resolve() / OLD_CACHE_FOLDER


def open_store(folder: Path, key: str) -> Store:
    """Open and check a store.

    Raises:
        StaleStore: when anything about it is missing, wrong or for another key.
    """
    try:
        manifest = load_json(folder / MANIFEST_FILE)
        if not isinstance(manifest, dict):
            raise StaleStore(f"{MANIFEST_FILE} is not a table")
        if manifest.get("format") != FORMAT_VERSION or manifest.get("key") != key:
            raise StaleStore("made by another version or from other files")
        if manifest["index_sha256"] != sha256_of(folder / INDEX_FILE, "data"):
            raise StaleStore(f"{INDEX_FILE} does not match the manifest")
        with np.load(regular_file(folder / INDEX_FILE), allow_pickle=False) as index:
            arrays = {name: index[name] for name in index.files}
        count, total = manifest["sequences"], manifest["frames"]
        joints, channels = manifest["joints"], manifest["channels"]
        shape = (total, len(joints), channels)
        expected = int(np.prod(shape)) * np.dtype(FRAME_DTYPE).itemsize
        if (folder / FRAMES_FILE).stat().st_size != expected:
            raise StaleStore(f"{FRAMES_FILE} has the wrong size (cut short?)")
        offsets = arrays["offsets"]
        if (offsets.shape != (count + 1,) or offsets[0] != 0 or offsets[-1] != total
                or (np.diff(offsets) < 1).any() or arrays["y"].shape != (count,)):
            raise StaleStore(f"{INDEX_FILE} is inconsistent")
        frames = np.memmap(regular_file(folder / FRAMES_FILE), dtype=FRAME_DTYPE, mode="r",
                           shape=shape)
    except StaleStore:
        raise
    except UnreadableFile as exc:
        raise StaleStore(f"unreadable ({exc.reason})") from None
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as exc:
        raise StaleStore(f"unreadable ({type(exc).__name__}: {exc})") from None
    return Store(folder=folder, key=key, frames=frames, offsets=offsets.astype(np.int64),
                 y=arrays["y"].astype(np.int64), classes=tuple(manifest["classes"]),
                 signer=arrays.get("signer"), split=arrays.get("split"),
                 joints=tuple(joints), missing=np.asarray(manifest["missing"], np.int64),
                 zeros=(np.asarray(manifest["zeros"], np.int64) if "zeros" in manifest
                        else None),  # older stores did not count them
                 signer_names=_signer_names(manifest, arrays.get("signer")))


def _signer_names(manifest: dict[str, Any], signer: np.ndarray | None
                  ) -> tuple[str, ...] | None:
    """The manifest's signer names, when it has a name for every id of ``signer``."""
    names = manifest.get("signer_names")
    if signer is None or not isinstance(names, list) or not signer.size:
        return None
    if not all(isinstance(name, str) for name in names) or signer.max() >= len(names):
        raise StaleStore("its signer names do not match its signer ids")
    return tuple(names)


class StoreWriter:
    """Appends sequences to a new store in a temporary folder; ``publish`` renames it
    into place. Only the small index grows in memory; frames go straight to disk."""

    def __init__(self, folder: Path, corpus: Corpus, key: str) -> None:
        self.folder, self.corpus, self.key = folder, corpus, key
        folder.parent.mkdir(parents=True, exist_ok=True)
        self.scratch = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=folder.parent))
        self.scratch.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would hide a shared cache
        self.file = open(self.scratch / FRAMES_FILE, "wb")  # noqa: SIM115 (closed in publish)
        self.lengths: list[int] = []
        self.missing = np.zeros(len(corpus.joints), np.int64)
        self.zeros = np.zeros(len(corpus.joints), np.int64)

    def append(self, frames: np.ndarray, lengths: np.ndarray, missing: np.ndarray,
               zeros: np.ndarray | None = None) -> None:
        """Add consecutive sequences: their frames float16 ``(sum(lengths), J, C)``."""
        self.file.write(np.ascontiguousarray(frames, FRAME_DTYPE).tobytes())
        self.lengths += [int(n) for n in lengths]
        self.missing += missing
        if zeros is not None:
            self.zeros += zeros

    def publish(self) -> Store:
        """Finish the files, fsync them and rename the folder into place."""
        corpus = self.corpus
        _fsync_close(self.file)
        offsets = np.concatenate([[0], np.cumsum(self.lengths, dtype=np.int64)])
        arrays: dict[str, Any] = {"offsets": offsets, "y": corpus.y.astype(np.int64)}
        if corpus.signer is not None:
            arrays["signer"] = corpus.signer.astype(np.int64)
        if corpus.split is not None:
            arrays["split"] = corpus.split.astype(str)
        with open(self.scratch / INDEX_FILE, "wb") as file:
            np.savez(file, **arrays)
            _fsync_close(file, close=False)
        manifest = {"format": FORMAT_VERSION, "key": self.key, "kind": corpus.kind,
                    "root": str(corpus.root.resolve()), "settings": corpus.settings,
                    "sequences": len(self.lengths), "frames": int(offsets[-1]),
                    "joints": list(corpus.joints), "channels": corpus.channels,
                    "classes": list(corpus.classes), "missing": self.missing.tolist(),
                    "zeros": self.zeros.tolist(),
                    "signer_names": (None if corpus.signer_names is None
                                     else list(corpus.signer_names)),
                    "index_sha256": sha256_of(self.scratch / INDEX_FILE, "data")}
        write_manifest(self.scratch, manifest)
        publish_folder(self.scratch, self.folder)
        return open_store(self.folder, self.key)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """The manifest, written last: a folder without one is never a store."""
    with open(folder / MANIFEST_FILE, "w", encoding="utf-8") as file:
        file.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _fsync_close(file, close=False)


def publish_folder(scratch: Path, folder: Path) -> None:
    """Rename a finished temporary folder into place, replacing a damaged one.

    If another process published the same folder meanwhile, theirs is kept.
    """
    fsync_directory(scratch)
    if folder.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".old-{folder.name}-", dir=folder.parent))
        os.replace(folder, trash / "old")
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.rename(scratch, folder)
    except OSError:
        if not (folder / MANIFEST_FILE).is_file():
            raise
        shutil.rmtree(scratch, ignore_errors=True)
    fsync_directory(folder.parent)


def remove_leftovers(parent: Path, keep: Path, prefix: str) -> None:
    """Delete stores of the same corpus and settings made from older files, and
    temporary folders of dead conversions (older than an hour)."""
    import time

    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        stale = entry.name.startswith(prefix) and entry != keep
        abandoned = (entry.name.startswith((".tmp-", ".old-"))
                     and time.time() - entry.stat().st_mtime > 3600)
        if entry.is_dir() and (stale or abandoned):
            shutil.rmtree(entry, ignore_errors=True)


def iter_blocks(indices: np.ndarray, lengths: np.ndarray, row_bytes: int,
                budget: int = 64 << 20) -> Iterator[np.ndarray]:
    """Split ``indices`` into runs whose padded size stays under ``budget`` bytes."""
    start = 0
    while start < len(indices):
        stop, longest = start, 0
        while stop < len(indices):
            longest = max(longest, int(lengths[indices[stop]]))
            if stop > start and (stop - start + 1) * longest * row_bytes > budget:
                break
            stop += 1
        yield indices[start:stop]
        start = stop


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_close(file: Any, close: bool = True) -> None:
    file.flush()
    os.fsync(file.fileno())
    if close:
        file.close()
