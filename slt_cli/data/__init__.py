"""Data sources and preparation: a spec string in, model-ready arrays out.

Specs: ``synthetic`` or ``synthetic:classes=60,signers=12,seed=0`` (generated in
memory), a path to a ``.npz`` file (``npz:PATH`` also works), or a corpus folder:
``gislr:DIR`` (Kaggle GISLR parquet), ``pose:DIR`` (``.pose`` files), ``mediapipe:DIR``
(frame folders of flat MediaPipe vectors) or ``openpose:DIR`` (per-frame OpenPose
JSON), converted once into a memory-mapped cache (``corpus.py``). Which is which is
the registry's to say (``sources.py``).

May import: ``errors``, ``common``. It knows no config: a ``[data]`` table comes in as
anything with its fields (``options.DataSettings``; ``cfg.settings.DataConfig`` is one).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from slt_cli.common.reporting import Reporter
from slt_cli.data.base import SPLITS, RawData
from slt_cli.data.landmarks import DEFAULT_LANDMARKS, match_landmarks, normalisation_layout
from slt_cli.data.options import DataSettings, ReadOptions
from slt_cli.data.preprocess import (
    DEFAULT_COORDINATES,
    assign_folds,
    assign_splits,
    frames_for,
    kept_coordinates,
    normalise,
    resample,
    split_labels,
)
from slt_cli.data.sources import SYNTHETIC, source_for
from slt_cli.errors import DataError

DEFAULT_NORMALISE = "sequence+hands"  # as DataConfig.normalise
MIN_VALIDATION_PEOPLE = 5  # fewer, and validation says little about other people


@dataclass(frozen=True)
class Split:
    """One split, ready for the model: ``x`` (N, frames, J, C) float32, NaN = missing."""

    x: np.ndarray
    y: np.ndarray
    signer: np.ndarray | None = None  # (N,) signer ids, when the source has them

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class PreparedData:
    """Everything the engine needs from a source."""

    splits: dict[str, Split]  # "train", "val" and, when the source has it, "test"
    classes: tuple[str, ...]
    joints: tuple[str, ...] | None  # names of the prepared landmarks (mirroring reads them)
    source: str  # the spec it came from, saved in each checkpoint's config
    motion: bool  # whether features carry frame-to-frame differences
    # Names of the raw landmarks the preparation took (``joints`` less the landmarks
    # that per-part normalisation appends); a checkpoint's sidecar keeps them.
    input_joints: tuple[str, ...] | None = None
    signer_names: tuple[str, ...] | None = None  # each signer id's name, when the source has them

    @property
    def _any(self) -> Split:
        """A split to read shapes from (training's; data to evaluate on may have no other
        than its test split)."""
        found = self.splits.get("train")
        return found if found is not None else next(iter(self.splits.values()))

    @property
    def num_joints(self) -> int:
        return int(self._any.x.shape[2])

    @property
    def num_channels(self) -> int:
        return int(self._any.x.shape[3])

    @property
    def num_frames(self) -> int:
        return int(self._any.x.shape[1])

    def validation_caveat(self) -> str | None:
        """What makes validation a weak judge of unseen people, when something does:
        it holds fewer than ``MIN_VALIDATION_PEOPLE`` people, shares people with
        training, or the data names no people. None for generated data."""
        train, val = self.splits.get("train"), self.splits.get("val")
        if train is None or val is None or self.source.startswith(SYNTHETIC):
            return None
        fix = ("cross-validate with --folds K, so that every person validates once and "
               "the results pool")
        if val.signer is None or train.signer is None:
            return ("the data names no people, so validation may share signers with training "
                    "and overrate how the model does on new people; name them (an .npz "
                    "'signer' array, signers.csv, --signer-from top) and " + fix)
        people = set(np.unique(val.signer).tolist())
        shared = people & set(np.unique(train.signer).tolist())
        if shared:
            return (f"validation shares {len(shared)} of its {len(people)} people with "
                    "training, so it overrates how the model does on new people; give a "
                    "split by whole people, or " + fix)
        if len(people) < MIN_VALIDATION_PEOPLE:
            who = "person" if len(people) == 1 else "people"
            return (f"validation holds only {len(people)} {who}, too few to tell how the "
                    "model does on others; " + fix)
        return None

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise DataError(f"data {self.source!r} has no {name!r} split",
                            hint=f"It has: {', '.join(self.splits)}.")
        return self.splits[name]


def load_source(spec: str, *, landmarks: str = DEFAULT_LANDMARKS,
                reporter: Reporter | None = None,
                options: ReadOptions | None = None) -> RawData:
    """Read (or generate) the raw sequences a spec names, all in memory.

    Args:
        spec: A data spec (``sources.usages()``).
        landmarks: The groups kept of MediaPipe-named data.
        reporter: Told what reading changed, and a corpus's conversion progress.
        options: How frame-folder and OpenPose corpora are read (defaults when None).

    Raises:
        DataError: for an unknown source, bad options or a malformed file.
    """
    source = source_for(spec)
    options = options or ReadOptions()
    if source.load is not None:
        return source.load(spec, landmarks, options, reporter)
    from slt_cli.data.corpus import open_corpus

    store = open_corpus(spec, landmarks, reporter, options)
    x, lengths = store.padded(np.arange(len(store)))
    return RawData(x=x, y=store.y, classes=store.classes, lengths=lengths,
                   split=store.split, signer=store.signer, joints=store.joints, zeros=store.zeros,
                   signer_names=store.signer_names)


def prepare(raw: RawData, *, frames: int, motion: bool, val_fraction: float, seed: int,
            source: str, folds: int = 0, fold: int = 0,
            reporter: Reporter | None = None,
            normalise_mode: str = DEFAULT_NORMALISE,
            coordinates: str = DEFAULT_COORDINATES) -> PreparedData:
    """Split, normalise (``normalise_mode``: parts or sequence) and resample raw
    sequences to ``frames`` frames each (0: as many as the data's sequences typically
    have, ``preprocess.frames_for``).

    With ``folds``, the split is fold ``fold`` of K-fold cross-validation
    (``preprocess.assign_folds``) instead of the source's or a ``val_fraction`` one.
    A validation split that lacks a trained class is reported, not refused.
    """
    labels = assign_splits(raw, val_fraction, seed, folds=folds, fold=fold)
    _report_absent(raw.y, labels, raw.classes, source, folds, fold, reporter)
    layout = normalisation_layout(raw.joints, normalise_mode)
    x = resample(normalise(kept_coordinates(raw.x, coordinates), layout), raw.lengths,
                 frames_for(frames, raw.lengths))
    splits = {name: Split(x[labels == name], raw.y[labels == name],
                          None if raw.signer is None else raw.signer[labels == name])
              for name in SPLITS if (labels == name).any()}
    return PreparedData(splits=splits, classes=raw.classes,
                        joints=layout.prepared_joints if layout else raw.joints, source=source,
                        motion=motion, input_joints=raw.joints, signer_names=raw.signer_names)


def aligned(raw: RawData, wanted: tuple[str, ...] | None, what: str) -> RawData:
    """``raw`` with its landmarks in the order of ``wanted`` (a checkpoint's), matched by
    meaning (``pose_11`` is ``pose_left_shoulder``; ``landmarks.match_landmarks``) and
    any others left out; ``raw`` itself when it already is so, or names none.

    Raises:
        DataError: naming the wanted landmarks the data lacks.
    """
    if wanted is None or raw.joints is None or tuple(raw.joints) == tuple(wanted):
        return raw
    order = match_landmarks(raw.joints, wanted, what)
    return replace(raw, x=np.ascontiguousarray(raw.x[:, :, order]), joints=tuple(wanted),
                   zeros=None if raw.zeros is None else raw.zeros[order])


def load_data(spec: str, *, frames: int, motion: bool, val_fraction: float, seed: int,
              landmarks: str = DEFAULT_LANDMARKS, reporter: Reporter | None = None,
              folds: int = 0, fold: int = 0,
              normalise_mode: str = DEFAULT_NORMALISE,
              coordinates: str = DEFAULT_COORDINATES,
              options: ReadOptions | None = None,
              joints: tuple[str, ...] | None = None) -> PreparedData:
    """``load_source`` then ``prepare``: the one call the engine makes.

    A corpus (``sources.Source.corpus``) goes through its cache instead: converted on
    first use (progress to ``reporter``), its splits then memory-mapped from disk.
    With ``joints`` (a checkpoint's landmarks), the data's landmarks are matched to
    them by meaning before anything else (``aligned``).
    """
    options = options or ReadOptions()
    if source_for(spec).corpus:
        prepared = _load_corpus(spec, frames=frames, motion=motion, val_fraction=val_fraction,
                                seed=seed, landmarks=landmarks, reporter=reporter, folds=folds,
                                fold=fold, normalise_mode=normalise_mode,
                                coordinates=coordinates, options=options)
        if joints is None or prepared.input_joints in (None, tuple(joints)):
            return prepared
    raw = aligned(load_source(spec, landmarks=landmarks, reporter=reporter, options=options),
                  joints, spec)
    return prepare(raw, frames=frames, motion=motion, val_fraction=val_fraction, seed=seed,
                   source=spec, folds=folds, fold=fold, reporter=reporter,
                   normalise_mode=normalise_mode, coordinates=coordinates)


def load_configured(data: DataSettings, seed: int, reporter: Reporter | None = None,
                    joints: tuple[str, ...] | None = None) -> PreparedData:
    """``load_data`` with every setting of a ``[data]`` table (a run's, or the one a
    checkpoint's sidecar records, cross-validation fold included), its landmarks
    matched to ``joints`` when given."""
    source = source_for(data.source).canonical(data.source)  # found from any folder
    return load_data(source, frames=data.frames, motion=data.motion,
                     val_fraction=data.val_fraction, seed=seed, landmarks=data.landmarks,
                     reporter=reporter, folds=data.folds, fold=data.fold,
                     normalise_mode=data.normalise, coordinates=data.coordinates,
                     options=ReadOptions.of(data),
                     joints=joints)


def check_folds(data: DataSettings, folds: int, seed: int,
                reporter: Reporter | None = None) -> None:
    """Refuse ``folds`` the data cannot make (fewer people, or sequences of a class,
    than folds) before a cross-validation run holds, writes or says anything. A corpus
    is opened (converted on first use: its progress goes to ``reporter``), other
    sources are read; their notes are left to the run.

    Raises:
        DataError: as ``preprocess.assign_folds`` does, or naming what cannot be read.
    """
    source = source_for(data.source).canonical(data.source)
    progress = _ProgressOnly(reporter or Reporter())
    options = ReadOptions.of(data)
    if source_for(source).corpus:
        from slt_cli.data.corpus import open_corpus

        store = open_corpus(source, data.landmarks, progress, options)
        y, signer, split = store.y, store.signer, store.split
    else:
        raw = load_source(source, landmarks=data.landmarks, reporter=progress, options=options)
        y, signer, split = raw.y, raw.signer, raw.split
    assign_folds(y, signer, split, folds, seed)


class _ProgressOnly(Reporter):
    """Passes on a conversion's progress, and nothing else."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def task_progress(self, *, task: str, done: int, total: int, unit: str) -> None:
        self.reporter.task_progress(task=task, done=done, total=total, unit=unit)


def _load_corpus(spec: str, *, frames: int, motion: bool, val_fraction: float, seed: int,
                 landmarks: str, reporter: Reporter | None, folds: int, fold: int,
                 normalise_mode: str, coordinates: str, options: ReadOptions) -> PreparedData:
    from slt_cli.data.corpus import open_corpus, prepared_splits

    source = source_for(spec).canonical(spec)
    store = open_corpus(source, landmarks, reporter, options)
    labels = split_labels(store.y, store.signer, store.split, val_fraction, seed, folds=folds,
                          fold=fold)
    _report_absent(store.y, labels, store.classes, source, folds, fold, reporter)
    frames = frames_for(frames, store.lengths)
    layout = normalisation_layout(store.joints, normalise_mode)
    splits = {name: Split(part.x, part.y,
                          None if store.signer is None else store.signer[labels == name])
              for name, part in prepared_splits(store, labels, frames, reporter, layout,
                                                coordinates).items()}
    return PreparedData(splits=splits, classes=store.classes,
                        joints=layout.prepared_joints if layout else store.joints,
                        source=source, motion=motion, input_joints=store.joints,
                        signer_names=store.signer_names)


def _report_absent(y: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], source: str,
                   folds: int, fold: int, reporter: Reporter | None) -> None:
    """Tell the user when validation lacks some of the classes training sees.

    Real signers sign different subsets of a vocabulary, so validation on whole
    held-out signers often lacks a class or two. That is no reason to refuse:
    accuracy is measured on the classes its people sign.
    """
    unseen = _unseen(y, labels == "train", labels == "val", classes)
    if unseen:
        where = f"fold {fold} of {folds}: " if folds else ""
        (reporter or Reporter()).note(f"{source}: {where}validation has no sequence of {unseen}")


def _unseen(y: np.ndarray, trained: np.ndarray, validated: np.ndarray,
            classes: tuple[str, ...]) -> str:
    """The trained classes absent from validation, named (empty when none)."""
    missing = [classes[c] for c in sorted(set(y[trained].tolist()) - set(y[validated].tolist()))]
    if not missing:
        return ""
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    word = "classes" if len(missing) > 1 else "class"
    return (f"{word} {', '.join(map(repr, missing[:5]))}{more} (none of its people signs "
            "it); accuracy is measured on the classes present")


__all__ = ["SYNTHETIC", "PreparedData", "RawData", "ReadOptions", "Split", "aligned",
           "check_folds", "load_configured",
           "load_data", "load_source", "prepare"]
