"""Training throughput of slt's engine against the plainest PyTorch loop.

For the default model, batch size and data, one epoch of ``training.StageRun``
(augmentation, schedule, gradient clipping, EMA, loss/accuracy metrics, progress
events) is timed against one epoch of a bare loop written here: the same model,
AdamW, batch size and tensors on the device, random index batches (gathered
with ``index_select``, as the engine does), ``features()`` (the model needs them)
and nothing else. The two alternate epoch by epoch (ABAB),
so a machine shared with other work slows both alike; the medians are compared.
Also: evaluation samples/s, the model's FLOPs per sample (forward + backward, by
``torch.utils.flop_counter``) and the machine's measured matmul FLOP/s.

    python benchmarks/throughput.py [--device auto] [--precision auto|bf16|fp32]
        [--compile] [--augment/--no-augment] [--repeats 7] [--threads N]
        [--interleave auto|batch|epoch]

Prints one JSON line. Target: ratio >= 0.95 with augmentation, >= 0.98 without.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from slt_cli.cfg.config import AugmentConfig, Config, load_config
from slt_cli.common.reporting import Reporter
from slt_cli.data import PreparedData, load_data
from slt_cli.data.transforms import feature_count, features, mirror_permutation
from slt_cli.models import build_model
from slt_cli.run.devices import resolve_device
from slt_cli.run.training import StageRun, StageSetup, TensorSplit, predict_logits, set_dropout


class Interleaved(Reporter):
    """Runs the bare loop beside the engine and keeps both loops' seconds per epoch.

    On the CPU a bare step follows each engine step (ABAB by the batch), so whatever
    else the machine runs hits both loops alike; on a GPU, where a sync after every
    step would hide what the engine gains by not syncing, a bare epoch follows each
    engine epoch instead. Validation, which the bare loop does not do, is left out.
    """

    def __init__(self, clock: Callable[[], float], device: torch.device,
                 bare_step: Callable[[], None], per_batch: bool) -> None:
        self.clock, self.device, self.bare_step, self.per_batch = (
            clock, device, bare_step, per_batch)
        self.mark = 0.0  # when the engine's clock last started
        self.slt = self.bare = 0.0  # this epoch's seconds so far
        self.slt_epochs: list[float] = []
        self.bare_epochs: list[float] = []

    def start_epoch(self, batches: int) -> None:
        """Called between epochs: in epoch mode, the bare loop's epoch runs here."""
        if not self.per_batch and batches:
            self.bare = self._time(lambda: [self.bare_step() for _ in range(batches)])
            self.bare_epochs.append(self.bare)
        self.mark = self.clock()

    def batch_done(self, *, batch: int, batches: int, loss: float | None = None) -> None:
        if self.per_batch or batch == batches:
            sync(self.device)
            self.slt += self.clock() - self.mark
        if self.per_batch:
            self.bare += self._time(self.bare_step)
            self.mark = self.clock()
        if batch == batches:
            self.slt_epochs.append(self.slt)
            if self.per_batch:
                self.bare_epochs.append(self.bare)
            self.slt = self.bare = 0.0

    def _time(self, work: Callable[[], object]) -> float:
        sync(self.device)
        started = self.clock()
        work()
        sync(self.device)
        return self.clock() - started


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str) -> AbstractContextManager[object]:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def resolved_precision(device: torch.device, precision: str) -> str:
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def bare_step(model: nn.Module, optimizer: torch.optim.Optimizer, train: TensorSplit,
              batch_size: int, motion: bool, generator: torch.Generator,
              precision: str) -> None:
    """One step of the plainest loop."""
    device = train.x.device
    index = torch.randint(len(train), (batch_size,), generator=generator, device=device)
    with autocast(device, precision):
        logits = model(features(train.x.index_select(0, index), motion))
    loss = F.cross_entropy(logits.float(), train.y.index_select(0, index))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def default_run(spec: str, device: torch.device) -> tuple[
        Config, PreparedData, TensorSplit, TensorSplit, nn.Module]:
    """The default config, its data from ``spec``, the train and val tensors on
    ``device`` and the default model, seeded as the engine seeds it."""
    config = load_config()
    data = load_data(spec, frames=config.data.frames, motion=config.data.motion,
                     val_fraction=config.data.val_fraction, seed=config.run.seed)
    train = TensorSplit.from_split(data.splits["train"], device)
    val = TensorSplit.from_split(data.splits["val"], device)
    torch.manual_seed(config.run.seed)
    model = build_model(config.model.name, num_classes=len(data.classes),
                        in_features=feature_count(data.num_joints, data.num_channels,
                                                  data.motion),
                        num_frames=data.num_frames, **config.model.settings).to(device)
    return config, data, train, val, model


def engine_setup(**values: object) -> StageSetup:
    """A StageSetup with only the fields this version of the engine knows."""
    known = {field.name for field in dataclasses.fields(StageSetup)}
    return StageSetup(**{key: value for key, value in values.items() if key in known})


def timed(run: Callable[[], object], device: torch.device,
          clock: Callable[[], float] = time.perf_counter) -> float:
    sync(device)
    started = clock()
    run()
    sync(device)
    return clock() - started


def matmul_flops(device: torch.device, precision: str, size: int, clock: Callable[[], float],
                 repeats: int = 10) -> float:
    """The best FLOP/s of a square matmul: what this machine can do at most."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up
    best = min(timed(lambda: a @ b, device, clock) for _ in range(repeats))
    return 2 * size**3 / best


def model_flops(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                precision: str) -> float:
    """FLOPs of one forward + backward of ``inputs``, per sample."""
    with FlopCounterMode(display=False) as counter:
        with autocast(inputs.device, precision):
            logits = model(inputs)
        F.cross_entropy(logits.float(), targets).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / inputs.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    parser.add_argument("--compile", action="store_true", help="torch.compile both loops")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--repeats", type=int, default=7, help="timed epochs of each loop")
    parser.add_argument("--interleave", default="auto", choices=("auto", "batch", "epoch"),
                        help="alternate the loops by the batch (auto on the CPU) or by the "
                             "epoch (auto on a GPU)")
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (0: its default); 1 keeps a shared "
                             "machine from oversubscribing its cores")
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)

    device = resolve_device(options.device)
    precision = resolved_precision(device, options.precision)
    config, data, train, val, model = default_run(options.data, device)
    bare = copy.deepcopy(model)

    # The augmentation stage's settings, with EMA on: the engine's whole per-step work.
    stage = dataclasses.replace(config.stages[1], averaging="ema",
                                epochs=options.repeats + 1)  # + 1 warm-up epoch
    if not options.augment:
        stage = dataclasses.replace(stage, augment=AugmentConfig())
    setup = engine_setup(stage_idx=2, batch_size=config.run.batch_size, devices=1,
                         seed=config.run.seed, monitor=config.run.monitor, motion=data.motion,
                         min_batches=config.run.min_batches_per_epoch,
                         mirror=mirror_permutation(data.joints), precision=precision,
                         compile=options.compile)
    if "precision" not in {f.name for f in dataclasses.fields(StageSetup)} and (
            precision != "fp32" or options.compile):
        parser.error("this version of the engine has no precision or compile settings")
    set_dropout(bare, stage.dropout)
    bare.train()
    bare_model = torch.compile(bare) if options.compile else bare
    # The same optimiser as the engine: AdamW with the fused kernel.
    optimizer = torch.optim.AdamW(bare.parameters(), lr=stage.lr, fused=True)
    generator = torch.Generator(device=device).manual_seed(1)
    # One thread on the CPU: its CPU time is the work done, whatever else the machine
    # runs; otherwise (several threads, a GPU) wall time.
    cpu_clock = device.type == "cpu" and torch.get_num_threads() == 1
    clock = time.process_time if cpu_clock else time.perf_counter
    per_batch = options.interleave == "batch" or (
        options.interleave == "auto" and device.type == "cpu")
    timer = Interleaved(clock, device, per_batch=per_batch, bare_step=lambda: bare_step(
        bare_model, optimizer, train, config.run.batch_size, data.motion, generator, precision))
    stage_run = StageRun(model, stage, train, val, setup, timer)
    timer.start_epoch(0)
    stage_run.run(on_best=lambda *_: None, should_stop=lambda: False,
                  on_epoch_end=lambda run: timer.start_epoch(run.batches))

    samples = stage_run.batches * config.run.batch_size
    slt_seconds, bare_seconds = timer.slt_epochs[1:], timer.bare_epochs[1:]  # after warm-up
    slt_rate = samples / statistics.median(slt_seconds)
    bare_rate = samples / statistics.median(bare_seconds)
    eval_seconds = [timed(lambda: predict_logits(stage_run.scorer, train, data.motion,
                                                 config.run.batch_size), device, clock)
                    for _ in range(options.repeats + 1)][1:]
    eval_rate = len(train) / statistics.median(eval_seconds)
    index = torch.arange(config.run.batch_size, device=device)
    flops = model_flops(bare, features(train.x[index], data.motion), train.y[index], precision)
    machine = matmul_flops(device, precision, 8192 if device.type == "cuda" else 2048, clock)
    # How much the epochs varied: (slowest - fastest) / median, per loop.
    spread = {name: round((max(values) - min(values)) / statistics.median(values), 3)
              for name, values in (("slt", slt_seconds), ("bare", bare_seconds))}
    print(json.dumps({
        "device": str(device), "precision": precision, "compile": options.compile,
        "augment": options.augment, "interleave": "batch" if per_batch else "epoch",
        "clock": "cpu" if cpu_clock else "wall",
        "threads": torch.get_num_threads(), "batch_size": config.run.batch_size,
        "repeats": options.repeats, "slt_samples_per_s": round(slt_rate, 1),
        "bare_samples_per_s": round(bare_rate, 1), "ratio": round(slt_rate / bare_rate, 3),
        "eval_samples_per_s": round(eval_rate, 1), "flops_per_sample": round(flops),
        "machine_matmul_flops": round(machine), "mfu": round(slt_rate * flops / machine, 4),
        "spread": spread,
    }))


if __name__ == "__main__":
    main()
