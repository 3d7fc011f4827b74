"""Use a trained checkpoint: raw landmarks in, class scores out.

``RawClassifier`` is one ``nn.Module`` for the whole path a sequence takes in
training, "raw landmarks -> normalise -> resample -> features -> network": the
normalisation is ``data.parts`` (the very code data preparation runs), resampling
the torch twin of ``data.preprocess.resample``, so ``slt predict`` and the files
``slt export`` writes apply exactly what the checkpoint was trained with.
The network is rebuilt only through ``records.build_network`` from the sidecar's
``model`` record, so any network a checkpoint can describe (ensembles included)
works here unchanged.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slt_cli.data.landmarks import PartsLayout, normalisation_layout
from slt_cli.data.parts import normalise  # the one normaliser, by parts or one cloud
from slt_cli.data.preprocess import COORDINATES, kept_channels
from slt_cli.data.transforms import (
    dominant_hand_swap,
    feature_count,
    features,
    mean_probabilities,
    mirror_clips,
    mirror_permutation,
    right_handed,
)
from slt_cli.errors import DataError
from slt_cli.run.records import build_network, load_state
from slt_cli.store.checkpoints import load_weights, read_sidecar
from slt_cli.store.sidecar import Sidecar


@dataclass(frozen=True)
class Preprocessing:
    """What a checkpoint's training did to each sequence before the network saw it."""

    frames: int  # every sequence was resampled to this many frames
    motion: bool  # features carry frame-to-frame differences
    landmarks: str  # Holistic groups kept from MediaPipe-named input
    normalise: str = "sequence"  # "sequence", "parts" or "sequence+hands" (before: sequence)
    joints: tuple[str, ...] | None = None  # the raw landmarks' names, when the data had them
    mirror_average: bool = False  # scores are the mean of the clip's and its mirror's
    dominant_hand: str = "keep"  # "right": clips whose left hand is seen more are mirrored
    coordinates: str = "xyz"  # "xy": z dropped before anything else (before: every one)

    @classmethod
    def of(cls, sidecar: Sidecar) -> Preprocessing:
        data = sidecar.config.data
        return cls(frames=data.frames, motion=data.motion, landmarks=data.landmarks,
                   normalise=data.normalise, joints=sidecar.joints,
                   mirror_average=sidecar.config.run.mirror_average,
                   dominant_hand=data.dominant_hand, coordinates=data.coordinates)

    @property
    def prepared_joints(self) -> tuple[str, ...] | None:
        layout = self.layout
        return layout.prepared_joints if layout is not None else self.joints

    @property
    def hand_swap(self) -> tuple[list[int], list[int], list[int]] | None:
        """(left hand, right hand, mirror) of the prepared landmarks when clips are
        turned right-handed (``transforms.right_handed``), as in training."""
        return dominant_hand_swap(self.prepared_joints, self.dominant_hand)

    @functools.cached_property  # (read off the names once: hand_swap, mirror and more ask)
    def layout(self) -> PartsLayout | None:
        """What per-part normalisation follows; None when sequences are one cloud."""
        return normalisation_layout(self.joints, self.normalise)

    @property
    def mirror(self) -> list[int] | None:
        """The left/right swap of the prepared landmarks when clips are mirror-averaged
        (as validation scored them in training); None otherwise."""
        if not self.mirror_average:
            return None
        return mirror_permutation(self.prepared_joints)

    @property
    def channels(self) -> int:
        """The most coordinates of a landmark the network reads (``[data] coordinates``);
        input with more has the rest dropped."""
        return COORDINATES[self.coordinates]

    @property
    def added_joints(self) -> int:
        """Landmarks the normalisation appends to the raw ones (a position per hand, or
        the hands' shapes)."""
        layout = self.layout
        return len(layout.prepared_joints) - len(layout.joints) if layout is not None else 0


def resample(x: torch.Tensor, last: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Torch twin of ``data.preprocess.resample``.

    Args:
        x: (B, T, J, C) landmarks, NaN = missing.
        last: float64 (B,) index of each sequence's last real frame (length - 1).
        grid: float64 (frames,) ``np.linspace(0, 1, frames)``, taken from numpy so
            positions that land exactly on a frame do so here too.

    Returns:
        (B, frames, J, C): each sequence's real frames linearly interpolated.
    """
    position = grid[None, :] * last[:, None]
    lower = torch.floor(position)
    upper = torch.minimum(lower + 1, last[:, None])
    weight = (position - lower).to(x.dtype)[:, :, None, None]
    shape = (-1, -1, x.shape[2], x.shape[3])
    before = x.gather(1, lower.long()[:, :, None, None].expand(shape))
    after = x.gather(1, upper.long()[:, :, None, None].expand(shape))
    after = torch.where(weight == 0, before, after)  # an exact hit ignores a NaN neighbour
    return before * (1 - weight) + after * weight


class RawClassifier(nn.Module):
    """Raw landmark sequences ``(B, T, J, C)`` (NaN = missing or padding) and their
    lengths ``(B,)`` to class logits ``(B, K)``, preprocessing included."""

    def __init__(self, network: nn.Module, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.network = network
        self.motion = preprocessing.motion
        self.channels = preprocessing.channels
        self.layout = preprocessing.layout
        grid = torch.from_numpy(np.linspace(0.0, 1.0, preprocessing.frames))
        self.register_buffer("grid", grid, persistent=False)
        mirror = preprocessing.mirror
        self.mirrored = mirror is not None
        self.register_buffer("mirror", torch.tensor(mirror if mirror is not None else [],
                                                    dtype=torch.long), persistent=False)
        swap = preprocessing.hand_swap
        self.right_handed = swap is not None
        for name, index in zip(("left_hand", "right_hand", "hand_mirror"), swap or ([],) * 3,
                               strict=True):
            self.register_buffer(name, torch.tensor(index, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        last = lengths.clamp(min=1).to(torch.float64) - 1
        return self.logits(x, last)

    def logits(self, x: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        prepared = resample(normalise(x[..., :self.channels], self.layout), last, self.grid)
        if self.right_handed:
            prepared = right_handed(prepared, self.left_hand, self.right_hand, self.hand_mirror)
        logits = self.network(features(prepared, self.motion))
        if not self.mirrored:
            return logits
        flipped = self.network(features(mirror_clips(prepared, self.mirror), self.motion))
        return mean_probabilities(logits, flipped)


class SequenceClassifier(nn.Module):
    """One raw sequence ``(T, J, C)`` float32, any ``T >= 1``, to ``(logits, probabilities)``
    of shape ``(K,)`` each: the form ``slt export`` writes."""

    def __init__(self, classifier: RawClassifier) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, landmarks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = landmarks[None]
        # T - 1 from a tensor, not a Python int, so a traced graph keeps T dynamic.
        last = torch.ones_like(landmarks[:, 0, 0], dtype=torch.float64).sum()[None] - 1
        logits = self.classifier.logits(batch, last)[0]
        return logits, torch.softmax(logits, dim=-1)


@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint ready for inference, in eval mode."""

    name: str
    sidecar: Sidecar
    classifier: RawClassifier
    preprocessing: Preprocessing

    @property
    def classes(self) -> tuple[str, ...]:
        return self.sidecar.classes

    def check_layout(self, joints: int, channels: int, what: str) -> None:
        """Raises: DataError when ``joints`` x ``channels`` is not what the network takes."""
        wanted = self.sidecar.model["in_features"]
        added = self.preprocessing.added_joints
        kept = kept_channels(channels, self.preprocessing.coordinates)  # z gone for xy
        if feature_count(joints + added, kept, self.preprocessing.motion) == wanted:
            return
        fits = [f"{j} landmarks x {c} channels" for c, j in layouts(wanted, self.preprocessing)]
        dropped = " (x and y; a z is dropped)" if fits and self.preprocessing.channels == 2 else ""
        raise DataError(
            f"{what}: {joints} landmarks x {channels} channels do not fit checkpoint "
            f"{self.name}, which takes {' or '.join(fits) or f'{wanted} features per frame'}"
            f"{dropped}",
            hint="Give sequences with the landmarks the checkpoint was trained on "
                 f"(its data: {self.sidecar.config.data.source}).")


def layouts(in_features: int, preprocessing: Preprocessing) -> list[tuple[int, int]]:
    """Every (channels, raw joints) with C in 3, 2 whose features number ``in_features``."""
    per_joint = {c: c * (2 if preprocessing.motion else 1) + 1 for c in (3, 2)}
    return [(c, in_features // size - preprocessing.added_joints)
            for c, size in per_joint.items() if in_features % size == 0]


def load_model(checkpoint_dir: Path, name: str, device: torch.device | str = "cpu"
               ) -> LoadedModel:
    """Rebuild checkpoint ``name`` from its sidecar and weights, wrapped for raw input.

    Raises:
        CheckpointError: for a missing or damaged checkpoint, or weights that do not
            fit the network its sidecar describes.
    """
    sidecar = read_sidecar(checkpoint_dir, name)
    network = build_network(sidecar.model, seed=0)
    load_state(network, load_weights(checkpoint_dir, name, sidecar), name)
    preprocessing = Preprocessing.of(sidecar)
    classifier = RawClassifier(network, preprocessing).to(device).eval()
    return LoadedModel(name=name, sidecar=sidecar, classifier=classifier,
                       preprocessing=preprocessing)


@torch.no_grad()
def predict_probabilities(model: LoadedModel, x: np.ndarray, lengths: np.ndarray,
                          batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, K) for raw sequences ``x`` (N, T, J, C) of ``lengths``.

    Sequences go through in batches, padded as given, exactly as the trainer's
    ``prepare`` saw its data.
    """
    device = model.classifier.grid.device
    outputs = []
    for start in range(0, len(x), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size],
                                                      dtype=np.float32)).to(device)
        length = torch.from_numpy(lengths[start:start + batch_size].astype(np.int64)).to(device)
        outputs.append(torch.softmax(model.classifier(batch, length).float(), dim=-1).cpu())
    return torch.cat(outputs).numpy()
