"""What a checkpoint says about its network, and how to rebuild it from that.

The sidecar's ``model`` record (builder name, resolved settings, data shape) is the
one source for rebuilding a network (nanoGPT's ``model_args``); ``continue``,
``evaluate`` and ``resume`` all go through here.

An ensemble (``slt ensemble --method logits``) has a composite record: name
``ensemble`` and ``settings = {"members": [record, ...]}``, one ordinary record per
member; it rebuilds as ``models.ensemble.Ensemble`` holding the member networks.

``stage_sidecar`` writes the rest of a stage checkpoint's sidecar around the record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from slt_cli import __version__
from slt_cli.cfg.config import Config, DataConfig, StageConfig
from slt_cli.common.reporting import EpochMetrics
from slt_cli.data import PreparedData
from slt_cli.data.transforms import feature_count
from slt_cli.errors import CheckpointError, DataError
from slt_cli.models import build_model, resolved_settings, takes_joints
from slt_cli.models.ensemble import ENSEMBLE, Ensemble
from slt_cli.run.scoring import State
from slt_cli.store.sidecar import Sidecar, TrainedWith


def model_record(name: str, settings: Mapping[str, Any], data: PreparedData) -> dict[str, Any]:
    """What rebuilds the network, as the sidecar's ``model`` key stores it."""
    if name == ENSEMBLE:
        try:
            members = [model_record(m["name"], m["settings"], data) for m in settings["members"]]
        except (KeyError, TypeError):
            raise CheckpointError("an ensemble's model record lacks its members' records",
                                  hint="The sidecar was edited or damaged; rebuild it with "
                                       "`slt ensemble`.") from None
        return ensemble_record(members)
    # "auto" sizes follow the training split; a checkpoint's record is already sized
    trained = data.splits.get("train")
    sized = resolved_settings(name, settings, sequences=0 if trained is None else len(trained),
                              classes=len(data.classes))
    record = {"name": name, "settings": sized,
              "num_classes": len(data.classes),
              "in_features": feature_count(data.num_joints, data.num_channels, data.motion),
              "num_frames": data.num_frames}
    if takes_joints(name):  # a graph network's skeleton, read off the names when rebuilt
        record["joints"] = (list(data.joints) if data.joints is not None
                            else [f"joint_{i}" for i in range(data.num_joints)])
    return record


def ensemble_record(members: list[dict[str, Any]]) -> dict[str, Any]:
    """The record of a network that averages the predictions of ``members`` (records
    of one data layout: the first one's classes, features and frames are the ensemble's)."""
    first = members[0]
    return {"name": ENSEMBLE, "settings": {"members": members},
            "num_classes": first["num_classes"], "in_features": first["in_features"],
            "num_frames": first["num_frames"]}


def build_network(record: Mapping[str, Any], *, seed: int) -> nn.Module:
    """A fresh network from a model record; the same seed gives the same weights."""
    if record["name"] == ENSEMBLE:
        return Ensemble([build_network(member, seed=seed)
                         for member in record["settings"]["members"]])
    torch.manual_seed(seed)
    return build_model(record["name"], in_features=record["in_features"],
                       num_classes=record["num_classes"], num_frames=record["num_frames"],
                       joints=record.get("joints"), **record["settings"])


def checked_record(name: str, sidecar: Sidecar, data: PreparedData) -> dict[str, Any]:
    """The sidecar's model record, after checking that ``data`` fits it.

    Raises:
        DataError: naming what differs: the data's landmarks, channels, frames or classes.
    """
    record = dict(sidecar.model)
    expected = model_record(record["name"], record["settings"], data)
    classes = _names_differ("classes", sidecar.classes, tuple(data.classes))
    if classes:  # named, so their count need not be said too
        expected["num_classes"] = record["num_classes"]
    found = record_differences(record, expected) + classes
    if found:
        raise DataError(
            f"the data {data.source!r} does not fit checkpoint {name}: {'; '.join(found)}",
            hint="Use data with the layout and classes the checkpoint was trained on.")
    return record


def source_moved(sidecar: Sidecar, data: DataConfig) -> list[str]:
    """The checkpoint's data source beside a run's, when they differ."""
    there, here = sidecar.config.data.source, data.source
    return [] if there == here else [f"data {there!r} there, {here!r} here"]


def start_misfits(sidecar: Sidecar, record: Mapping[str, Any], data: DataConfig) -> list[str]:
    """What keeps a checkpoint's weights from starting a run of network ``record`` on
    ``data``, in the user's words (``normalise 'parts' there, 'sequence' here``): the
    network it rebuilds, and the preparation that decides what its inputs mean. Another
    data source is no misfit (``source_moved``). Empty when it fits."""
    trained, model = sidecar.config.data, sidecar.model
    found = []
    if trained.normalise != data.normalise:
        found.append(f"normalise {trained.normalise!r} there, {data.normalise!r} here")
    if trained.coordinates != data.coordinates:
        found.append(f"coordinates {trained.coordinates!r} there, {data.coordinates!r} here")
    return found + record_differences(model, record)


_NAMED = {"num_classes": "classes", "in_features": "features per frame",
          "num_frames": "frames"}


def record_differences(there: Mapping[str, Any], here: Mapping[str, Any]) -> list[str]:
    """How model record ``here`` differs from a checkpoint's ``there``, in the user's
    words (``frames 32 there, 30 here``); every key is compared, so no difference of two
    records goes unnamed. Empty when they are equal."""
    found = []
    if there.get("name") != here.get("name") or there.get("settings") != here.get("settings"):
        found.append(f"model {there.get('name')} {there.get('settings')} there, "
                     f"{here.get('name')} {here.get('settings')} here")
    for key, what in _NAMED.items():
        if there.get(key) != here.get(key):
            found.append(f"{what} {there.get(key)} there, {here.get(key)} here")
    found += _names_differ("landmarks", there.get("joints"), here.get("joints"))
    found += [f"model {key} {there.get(key)!r} there, {here.get(key)!r} here"
              for key in sorted(set(there) | set(here))
              if key not in {"name", "settings", "joints", *_NAMED}
              and there.get(key) != here.get(key)]
    return found


def _names_differ(what: str, there: Any, here: Any) -> list[str]:
    """How two lists of names (landmarks, classes) differ: the checkpoint's that are
    missing here first, then the ones it lacks, else their order."""
    if there == here:
        return []
    there, here = list(there or ()), list(here or ())
    known, kept = set(there), set(here)
    missing = [n for n in there if n not in kept]
    extra = [n for n in here if n not in known]

    def shown(names: list[str]) -> str:
        return ", ".join(map(str, names[:3])) + (", ..." if len(names) > 3 else "")

    if missing:
        return [f"{what}: {len(missing)} of the checkpoint's {len(there)} missing here "
                f"({shown(missing)})"]
    if extra:
        return [f"{what}: {len(extra)} here that the checkpoint lacks ({shown(extra)})"]
    return [f"{what} in another order"]


def load_state(model: nn.Module, state: State, name: str | None) -> None:
    """Load weights after checking that they are the network's, tensor by tensor.

    Raises:
        CheckpointError: naming the first tensor that is missing, extra or reshaped.
    """
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    reshaped = [key for key in expected if key in state and state[key].shape != expected[key].shape]
    if missing or unexpected or reshaped:
        first = (missing or unexpected or reshaped)[0]
        raise CheckpointError(
            f"{name}: weights do not fit the network its sidecar describes",
            hint=f"{len(missing)} tensor(s) missing, {len(unexpected)} unexpected, "
                 f"{len(reshaped)} of another shape (first: {first}); the files were mixed up "
                 "or edited.")
    model.load_state_dict(state)


def stage_sidecar(config: Config, stage_idx: int, stage: StageConfig, metrics: EpochMetrics,
                  seconds: float, record: dict[str, Any], data: PreparedData,
                  parent: str | None, run_id: str, *, stage_time: float) -> Sidecar:
    """The sidecar of a stage's checkpoint: its numbers, lineage and resolved settings
    (the run's, the data's as loaded, the model's and the stage's).

    ``seconds`` (``training_time``) is the stage's time until the epoch of these
    weights; ``stage_time`` the stage's whole time so far (the engine updates a best
    checkpoint's when its stage ends)."""
    # the data as loaded: its source, and its frames as resampled (also when chosen by it)
    loaded = dataclasses.replace(config.data, source=data.source, frames=data.num_frames)
    return Sidecar(
        stage_idx=stage_idx, stage_name=stage.name, stage_description=stage.description,
        val_loss=metrics.val_loss, val_accuracy=metrics.val_accuracy, epoch=metrics.epoch,
        training_time=round(seconds, 3), stage_time=round(stage_time, 3),
        classes=tuple(data.classes), model=record, parent=parent, run_id=run_id,
        slt_version=__version__,
        # the raw landmarks the network's preprocessing takes, by name (None: unnamed)
        joints=None if data.input_joints is None else tuple(data.input_joints),
        config=TrainedWith(run=config.run, data=loaded,
                           model={"name": record["name"], **record["settings"]}, stage=stage))
