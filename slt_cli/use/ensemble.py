"""``slt ensemble``: one checkpoint made of several, saved like any other.

Two methods:

- ``logits`` averages the members' predictions (their softmax probabilities, see
  ``models.ensemble``). Members may differ in architecture and settings but must share
  the data layout: classes, landmarks, frames, motion features. The checkpoint's model
  record is a composite (``records.ensemble_record``) that ``records.build_network``
  rebuilds as an ``Ensemble`` of the member networks.
- ``weights`` averages the members' weights element-wise (model soups, SWA): members
  must share one model record, and the result is a plain network of that architecture.
  It makes sense for members on one training path (the stages of one run), not for
  networks trained from different random starts.

The ensemble is scored on the first member's validation data, as ``slt evaluate``
would score it, before it is saved. Members come from one checkpoint folder. Like the
engine, this module returns a result and never prints.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slt_cli import __version__
from slt_cli.cfg.config import Config, DataConfig
from slt_cli.common.reporting import Reporter
from slt_cli.data import PreparedData, load_configured
from slt_cli.data.transforms import mirror_permutation
from slt_cli.errors import CheckpointError, DataError, SltError
from slt_cli.run.devices import device_count, resolve_device, resolve_precision
from slt_cli.run.records import build_network, checked_record, ensemble_record, load_state
from slt_cli.run.scoring import State, TensorSplit, predict_logits, score
from slt_cli.store.checkpoints import (
    check_name,
    load_weights,
    new_run_id,
    read_sidecar,
    save_checkpoint,
    settle,
    sidecar_path,
    weights_path,
)
from slt_cli.store.lock import folder_lock
from slt_cli.store.sidecar import Sidecar, TrainedWith

METHODS = ("logits", "weights")
STAGE_NAME = "ensemble"  # the stage_name of every ensemble checkpoint

# What members of any ensemble share: (where it is read, what the user calls it).
# They are scored on the first member's prepared clips, so they must be prepared
# alike; the settings come before the feature width they change, to name the cause.
_LAYOUT: tuple[tuple[Callable[[Sidecar], Any], str], ...] = (
    (lambda sidecar: sidecar.classes, "classes"),
    (lambda sidecar: sidecar.config.data.normalise, "normalisation ([data] normalise)"),
    (lambda sidecar: sidecar.config.data.dominant_hand, "[data] dominant_hand"),
    (lambda sidecar: sidecar.config.data.coordinates, "[data] coordinates"),
    (lambda sidecar: sidecar.model["in_features"], "features per frame (landmarks x channels)"),
    # The frames the clips were resampled to; ``[data] frames`` may say 0 (from the data).
    (lambda sidecar: sidecar.model["num_frames"], "frames"),
    (lambda sidecar: sidecar.config.data.motion, "motion features"),
    (lambda sidecar: sidecar.config.data.landmarks, "landmarks"),
)


@dataclass(frozen=True)
class MemberScore:
    """One member, scored on the ensemble's validation data."""

    name: str
    model: str  # architecture name from its model record
    val_loss: float
    val_accuracy: float


@dataclass(frozen=True)
class EnsembleResult:
    """What ``make_ensemble`` saved and how it scored."""

    name: str
    method: str
    members: tuple[MemberScore, ...]
    val_loss: float
    val_accuracy: float
    count: int  # validation sequences scored
    source: str  # the data they came from
    notes: tuple[str, ...]  # caveats worth a line on stderr


def make_ensemble(config: Config, members: Sequence[str], name: str, *,
                  method: str = "logits", checkpoint_dir: Path | str | None = None,
                  device: str = "auto", reporter: Reporter | None = None) -> EnsembleResult:
    """Combine checkpoints ``members`` into checkpoint ``name`` and score it.

    Args:
        config: Supplies the scoring batch size, precision and default folder (as for
            ``slt evaluate``); the data and networks come from the members' sidecars.
        members: Two or more checkpoint names in ``checkpoint_dir``.
        name: The new checkpoint's name; it must not exist yet.
        method: ``logits`` (average predictions) or ``weights`` (average weights).

    Raises:
        SltError: for an unknown method, fewer than two members or a repeated one.
        CheckpointError: unknown members, ``name`` taken, or (``weights``) members of
            different architectures.
        DataError: members that differ in data layout, named.
    """
    folder = Path(checkpoint_dir or config.run.checkpoint_dir)
    reporter = reporter or Reporter()
    members, name = _check_request(members, name, method)
    _refuse_existing(folder, name)
    sidecars = [read_sidecar(folder, member) for member in members]
    check_layout(members, sidecars)
    if method == "weights":
        _check_same_model(members, sidecars)
    data = _data(sidecars[0], reporter)
    notes = _split_notes(members, sidecars, data, reporter)
    target = torch.device(resolve_device(device))
    batch = config.run.batch_size * device_count(target, config.run.multi_gpu)
    precision = resolve_precision(config.run.precision, target)
    val = TensorSplit.from_split(data.split("val"), target)
    # Each member is scored as its training scored it; the ensemble mirror-averages
    # when every member did (mixed members get a note).
    averaged = [sidecar.config.run.mirror_average for sidecar in sidecars]
    if len(set(averaged)) > 1:
        notes.append("some members were scored with mirror averaging and some without: "
                     "the ensemble is scored without it")
    mirror = mirror_permutation(data.joints)

    def scored(network: nn.Module, mirrored: bool) -> tuple[float, float]:
        return score(predict_logits(network, val, data.motion, batch, precision,
                                    mirror if mirrored else None), val.y)

    networks, scores = [], []
    for member, sidecar in zip(members, sidecars, strict=True):
        network = build_network(checked_record(member, sidecar, data), seed=0)
        load_state(network, load_weights(folder, member, sidecar), member)
        networks.append(network.to(target))
        scores.append(MemberScore(member, sidecar.model["name"],
                                  *scored(networks[-1], averaged[len(networks) - 1])))
    if method == "logits":
        record = ensemble_record([dict(sidecar.model) for sidecar in sidecars])
        ensemble = build_network(record, seed=0)
        load_state(ensemble, {f"members.{i}.{key}": value for i, network in enumerate(networks)
                              for key, value in network.state_dict().items()}, name)
    else:
        record = dict(sidecars[0].model)
        ensemble = build_network(record, seed=0)
        load_state(ensemble, mean_state([network.state_dict() for network in networks]), name)
    val_loss, val_accuracy = scored(ensemble.to(target), all(averaged))
    if not math.isfinite(val_loss):
        raise SltError(f"the {method} ensemble scores a validation loss of {val_loss}",
                       hint="A member's weights or predictions are broken; leave it out.")
    worst = min(member.val_accuracy for member in scores)
    if method == "weights" and val_accuracy < worst:
        notes.append(f"the averaged weights score {val_accuracy:.4f}, below every member "
                     f"(worst {worst:.4f}): averaging weights suits members of one training "
                     "path (the stages of one run); for separate runs use --method logits")
    sidecar = _sidecar(members, sidecars, method, record, data, val_loss, val_accuracy)
    sidecar = sidecar.replace(config=dataclasses.replace(
        sidecar.config, run=dataclasses.replace(sidecar.config.run,
                                                mirror_average=all(averaged))))
    with folder_lock(folder, sidecar.run_id):
        settle(folder)
        _refuse_existing(folder, name)  # another process may have taken it meanwhile
        save_checkpoint(folder, name, ensemble.state_dict(), sidecar)
    return EnsembleResult(name=name, method=method, members=tuple(scores),
                          val_loss=val_loss, val_accuracy=val_accuracy, count=len(val),
                          source=data.source, notes=tuple(notes))


def mean_state(states: Sequence[Mapping[str, torch.Tensor]]) -> State:
    """The element-wise mean of several state dicts of one network.

    Floating-point tensors are averaged in float32 (and stored back in their dtype);
    others (counters, indices) are taken from the first state.
    """
    mean: State = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            stacked = torch.stack([state[key].float() for state in states])
            mean[key] = stacked.mean(dim=0).to(first.dtype)
        else:
            mean[key] = first.clone()
    return mean


def _check_request(members: Sequence[str], name: str, method: str) -> tuple[list[str], str]:
    """The members' and the result's names, checked (and any file suffix dropped)."""
    if method not in METHODS:
        raise SltError(f"--method {method!r}: expected {' or '.join(METHODS)}")
    name = check_name(name)
    if len(members) < 2:
        raise SltError(f"an ensemble needs at least two members, got {len(members)}",
                       hint="Name two or more checkpoints, e.g. "
                            "slt ensemble best_model_stage_4 best_model_stage_5 --name avg.")
    names = [check_name(member) for member in members]
    repeated = sorted({member for member in names if names.count(member) > 1})
    if repeated:
        raise SltError(f"member {repeated[0]} is named more than once",
                       hint="Name each checkpoint once.")
    return names, name


def _refuse_existing(folder: Path, name: str) -> None:
    if sidecar_path(folder, name).exists() or weights_path(folder, name).exists():
        raise CheckpointError(f"a checkpoint named {name} already exists in {folder}",
                              hint="Choose another --name; nothing was changed.")


def check_layout(members: Sequence[str], sidecars: Sequence[Sidecar]) -> None:
    """Raises: DataError naming the first member whose data layout differs."""
    for member, sidecar in zip(members[1:], sidecars[1:], strict=True):
        for read, what in _LAYOUT:
            mine, theirs = read(sidecar), read(sidecars[0])
            if mine != theirs:
                shown = (f"{len(mine)} classes vs {len(theirs)}"
                         if what == "classes" and len(mine) != len(theirs)
                         else f"{mine!r} vs {theirs!r}")
                raise DataError(
                    f"{member} does not share the data layout of {members[0]}: "
                    f"other {what} ({shown})",
                    hint="Members must be trained on the same classes, landmarks, frames, "
                         "motion setting, normalisation and dominant hand.")


def _check_same_model(members: Sequence[str], sidecars: Sequence[Sidecar]) -> None:
    """Raises: CheckpointError naming the first member of another architecture."""
    first = sidecars[0].model
    for member, sidecar in zip(members[1:], sidecars[1:], strict=True):
        record = sidecar.model
        if record != first:
            if record["name"] != first["name"]:
                what = f"{record['name']} vs {first['name']}"
            else:
                keys = sorted(k for k in {**record["settings"], **first["settings"]}
                              if record["settings"].get(k) != first["settings"].get(k))
                what = f"settings differ: {', '.join(keys)}" if keys else "other record"
            raise CheckpointError(
                f"--method weights needs one architecture, but {member} differs from "
                f"{members[0]} ({what})",
                hint="Average their predictions instead with --method logits.")


def _data(sidecar: Sidecar, reporter: Reporter) -> PreparedData:
    """The data a member was trained and validated on, as ``slt evaluate`` loads it."""
    return load_configured(sidecar.config.data, sidecar.config.run.seed, reporter)


def _split_notes(members: Sequence[str], sidecars: Sequence[Sidecar],
                 data: PreparedData, reporter: Reporter) -> list[str]:
    """A note for each member validated on other sequences than the first member: the
    ensemble is scored on the first's, which that member may have trained on."""
    notes, first = [], _data_key(sidecars[0])
    checked: dict[tuple[str, int], bool] = {first: True}
    for member, sidecar in zip(members[1:], sidecars[1:], strict=True):
        key = _data_key(sidecar)
        if key not in checked:
            try:
                other = _data(sidecar, reporter).split("val")
            except DataError:
                checked[key] = False
            else:
                mine = data.split("val")
                checked[key] = (other.x.shape == mine.x.shape
                                and np.array_equal(other.y, mine.y)
                                and np.array_equal(other.x, mine.x, equal_nan=True))
        if not checked[key]:
            notes.append(f"{member} was validated on other sequences than {members[0]}; "
                         f"the ensemble is scored on {members[0]}'s, which {member} may "
                         "have trained on, so its score may be optimistic")
    return notes


def _data_key(sidecar: Sidecar) -> tuple[DataConfig, int]:
    return (sidecar.config.data, sidecar.config.run.seed)


def _sidecar(members: Sequence[str], sidecars: Sequence[Sidecar], method: str,
             record: dict[str, Any], data: PreparedData, val_loss: float,
             val_accuracy: float) -> Sidecar:
    """A sidecar with every key a trained checkpoint has, plus ``members``."""
    first = sidecars[0].config
    what = "predictions (mean probability)" if method == "logits" else "weights (element-wise)"
    return Sidecar(
        stage_idx=max(sidecar.stage_idx for sidecar in sidecars), stage_name=STAGE_NAME,
        stage_description=f"mean of {len(members)} checkpoints' {what}",
        val_loss=val_loss, val_accuracy=val_accuracy, epoch=0,
        training_time=round(sum(sidecar.training_time for sidecar in sidecars), 3),
        stage_time=None, classes=tuple(data.classes), model=record, parent=None,
        members=tuple(members), run_id=new_run_id(), slt_version=__version__,
        joints=sidecars[0].joints,
        config=TrainedWith(run=first.run, data=first.data,
                           model={"name": record["name"], **record["settings"]},
                           ensemble={"method": method, "members": list(members)}))
