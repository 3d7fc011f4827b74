"""``slt distill``: a small student network trained to match one or more teachers.

The student trains one stage of the config (``training.StageRun``, the engine's loop) on
its teachers' data; each step's loss, per clip, is

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
        + (1 - alpha) * cross-entropy (with the stage's label smoothing and mixup)

with the teachers' logits computed on the very batch the student sees, augmentations and
mixup included. Several teachers, or a teacher that is itself an ensemble, are one
``models.ensemble.Ensemble``: the soft targets are their mean probabilities. At
``alpha = 0`` the teachers are not run and the student is the control: the same
network, stage and epochs, trained on the labels alone.

The student is an ordinary checkpoint (its best epoch on validation); its sidecar's
``distilled`` records the teachers with their weights' SHA-256, alpha, T and the
student's parameter count. Afterwards, with the ``onnx`` extra, it is exported
(``export.export_checkpoint``) and its file size and CPU latency (ONNX Runtime, one
thread, one sequence at a time, the median) are measured; the command compares them
with ``--max-mb`` / ``--max-ms``. Like the engine, this module never prints.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slt_cli.cfg.config import Config
from slt_cli.common.extras import installed
from slt_cli.common.reporting import EpochMetrics, Reporter
from slt_cli.data import PreparedData, load_configured
from slt_cli.data.transforms import dominant_hand_swap, mirror_permutation, right_handed
from slt_cli.errors import CheckpointError, SltError
from slt_cli.models.ensemble import Ensemble
from slt_cli.run.devices import resolve_device, resolve_precision
from slt_cli.run.plan import Step
from slt_cli.run.records import (
    build_network,
    checked_record,
    load_state,
    model_record,
    stage_sidecar,
)
from slt_cli.run.teaching import soft_targets
from slt_cli.run.training import (
    StageRun,
    StageSetup,
    State,
    TensorSplit,
    predict_logits,
    score,
)
from slt_cli.store.checkpoints import (
    check_name,
    load_weights,
    new_run_id,
    read_sidecar,
    save_checkpoint,
    settle,
    sidecar_path,
    update_sidecar,
    weights_path,
)
from slt_cli.store.lock import folder_lock
from slt_cli.store.sidecar import Distillation, Teacher
from slt_cli.use.ensemble import check_layout

STAGE_NAME = "distilled"  # the stage_name of every student's checkpoint
DEFAULT_STAGE = 2  # the config's stage the student trains with: augmentations on, from scratch
# Student presets: [model] tables smaller than the default network (64 wide, 2 deep:
# 168k parameters on mediapipe-dev, 144k on LIBRAS); tiny has 33k and 21k, small 61k
# and 44k.
STUDENT_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"name": "conv_transformer", "dim": 32, "depth": 1},
    "small": {"name": "conv_transformer", "dim": 48, "depth": 1},
}
DEFAULT_STUDENT = "small"
MB = 1_000_000  # budgets are in MB of 10^6 bytes, as app stores count them


@dataclass(frozen=True)
class Footprint:
    """The exported student: its ONNX file and what one sequence costs on the CPU."""

    path: Path
    size_mb: float
    ms_per_sequence: float  # median, ONNX Runtime, one thread, batch 1


@dataclass(frozen=True)
class DistillResult:
    """What ``distill`` saved and how it scored on the teachers' validation data."""

    name: str
    teachers: tuple[str, ...]
    alpha: float
    temperature: float
    parameters: int  # the student's
    teacher_parameters: int
    val_loss: float
    val_accuracy: float
    teacher_val_accuracy: float  # the teachers (their mean probabilities) on the same clips
    agreement: float  # share of validation clips where student and teachers agree (top-1)
    best_epoch: int
    epochs: int
    seconds: float
    source: str
    footprint: Footprint | None  # None without the onnx extra
    notes: tuple[str, ...]


def check_request(teachers: Sequence[str], name: str, alpha: float, temperature: float,
                  epochs: int | None, student: str | None) -> tuple[list[str], str]:
    """The teachers' and the student's names, the numbers checked.

    Raises:
        SltError: alpha outside [0, 1], a temperature <= 0, epochs < 1, an unknown
            preset, no teacher or one named twice.
    """
    if not 0.0 <= alpha <= 1.0:
        raise SltError(f"--alpha {alpha}: must be between 0 and 1",
                       hint="0 trains on the labels alone, 1 on the teachers alone.")
    if not temperature > 0.0:
        raise SltError(f"--temperature {temperature}: must be > 0", hint="Try 2 to 5.")
    if epochs is not None and epochs < 1:
        raise SltError(f"--epochs {epochs}: must be at least 1")
    if student is not None and student not in STUDENT_PRESETS:
        raise SltError(f"unknown student preset {student!r}",
                       hint=f"Use one of {', '.join(STUDENT_PRESETS)}, or a [model] table "
                            "through --config.")
    if not teachers:
        raise SltError("name at least one teacher checkpoint")
    names = [check_name(teacher) for teacher in teachers]
    if len(set(names)) < len(names):
        raise SltError("a teacher is named more than once", hint="Name each checkpoint once.")
    return names, check_name(name)


def distill(config: Config, teachers: Sequence[str], name: str, *,
            student: Mapping[str, Any], alpha: float = 0.7, temperature: float = 3.0,
            epochs: int | None = None, stage_idx: int = DEFAULT_STAGE,
            data_spec: str | None = None, measure: bool = True,
            checkpoint_dir: Path | str | None = None, device: str = "auto",
            reporter: Reporter | None = None) -> DistillResult:
    """Train checkpoint ``name``, a ``student`` network, from ``teachers``.

    Args:
        config: Supplies the stage (``stage_idx``, 1-based) and the run settings; the
            data, its split and the seed are the first teacher's.
        teachers: Checkpoint names in ``checkpoint_dir``, of one data layout.
        name: The student's checkpoint name; it must not exist yet.
        student: A ``[model]`` table: ``name`` and settings (``STUDENT_PRESETS``).
        epochs: The stage's epochs instead of the config's.
        data_spec: Other data of the teachers' layout to train on.
        measure: Export the student to ONNX and measure it (needs the onnx extra).

    Raises:
        SltError: for the checks of ``check_request`` or a stage that does not exist.
        CheckpointError: an unknown teacher, or ``name`` taken.
        DataError: teachers of different layouts, or data they do not fit.
    """
    folder = Path(checkpoint_dir or config.run.checkpoint_dir)
    reporter = reporter or Reporter()
    names, name = check_request(teachers, name, alpha, temperature, epochs, None)
    if not 1 <= stage_idx <= len(config.stages):
        raise SltError(f"--stage {stage_idx}: the config has stages 1 to {len(config.stages)}")
    _refuse_existing(folder, name)
    if measure and installed("onnxruntime") and installed("onnx"):
        from slt_cli.use.export import out_path

        out_path(folder, name, "onnx", None)  # the student's export is new too, like its name
    sidecars = [read_sidecar(folder, teacher) for teacher in names]
    check_layout(names, sidecars)
    first = sidecars[0].config
    data_config = (first.data if data_spec is None
                   else dataclasses.replace(first.data, source=data_spec))
    run = dataclasses.replace(config.run, seed=first.run.seed)
    config = dataclasses.replace(config, run=run, data=data_config)
    # other data is matched to the teachers' landmarks by meaning
    data = load_configured(data_config, run.seed, reporter,
                           joints=sidecars[0].joints if data_spec is not None else None)
    target = torch.device(resolve_device(device))
    precision = resolve_precision(run.precision, target)
    networks = []
    for teacher, sidecar in zip(names, sidecars, strict=True):
        network = build_network(checked_record(teacher, sidecar, data), seed=0)
        load_state(network, load_weights(folder, teacher, sidecar), teacher)
        networks.append(network)
    teacher_net = (networks[0] if len(networks) == 1 else Ensemble(networks)).to(target).eval()
    teacher_net.requires_grad_(False)
    settings = {key: value for key, value in student.items() if key != "name"}
    record = model_record(student["name"], settings, data)
    model = build_network(record, seed=run.seed).to(target)
    stage = config.stages[stage_idx - 1]
    if epochs is not None:
        stage = dataclasses.replace(stage, epochs=epochs)
    stage = Step(stage_idx, stage_idx, stage, name, None).fitted(data.num_frames)
    train, val = (_tensors(data, split, data_config.dominant_hand, target)
                  for split in ("train", "val"))
    mirror = mirror_permutation(data.joints)
    setup = StageSetup(stage_idx=stage_idx, batch_size=run.batch_size, devices=1, seed=run.seed,
                       monitor=run.monitor, min_batches=run.min_batches_per_epoch,
                       motion=data.motion, mirror=mirror, precision=precision,
                       mirror_average=run.mirror_average, margin=run.selection_margin,
                       extra_loss=None if alpha == 0.0
                       else soft_targets(teacher_net, alpha, temperature, precision))
    lineage = Distillation(
        teachers=tuple(Teacher(t, s.weights_sha256) for t, s in zip(names, sidecars, strict=True)),
        alpha=alpha, temperature=temperature, parameters=_count(model))
    run_id = new_run_id()
    description = (f"distilled from {', '.join(names)} (alpha {alpha:g}, T {temperature:g})"
                   if alpha > 0 else f"control: labels only (teachers {', '.join(names)} unused)")

    def save(state: State, metrics: EpochMetrics) -> None:
        sidecar = stage_sidecar(config, stage_idx, stage, metrics, stage_run.elapsed, record,
                                data, None, run_id, stage_time=stage_run.elapsed)
        save_checkpoint(folder, name, state, sidecar.replace(
            stage_name=STAGE_NAME, stage_description=description, distilled=lineage))

    with folder_lock(folder, run_id):
        settle(folder)
        _refuse_existing(folder, name)
        stage_run = StageRun(model, stage, train, val, setup, reporter)
        reporter.stage_started(stage_idx=stage_idx, name=STAGE_NAME, description=description,
                               epochs=stage.epochs, batches=stage_run.batches,
                               start="fresh weights")
        outcome = stage_run.run(on_best=save, on_epoch_end=lambda _: None,
                                should_stop=lambda: False)
        update_sidecar(folder, name, stage_time=round(outcome.seconds, 3))
    load_state(model, outcome.best_state, name)
    averaged = mirror if run.mirror_average else None
    student_logits = predict_logits(model, val, data.motion, run.batch_size, precision, averaged)
    teacher_logits = predict_logits(teacher_net, val, data.motion, run.batch_size, precision,
                                    averaged)
    notes = []
    footprint = None
    if measure and installed("onnxruntime") and installed("onnx"):
        footprint = measure_footprint(folder, name)
    elif measure:
        notes.append("the onnx extra is not installed: the student's ONNX size and latency "
                     "were not measured (pip install 'slt[onnx]')")
    return DistillResult(
        name=name, teachers=tuple(names), alpha=alpha, temperature=temperature,
        parameters=lineage.parameters, teacher_parameters=_count(teacher_net),
        val_loss=outcome.best.val_loss, val_accuracy=outcome.best.val_accuracy,
        teacher_val_accuracy=score(teacher_logits, val.y)[1],
        agreement=(student_logits.argmax(-1) == teacher_logits.argmax(-1)).float().mean().item(),
        best_epoch=outcome.best.epoch, epochs=stage.epochs, seconds=outcome.seconds,
        source=data.source, footprint=footprint, notes=tuple(notes))


def measure_footprint(folder: Path, name: str, *, count: int = 32,
                      repeats: int = 3) -> Footprint:
    """Export checkpoint ``name`` to ONNX (``exports/NAME.onnx``, which must not exist) and
    time it: ONNX Runtime on one CPU thread, ``count`` random sequences of 1 to 3 x the
    model's frames, one at a time, ``repeats`` passes after a warm-up; the median."""
    import onnxruntime

    from slt_cli.use.export import INPUT_NAME, export_checkpoint, metadata_path, random_sequences

    exported = export_checkpoint(folder, name, "onnx")
    meta = json.loads(metadata_path(exported.path).read_text(encoding="utf-8"))
    _, joints, channels = meta["input"]["shape"]
    frames = meta["preprocessing"]["frames"]
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(exported.path), options,
                                           providers=["CPUExecutionProvider"])
    sequences = random_sequences(count, joints, channels, frames, seed=0)
    times = []
    for attempt in range(repeats + 1):
        for sequence in sequences:
            started = time.perf_counter()
            session.run(None, {INPUT_NAME: sequence})
            if attempt:  # the first pass warms up
                times.append(time.perf_counter() - started)
    return Footprint(path=exported.path, size_mb=exported.size / MB,
                     ms_per_sequence=statistics.median(times) * 1e3)


def _tensors(data: PreparedData, split: str, dominant_hand: str,
             device: torch.device) -> TensorSplit:
    """A split on the device as the networks see it (as ``Trainer`` makes it: the
    dominant hand on the right when ``[data] dominant_hand`` asks)."""
    tensors = TensorSplit.from_split(data.split(split), device)
    swap = dominant_hand_swap(data.joints, dominant_hand)
    return tensors if swap is None else TensorSplit(right_handed(tensors.x, *swap), tensors.y)


def _count(network: nn.Module) -> int:
    return sum(parameter.numel() for parameter in network.parameters())


def _refuse_existing(folder: Path, name: str) -> None:
    if sidecar_path(folder, name).exists() or weights_path(folder, name).exists():
        raise CheckpointError(f"a checkpoint named {name} already exists in {folder}",
                              hint="Choose another --name; nothing was changed.")
