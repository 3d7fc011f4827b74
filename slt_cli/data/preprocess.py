"""From raw sequences to model-ready arrays: splits, normalisation, fixed length.

All of it is numpy, done once per run; per-batch work (augmentation, features)
lives in ``transforms``, in torch, on the training device.
"""

from __future__ import annotations

import warnings

import numpy as np

from slt_cli.data.base import RawData
from slt_cli.errors import DataError


def assign_splits(raw: RawData, val_fraction: float, seed: int) -> np.ndarray:
    """A "train" / "val" / "test" label per sequence (see ``split_labels``)."""
    return split_labels(raw.y, raw.signer, raw.split, val_fraction, seed)


def split_labels(y: np.ndarray, signer: np.ndarray | None, split: np.ndarray | None,
                 val_fraction: float, seed: int) -> np.ndarray:
    """A "train" / "val" / "test" label per sequence.

    The source's own split is kept. Without one, a validation share is held out:
    whole signers when signer ids exist (people unseen in training, as in real
    evaluations), else a stratified share of every class. Seeded.
    """
    rng = np.random.default_rng(seed)
    split = split.astype(str) if split is not None else np.full(len(y), "train")
    if (split == "val").any():
        return split
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


def normalise(x: np.ndarray) -> np.ndarray:
    """Centre each sequence on its mean landmark and scale it to unit spread.

    This makes a model indifferent to where the signer stands and how large they
    appear. Missing landmarks (NaN) are ignored in the statistics and stay NaN.
    """
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
