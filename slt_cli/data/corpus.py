"""Corpus sources (``gislr:DIR``, ``pose:DIR``, ``mediapipe:DIR``, ``openpose:DIR``; the
registry in ``sources.py`` says which): convert once, then train from the cache.

The first use reads every sequence file in parallel worker processes and appends the
results, in order, to a store (``cache.py``); memory holds only a few chunks at a time,
whatever the corpus size. Training then needs the sequences normalised and resampled
to ``frames`` frames: that, too, is computed once per (store, split, frames), block by
block, into float32 ``.npy`` files that the training splits memory-map. A second
``slt train`` on the same corpus therefore reads only small index files before its
first batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path

import numpy as np

from slt_cli.common.files import load_json, regular_file
from slt_cli.common.reporting import Reporter
from slt_cli.data.cache import (
    MANIFEST_FILE,
    Corpus,
    StaleStore,
    Store,
    StoreWriter,
    cache_key,
    cache_root,
    iter_blocks,
    old_cache_root,
    open_store,
    publish_folder,
    remove_leftovers,
    write_manifest,
)
from slt_cli.data.landmarks import DEFAULT_LANDMARKS, PartsLayout
from slt_cli.data.preprocess import (
    DEFAULT_COORDINATES,
    kept_channels,
    kept_coordinates,
    normalise,
    resample,
)
from slt_cli.data.sources import SOURCES, ReadOptions, source_for
from slt_cli.errors import DataError, UnreadableFile

CHUNK = 32  # sequence files per worker task
PREPARED_VERSION = 2  # 2: the normalisation (parts or sequence) is part of the key


def scan_corpus(spec: str, landmarks: str = DEFAULT_LANDMARKS,
                options: ReadOptions | None = None) -> Corpus:
    """List a corpus and check its listing files; reads no landmark yet.

    Raises:
        DataError: for a spec that names no corpus, a missing package, folder or
            listing file, or a bad listing.
    """
    source = source_for(spec)
    kind, _, folder = spec.partition(":")
    if source.scan is None:
        corpora = ", ".join(other.usage for other in SOURCES.values() if other.corpus)
        raise DataError(f"data spec {spec!r} is not a corpus folder", hint=f"Corpora: {corpora}.")
    if not folder:
        raise DataError(f"data spec {spec!r} names no folder", hint=f"Use {kind}:PATH/TO/DIR.")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: no such folder", hint=f"Give {kind}: an existing folder.")
    source.require()
    return source.scan(root, landmarks, options or ReadOptions())


def ensure_store(corpus: Corpus, reporter: Reporter | None = None,
                 workers: int | None = None, chunk: int = CHUNK) -> Store:
    """The corpus's store: opened when a good one exists, else (re)built.

    Raises:
        DataError: naming the first sequence file that cannot be read.
    """
    reporter = reporter or Reporter()
    for note in corpus.notes:
        reporter.note(note)
    key = cache_key(corpus)
    prefix = f"{corpus.kind}-{corpus.settings.replace('+', '-')}-"
    folder = cache_root(corpus.root) / f"{prefix}{key[:16]}"
    stale = None
    if folder.exists():
        try:
            return open_store(folder, key)
        except StaleStore as exc:
            stale = f"rebuilding the cache {folder}: {exc}"
    old = old_cache_root(corpus.root)
    if (old / folder.name / MANIFEST_FILE).is_file():  # one an earlier slt kept in the data
        try:  # read as it is; what it lacks goes to the user's cache
            store = open_store(old / folder.name, key)
            return replace(store, prepared_in=folder.with_name(
                f"{folder.name}-prepared"))
        except StaleStore:
            pass
    if stale:
        reporter.note(stale)
    if old.is_dir():
        reporter.note(f"{old}: caches an earlier slt kept inside the data; slt writes "
                      f"nothing there now (its caches go to {folder.parent}) and reads a "
                      "store there only while it fits the files: deleting it is safe")
    store = build_store(corpus, folder, key, reporter, workers=workers, chunk=chunk)
    remove_leftovers(folder.parent, keep=folder, prefix=prefix)
    return store


def build_store(corpus: Corpus, folder: Path, key: str, reporter: Reporter,
                workers: int | None = None, chunk: int = CHUNK) -> Store:
    """Convert every sequence of ``corpus`` into a new store at ``folder``."""
    count = len(corpus.sequences)
    workers = workers or available_cores()
    jobs = [(corpus.reader, corpus.root, corpus.sequences[i:i + chunk])
            for i in range(0, count, chunk)]
    task = f"converting {corpus.kind}:{corpus.root}"
    reporter.task_progress(task=task, done=0, total=count, unit="sequences")
    try:
        writer = StoreWriter(folder, corpus, key)
    except OSError as exc:
        raise DataError(f"cannot write the cache {folder} ({exc.strerror})",
                        hint="Point SLT_CACHE_DIR at a writable folder.") from None
    try:
        done = 0
        for result in ordered_map(read_chunk, jobs, workers):
            if isinstance(result, str):
                message, _, hint = result.partition("\n")
                raise DataError(message, hint or None)
            frames, lengths, missing, zeros = result
            writer.append(frames, lengths, missing, zeros)
            done += len(lengths)
            reporter.task_progress(task=task, done=done, total=count, unit="sequences")
        return writer.publish()
    finally:
        writer.discard()


def read_chunk(job: tuple[Callable[[Path], np.ndarray], Path, Sequence[str]]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | str:
    """Worker: read a run of sequence files into (frames float16, lengths, missing,
    zero-filled): the last two count, per landmark, the frames where it is missing and
    where it was missing because the file held zeros (readers that know say so by
    returning ``(frames, zeros)``).

    A bad file comes back as the text ``message\nhint`` (an exception's hint would not
    survive pickling).
    """
    reader, root, names = job
    parts, lengths, zeros = [], [], 0
    for name in names:
        try:
            sequence = reader(root / name)
        except DataError as exc:
            return f"{exc.message}\n{exc.hint or ''}"
        if isinstance(sequence, tuple):  # (frames, zero-filled frames per landmark)
            sequence, zero = sequence
            zeros = zeros + zero
        parts.append(sequence.astype(np.float16))
        lengths.append(len(sequence))
    frames = np.concatenate(parts)
    missing = np.isnan(frames).any(axis=-1).sum(axis=0).astype(np.int64)
    zeros = np.broadcast_to(np.asarray(zeros, np.int64), missing.shape).copy()
    return frames, np.asarray(lengths, np.int64), missing, zeros


def ordered_map(func: Callable, jobs: Sequence, workers: int) -> Iterator:
    """``map(func, jobs)`` over ``workers`` processes, in order, with at most two
    jobs per worker in flight, so memory does not grow with the number of jobs."""
    if workers <= 1 or len(jobs) <= 1:
        yield from map(func, jobs)
        return
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent may hold torch's or arrow's threads. Workers ignore
    # Ctrl-C; the parent stops them and removes its half-written store.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN))
    try:
        queue = iter(jobs)
        pending = deque(pool.submit(func, job) for job in islice(queue, 2 * workers))
        while pending:
            result = pending.popleft().result()
            for job in islice(queue, 1):
                pending.append(pool.submit(func, job))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (macOS)
        return max(1, os.cpu_count() or 1)


# --- model-ready splits --------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedSplit:
    x: np.ndarray  # float32 (n, frames, J, C) memmap (copy-on-write: never written back)
    y: np.ndarray


def prepared_splits(store: Store, labels: np.ndarray, frames: int,
                    reporter: Reporter | None = None,
                    layout: PartsLayout | None = None,
                    coordinates: str = DEFAULT_COORDINATES) -> dict[str, PreparedSplit]:
    """Each split with the ``coordinates`` kept (``preprocess.kept_coordinates``),
    normalised (by parts with a ``layout``, else as one cloud) and resampled to
    ``frames``, memory-mapped from the cache (computed block by block on first use)."""
    reporter = reporter or Reporter()
    names = [name for name in ("train", "val", "test") if (labels == name).any()]
    mode = "sequence" if layout is None else layout.mode
    kept = kept_channels(store.frames.shape[-1], coordinates)
    key = hashlib.sha256(json.dumps([PREPARED_VERSION, store.key, frames, mode]
                                    + ([kept] if kept < store.frames.shape[-1] else [])).encode()
                         + np.asarray(labels).astype("U5").tobytes()).hexdigest()
    name = f"prepared-{frames}-{key[:16]}"
    if store.prepared_in is not None:  # an earlier slt's store: the splits it prepared
        with contextlib.suppress(StaleStore):
            return _open_prepared(store.folder / name, key, names)
    base = store.prepared_in or store.folder
    folder = base / name
    try:
        return _open_prepared(folder, key, names)
    except StaleStore as exc:
        if folder.exists():
            reporter.note(f"rebuilding the prepared splits {folder}: {exc}")
    try:
        base.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=base))
    except OSError as exc:
        raise DataError(f"cannot write the cache {base} ({exc.strerror})",
                        hint="Point SLT_CACHE_DIR at a writable folder.") from None
    try:
        _write_prepared(store, labels, names, frames, scratch, reporter, layout, coordinates)
        write_manifest(scratch, {"key": key, "splits": names, "frames": frames})
        publish_folder(scratch, folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    remove_leftovers(base, keep=folder, prefix=f"prepared-{frames}-")
    return _open_prepared(folder, key, names)


def _write_prepared(store: Store, labels: np.ndarray, names: Iterable[str], frames: int,
                    scratch: Path, reporter: Reporter, layout: PartsLayout | None,
                    coordinates: str) -> None:
    total, done = len(store), 0
    task = f"preparing {total} sequences at {frames} frames"
    reporter.task_progress(task=task, done=0, total=total, unit="sequences")
    joints, channels = store.frames.shape[1:]
    # The block and its temporaries: float32 ones, or float64 ones for parts.
    row_bytes = joints * channels * 4 * (4 if layout is None else 12)
    channels = kept_channels(channels, coordinates)
    if layout is not None:
        joints = len(layout.prepared_joints)
    for name in names:
        indices = np.flatnonzero(labels == name)
        np.save(scratch / f"{name}_y.npy", store.y[indices])
        out = np.lib.format.open_memmap(scratch / f"{name}_x.npy", mode="w+", dtype=np.float32,
                                        shape=(len(indices), frames, joints, channels))
        start = 0
        for block in iter_blocks(indices, store.lengths, row_bytes):
            x, lengths = store.padded(block)
            x = kept_coordinates(x, coordinates)
            out[start:start + len(block)] = resample(normalise(x, layout), lengths, frames)
            start += len(block)
            done += len(block)
            reporter.task_progress(task=task, done=done, total=total, unit="sequences")
        out.flush()
        del out
        for suffix in ("x", "y"):
            with open(scratch / f"{name}_{suffix}.npy", "rb+") as file:
                os.fsync(file.fileno())


def _open_prepared(folder: Path, key: str, names: list[str]) -> dict[str, PreparedSplit]:
    try:
        manifest = load_json(folder / MANIFEST_FILE)
        if not isinstance(manifest, dict):
            raise StaleStore(f"{MANIFEST_FILE} is not a table")
        if manifest.get("key") != key or manifest.get("splits") != names:
            raise StaleStore("other settings")
        splits = {}
        for name in names:
            x = np.load(regular_file(folder / f"{name}_x.npy"), mmap_mode="c",
                        allow_pickle=False)
            y = np.load(regular_file(folder / f"{name}_y.npy"), allow_pickle=False)
            if x.ndim != 4 or x.shape[0] != y.shape[0] or x.shape[1] != manifest["frames"]:
                raise StaleStore(f"{name} arrays do not fit")
            splits[name] = PreparedSplit(x, y.astype(np.int64))
        return splits
    except StaleStore:
        raise
    except UnreadableFile as exc:
        raise StaleStore(exc.reason) from None
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        raise StaleStore(str(exc)) from None


def open_corpus(spec: str, landmarks: str, reporter: Reporter | None = None,
                options: ReadOptions | None = None) -> Store:
    """``scan_corpus`` then ``ensure_store``: a spec in, an opened store out."""
    return ensure_store(scan_corpus(spec, landmarks, options), reporter)
