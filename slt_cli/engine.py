"""The staged run: one engine behind ``train``, ``continue``, ``evaluate`` and ``smoke``.

A ``Trainer`` holds what every door shares (config, checkpoint folder, device,
reporter); each method prepares a starting point and runs stages through
``training.fit_stage``. It returns results and never prints.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slt_cli import __version__
from slt_cli.checkpoints import (
    archive_existing,
    best_checkpoint_name,
    free_name,
    load_weights,
    new_run_id,
    read_sidecar,
    save_checkpoint,
    sidecar_path,
    stage_checkpoint_name,
)
from slt_cli.config import Config, DataConfig, StageConfig
from slt_cli.data import PreparedData, load_data
from slt_cli.data.transforms import feature_count, mirror_permutation
from slt_cli.devices import device_count, resolve_device
from slt_cli.errors import CheckpointError, ConfigError, DataError
from slt_cli.models import build_model, resolved_settings
from slt_cli.reporting import EpochMetrics, Reporter
from slt_cli.training import (
    StageSetup,
    State,
    TensorSplit,
    fit_stage,
    improvement,
    predict_logits,
    score,
)


@dataclass(frozen=True)
class StageResult:
    """What one stage achieved and where it was saved."""

    stage_idx: int
    name: str
    description: str
    val_loss: float  # of the best epoch
    val_accuracy: float
    best_epoch: int
    epochs: int
    training_time: float  # seconds for the whole stage
    checkpoint: str  # best weights: best_model_stage_N, or a continue checkpoint
    final_checkpoint: str | None  # weights at the end: stage_N_<name>
    parent: str | None
    gain: float | None  # improvement of the monitored metric over the starting point


@dataclass(frozen=True)
class RunResult:
    run_id: str
    stages: tuple[StageResult, ...]
    stopped: str | None  # why the run ended before its last stage, or None
    archived: tuple[str, ...]  # earlier checkpoints moved aside into archive/<run_id>/


@dataclass(frozen=True)
class Evaluation:
    checkpoint: str
    source: str
    split: str
    count: int
    loss: float
    accuracy: float
    top5_accuracy: float
    per_class: dict[str, float]  # accuracy per class name (classes present in the split)


@dataclass
class _Start:
    """The weights a stage starts from and how well they scored."""

    state: State | None
    checkpoint: str | None
    metrics: tuple[float, float] | None  # (val_loss, val_accuracy)


class Trainer:
    """The engine. ``Trainer(config).train()`` runs every stage of ``config``.

    Args:
        config: A loaded, checked configuration (``config.load_config``).
        checkpoint_dir: Where checkpoints live; defaults to ``config.run.checkpoint_dir``.
        device: ``auto``, ``cpu`` or ``cuda``.
        reporter: Receives progress events; silent by default.
    """

    def __init__(self, config: Config, *, checkpoint_dir: Path | str | None = None,
                 device: str = "auto", reporter: Reporter | None = None) -> None:
        self.config = config
        self.checkpoint_dir = Path(checkpoint_dir or config.run.checkpoint_dir)
        self.device = resolve_device(device)
        self.devices = device_count(self.device, config.run.multi_gpu)
        self.reporter = reporter or Reporter()

    # --- the three doors ---------------------------------------------------------------

    def train(self, stages: Sequence[int] | None = None, *, force: bool = False) -> RunResult:
        """Run the selected stages (1-based; all by default) in order.

        Each stage starts from the best weights of the stage before it (this run's,
        or ``best_model_stage_{N-1}`` on disk). The run stops after a stage whose
        best did not beat its starting point by ``improvement_threshold``, unless
        ``force`` (threshold -1.0) is set. Earlier files it would overwrite are
        moved into ``archive/<run_id>/`` first.
        """
        config = self.config
        selected = list(stages) if stages else list(range(1, len(config.stages) + 1))
        data = self._data(config.data, config.run.seed)
        record = self._model_record(config.model.name, config.model.settings, data)
        model = self._build(record)
        run_id = new_run_id()
        overwritten = [name for i in selected for name in (
            best_checkpoint_name(i), stage_checkpoint_name(i, config.stages[i - 1].name))]
        archived = tuple(archive_existing(self.checkpoint_dir, overwritten, run_id))
        if archived:
            self.reporter.note(f"moved {len(archived)} earlier checkpoint(s) to "
                               f"{self.checkpoint_dir / 'archive' / run_id}")
        self.reporter.run_started(
            stages=[(i, config.stages[i - 1].name) for i in selected], device=str(self.device),
            devices=self.devices, batch_size=self._batch_size(),
            train_size=len(data.splits["train"]), val_size=len(data.splits["val"]))
        threshold = -1.0 if force else config.run.improvement_threshold
        start = self._saved_start(selected[0] - 1, record)
        results: list[StageResult] = []
        stopped = None
        for position, stage_idx in enumerate(selected):
            stage = config.stages[stage_idx - 1]
            result, start = self._run_stage(
                model, record, data, stage, stage_idx, start, run_id,
                best_name=best_checkpoint_name(stage_idx),
                final_name=stage_checkpoint_name(stage_idx, stage.name))
            results.append(result)
            last = position == len(selected) - 1
            if not last and result.gain is not None and result.gain < threshold:
                stopped = (f"stage {stage_idx} ({stage.name}) improved {config.run.monitor} by "
                           f"{result.gain:+.4f}, less than the threshold {threshold}; "
                           "use --force to run every stage")
                self.reporter.note(stopped)
                break
        return RunResult(run_id=run_id, stages=tuple(results), stopped=stopped, archived=archived)

    def continue_from(self, name: str, preset: str, *, epochs: int | None = None) -> StageResult:
        """Train further from checkpoint ``name`` with ``[continue.<preset>]``.

        The network and data are rebuilt from the checkpoint's sidecar (not from the
        current config); the result is saved beside it as ``<name>_<preset>`` (with a
        number when that exists) and records ``name`` as its parent.
        """
        if preset not in self.config.presets:
            raise ConfigError(f"no continue preset {preset!r} in {self.config.source}",
                              hint=f"Known: {', '.join(self.config.presets)}.")
        stage = self.config.presets[preset]
        if epochs is not None:
            stage = dataclasses.replace(stage, epochs=epochs)
        sidecar = read_sidecar(self.checkpoint_dir, name)
        data = self._data(DataConfig(**sidecar["config"]["data"]), sidecar["config"]["run"]["seed"])
        record = self._checked_record(name, sidecar, data)
        model = self._build(record)
        start = _Start(load_weights(self.checkpoint_dir, name, sidecar), name,
                       (sidecar["val_loss"], sidecar["val_accuracy"]))
        result, _ = self._run_stage(
            model, record, data, stage, sidecar["stage_idx"] + 1, start, new_run_id(),
            best_name=free_name(self.checkpoint_dir, f"{name}_{preset}"), final_name=None,
            stage_idx_saved=sidecar["stage_idx"])
        return result

    def evaluate(self, name: str, *, data_spec: str | None = None,
                 split: str = "val") -> Evaluation:
        """Score checkpoint ``name`` on a split of its own data, or of ``data_spec``."""
        sidecar = read_sidecar(self.checkpoint_dir, name)
        data_config = DataConfig(**sidecar["config"]["data"])
        if data_spec is not None:
            data_config = dataclasses.replace(data_config, source=data_spec)
        data = self._data(data_config, sidecar["config"]["run"]["seed"])
        model = self._build(self._checked_record(name, sidecar, data))
        _load_state(model, load_weights(self.checkpoint_dir, name, sidecar), name)
        target = TensorSplit.from_split(data.split(split), self.device)
        logits = predict_logits(model, target, data.motion, self._batch_size())
        loss, accuracy = score(logits, target.y)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        top5 = (top == target.y[:, None]).any(dim=1).float().mean().item()
        hits = logits.argmax(dim=1) == target.y
        per_class = {data.classes[k]: hits[target.y == k].float().mean().item()
                     for k in sorted(set(target.y.tolist()))}
        return Evaluation(checkpoint=name, source=data.source, split=split, count=len(target),
                          loss=loss, accuracy=accuracy, top5_accuracy=top5, per_class=per_class)

    # --- shared machinery --------------------------------------------------------------

    def _run_stage(self, model: nn.Module, record: dict[str, Any], data: PreparedData,
                   stage: StageConfig, stage_idx: int, start: _Start, run_id: str, *,
                   best_name: str, final_name: str | None, stage_idx_saved: int | None = None
                   ) -> tuple[StageResult, _Start]:
        """Train one stage from ``start``, saving each new best as ``best_name``."""
        seed = self.config.run.seed
        if start.state is not None:
            _load_state(model, start.state, start.checkpoint)
        self.reporter.stage_started(
            stage_idx=stage_idx, name=stage.name, description=stage.description,
            epochs=stage.epochs, batches=-(-len(data.splits["train"]) // self._batch_size()),
            start=start.checkpoint or "fresh weights")
        started = time.perf_counter()
        saved_idx = stage_idx if stage_idx_saved is None else stage_idx_saved

        def save(name: str, state: State, metrics: EpochMetrics) -> None:
            sidecar = self._sidecar(saved_idx, stage, metrics, time.perf_counter() - started,
                                    record, data, start.checkpoint, run_id)
            save_checkpoint(self.checkpoint_dir, name, state, sidecar)

        torch.manual_seed(seed * 7919 + stage_idx)  # dropout draws repeat exactly
        setup = StageSetup(stage_idx=stage_idx, batch_size=self._batch_size(),
                           devices=self.devices, seed=seed, monitor=self.config.run.monitor,
                           motion=data.motion, mirror=mirror_permutation(data.joints))
        outcome = fit_stage(
            model, stage, TensorSplit.from_split(data.splits["train"], self.device),
            TensorSplit.from_split(data.splits["val"], self.device), setup, self.reporter,
            on_best=lambda state, metrics: save(best_name, state, metrics))
        if final_name is not None:
            save(final_name, outcome.final_state, outcome.final)
        best = (outcome.best.val_loss, outcome.best.val_accuracy)
        gain = None if start.metrics is None else improvement(best, start.metrics,
                                                              self.config.run.monitor)
        result = StageResult(
            stage_idx=saved_idx, name=stage.name, description=stage.description,
            val_loss=best[0], val_accuracy=best[1], best_epoch=outcome.best.epoch,
            epochs=stage.epochs, training_time=outcome.seconds, checkpoint=best_name,
            final_checkpoint=final_name, parent=start.checkpoint, gain=gain)
        self.reporter.stage_done(result)
        return result, _Start(outcome.best_state, best_name, best)

    def _saved_start(self, stage_idx: int, record: dict[str, Any]) -> _Start:
        """Start from ``best_model_stage_{stage_idx}`` on disk when it exists."""
        name = best_checkpoint_name(stage_idx)
        if stage_idx < 1 or not sidecar_path(self.checkpoint_dir, name).is_file():
            return _Start(None, None, None)
        sidecar = read_sidecar(self.checkpoint_dir, name)
        if sidecar["model"] != record:
            raise CheckpointError(
                f"{name} was trained with another model or data than this config",
                hint="Run from stage 1 (--stages all), or use the config it was trained with.")
        return _Start(load_weights(self.checkpoint_dir, name, sidecar), name,
                      (sidecar["val_loss"], sidecar["val_accuracy"]))

    def _data(self, data_config: DataConfig, seed: int) -> PreparedData:
        source = data_config.source
        path = Path(source.removeprefix("npz:"))
        if path.suffix == ".npz" and path.exists():
            source = str(path.resolve())  # the sidecar must find it from any folder
        return load_data(source, frames=data_config.frames, motion=data_config.motion,
                         val_fraction=data_config.val_fraction, seed=seed)

    @staticmethod
    def _model_record(name: str, settings: Mapping[str, Any], data: PreparedData) -> dict[str, Any]:
        """What rebuilds the network, as the sidecar's ``model`` key stores it."""
        return {"name": name, "settings": resolved_settings(name, settings),
                "num_classes": len(data.classes),
                "in_features": feature_count(data.num_joints, data.num_channels, data.motion),
                "num_frames": data.num_frames}

    def _build(self, record: Mapping[str, Any]) -> nn.Module:
        torch.manual_seed(self.config.run.seed)  # the same config starts from the same weights
        model = build_model(record["name"], in_features=record["in_features"],
                            num_classes=record["num_classes"], num_frames=record["num_frames"],
                            **record["settings"])
        return model.to(self.device)

    def _checked_record(self, name: str, sidecar: Mapping[str, Any],
                        data: PreparedData) -> dict[str, Any]:
        """The sidecar's model record, after checking that ``data`` fits it."""
        record = sidecar["model"]
        expected = self._model_record(record["name"], record["settings"], data)
        if record != expected or list(data.classes) != list(sidecar["classes"]):
            raise DataError(
                f"the data {data.source!r} does not fit checkpoint {name} "
                "(other landmarks, channels, frames or classes)",
                hint="Use data with the layout and classes the checkpoint was trained on.")
        return record

    def _sidecar(self, stage_idx: int, stage: StageConfig, metrics: EpochMetrics,
                 seconds: float, record: dict[str, Any], data: PreparedData, parent: str | None,
                 run_id: str) -> dict[str, Any]:
        config = self.config.to_dict()
        config["data"]["source"] = data.source
        return {
            "stage_idx": stage_idx, "stage_name": stage.name,
            "stage_description": stage.description, "val_loss": metrics.val_loss,
            "val_accuracy": metrics.val_accuracy, "epoch": metrics.epoch,
            "training_time": round(seconds, 3), "classes": list(data.classes),
            "model": record, "parent": parent, "run_id": run_id,
            "slt_version": __version__,
            "config": {"run": config["run"], "data": config["data"],
                       "model": config["model"], "stage": dataclasses.asdict(stage)},
        }

    def _batch_size(self) -> int:
        return self.config.run.batch_size * self.devices


def _load_state(model: nn.Module, state: State, name: str | None) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{name}: weights do not fit the network its sidecar describes",
                              hint=str(exc).splitlines()[0]) from None
