"""From raw sequences to model-ready arrays: splits, normalisation, fixed length.

All of it is numpy, done once per run, except per-part normalisation, which is
``parts.normalise_parts`` (torch, the code ``slt predict`` and exported files run);
per-batch work (augmentation, features) lives in ``transforms``, in torch, on the
training device.
"""

from __future__ import annotations

import warnings

import numpy as np

from slt_cli.data.base import RawData
from slt_cli.data.landmarks import PartsLayout
from slt_cli.errors import DataError

PARTS_BLOCK = 256  # sequences per call of the torch normaliser (float64 temporaries)


def assign_splits(raw: RawData, val_fraction: float, seed: int, *, folds: int = 0,
                  fold: int = 0) -> np.ndarray:
    """A "train" / "val" / "test" label per sequence (see ``split_labels``)."""
    return split_labels(raw.y, raw.signer, raw.split, val_fraction, seed, folds=folds,
                        fold=fold)


def split_labels(y: np.ndarray, signer: np.ndarray | None, split: np.ndarray | None,
                 val_fraction: float, seed: int, *, folds: int = 0,
                 fold: int = 0) -> np.ndarray:
    """A "train" / "val" / "test" label per sequence.

    The source's own split is kept. Without one, a validation share is held out:
    whole signers when signer ids exist (people unseen in training, as in real
    evaluations), else a stratified share of every class. Seeded.

    With ``folds`` (K-fold cross-validation), fold ``fold`` (1-based) of
    ``assign_folds`` validates and the other folds train; "test" stays test.
    """
    if folds:
        number, _ = assign_folds(y, signer, split, folds, seed)
        return np.where(number == 0, "test", np.where(number == fold, "val", "train"))
    rng = np.random.default_rng(seed)
    split = split.astype(str) if split is not None else np.full(len(y), "train")
    if (split == "val").any() or not (split == "train").any():
        return split  # its own validation, or nothing to train on (data to evaluate on)
    train = np.flatnonzero(split == "train")
    if signer is not None and len(np.unique(signer[train])) > 1:
        people = rng.permutation(np.unique(signer[train]))
        count = min(len(people) - 1, max(1, round(len(people) * val_fraction)))
        held = np.isin(signer, people[:count]) & (split == "train")
        split[held] = "val"
    else:
        for label in np.unique(y[train]):
            members = rng.permutation(train[y[train] == label])
            count = min(len(members) - 1, round(len(members) * val_fraction))
            split[members[: max(count, 0)]] = "val"
    if not (split == "val").any() or not (split == "train").any():
        raise DataError("too few sequences to hold out a validation split",
                        hint="Add data, or give a 'split' array with train and val.")
    return split


def assign_folds(y: np.ndarray, signer: np.ndarray | None, split: np.ndarray | None,
                 folds: int, seed: int) -> tuple[np.ndarray, str]:
    """The cross-validation fold (1..``folds``) of each sequence, 0 for "test" ones.

    Every sequence the source does not mark "test" (its "train" and "val" alike) is
    dealt into one fold. With signer ids, whole signers are (like scikit-learn's
    GroupKFold): signers in a seeded random order, larger ones first, each to the
    fold with the fewest sequences so far, so every signer validates exactly once and
    never trains in the fold that validates on it. Without them, each class is dealt
    round-robin after a seeded shuffle (like StratifiedKFold), so every fold holds
    about 1/K of every class. Deterministic for a seed.

    Returns:
        The fold per sequence, and how it was made: "signer" or "class".

    Raises:
        DataError: when there are fewer signers (or members of a class) than folds.
    """
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(split.astype(str) != "test") if split is not None else np.arange(len(y))
    number = np.zeros(len(y), dtype=np.int64)
    if signer is not None and len(np.unique(signer[pool])) > 1:
        people, sizes = np.unique(signer[pool], return_counts=True)
        if len(people) < folds:
            raise DataError(f"{folds} folds need at least {folds} signers outside the test "
                            f"split, so that each fold validates on its own; this data has "
                            f"{len(people)}", hint=f"Use at most {len(people)} folds.")
        order = rng.permutation(len(people))
        order = order[np.argsort(-sizes[order], kind="stable")]
        load = np.zeros(folds, dtype=np.int64)
        for person in order:
            lightest = int(np.argmin(load))
            load[lightest] += sizes[person]
            number[pool[signer[pool] == people[person]]] = lightest + 1
        return number, "signer"
    labels, counts = np.unique(y[pool], return_counts=True)
    if len(labels) and counts.min() < folds:
        raise DataError(f"{folds} folds need at least {folds} sequences of every class "
                        f"outside the test split; class index {labels[counts.argmin()]} has "
                        f"{counts.min()}", hint=f"Use at most {counts.min()} folds.")
    dealt = np.concatenate([rng.permutation(pool[y[pool] == label]) for label in labels]
                           or [np.zeros(0, dtype=np.int64)])
    number[dealt] = np.arange(len(dealt)) % folds + 1
    return number, "class"


FRAMES_CAP = 32  # "frames from the data" never asks for more (LIBRAS: 45 frames did no better)


def frames_for(frames: int, lengths: np.ndarray) -> int:
    """The frame count to resample to: ``frames``, or with 0 the data's own, the 90th
    percentile of its real lengths (so a few long clips do not stretch every other)
    capped at ``FRAMES_CAP``; 1 for single-frame data such as static handshapes."""
    if frames:
        return frames
    typical = float(np.percentile(lengths, 90)) if len(lengths) else 1.0
    return int(min(FRAMES_CAP, max(1, np.ceil(typical))))


# [data] coordinates: how many of a landmark's coordinates are kept, from the first
COORDINATES = {"xy": 2, "xyz": 3}
DEFAULT_COORDINATES = "xy"  # as DataConfig.coordinates


def kept_channels(channels: int, coordinates: str) -> int:
    """How many of a landmark's ``channels`` coordinates ``[data] coordinates`` keeps."""
    return min(channels, COORDINATES[coordinates])


def kept_coordinates(x: np.ndarray, coordinates: str) -> np.ndarray:
    """Landmarks ``(..., C)`` with the coordinates ``[data] coordinates`` keeps: x and y
    alone for ``xy`` (a single camera's z, MediaPipe's depth, is an estimate that differs
    between people, cameras and trackers), every one the data has for ``xyz``. Applied
    before normalisation, so the scale is the image plane's too."""
    return x[..., :kept_channels(x.shape[-1], coordinates)]


def normalise(x: np.ndarray, layout: PartsLayout | None = None) -> np.ndarray:
    """Centre each sequence on its mean landmark and scale it to unit spread; with a
    ``layout``, normalise as the layout's mode says instead (``parts.normalise``: each
    part in its own frame, or the hands' shapes appended).

    This makes a model indifferent to where the signer stands and how large they
    appear. Missing landmarks (NaN) are ignored in the statistics and stay NaN.
    """
    if layout is not None:
        import torch

        from slt_cli.data.parts import normalise as normalise_torch

        with torch.no_grad():
            return np.concatenate([
                normalise_torch(torch.from_numpy(np.ascontiguousarray(x[i:i + PARTS_BLOCK],
                                                                      np.float32)),
                                layout).numpy()
                for i in range(0, len(x), PARTS_BLOCK)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN sequences stay NaN
        centre = np.nanmean(x, axis=(1, 2), keepdims=True)
        offset = x - centre
        spread = np.sqrt(np.nanmean(np.sum(offset**2, axis=-1), axis=(1, 2)))
    spread = np.where(np.isfinite(spread) & (spread > 1e-6), spread, 1.0)
    return (offset / spread[:, None, None, None]).astype(np.float32)


def resample(x: np.ndarray, lengths: np.ndarray, frames: int) -> np.ndarray:
    """Bring every sequence's real frames to exactly ``frames`` by linear interpolation.

    The whole sign is kept (no cropping); padding beyond ``lengths`` is never read.
    A value next to a missing one stays missing rather than being half-invented.
    """
    last = (np.maximum(lengths, 1) - 1).astype(np.float64)
    position = np.linspace(0.0, 1.0, frames)[None, :] * last[:, None]  # (N, frames)
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, last.astype(np.int64)[:, None])
    weight = (position - lower)[:, :, None, None].astype(np.float32)
    index = np.arange(x.shape[0])[:, None]
    before, after = x[index, lower], x[index, upper]
    # An exact hit on a frame must not be spoiled by a NaN neighbour with weight 0.
    after = np.where(weight == 0, before, after)
    return (before * (1 - weight) + after * weight).astype(np.float32)
