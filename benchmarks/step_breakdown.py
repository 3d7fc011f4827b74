"""Where an engine training step's time goes, piece by piece, inside the loop.

    python benchmarks/step_breakdown.py [--threads 1] [--steps 120]

Builds the engine's ``StageRun`` for the default model, data and augmentation stage
(EMA on, as ``throughput.py`` does), then times each piece of its step on real batches
with a bare step (gather, ``features()``, forward, backward, AdamW) after each one, so
the caches are as cold as training leaves them: the batch's gather and augmentation,
features, mixup, forward and backward, clipping, the optimiser and schedule, EMA and
metrics. Medians over the steps after 20 warm-up steps, in milliseconds, and both
steps' totals. The pieces follow ``StageRun._step``; a change there should show here.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

from slt_cli.common.reporting import Reporter
from slt_cli.data.transforms import augment, features, mirror_permutation, mix
from slt_cli.run.training import StageRun, StageSetup, set_dropout

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import default_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=120)
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    config, data, train, val, model = default_run("synthetic", torch.device("cpu"))
    bare = copy.deepcopy(model)
    stage = dataclasses.replace(config.stages[1], averaging="ema")
    setup = StageSetup(stage_idx=2, batch_size=config.run.batch_size, devices=1,
                       seed=config.run.seed, monitor=config.run.monitor, motion=data.motion,
                       min_batches=config.run.min_batches_per_epoch,
                       mirror=mirror_permutation(data.joints))
    run = StageRun(model, stage, train, val, setup, Reporter())
    if run.bank is not None:
        run.bank.new_epoch(1, run.batches, setup.batch_size * train.x[0].numel())
    set_dropout(model, stage.dropout)
    set_dropout(bare, stage.dropout)
    model.train()
    bare.train()
    optimizer = torch.optim.AdamW(bare.parameters(), lr=stage.lr, fused=True)
    draws = torch.Generator().manual_seed(1)
    seconds: dict[str, list[float]] = defaultdict(list)

    def timed(name: str, work):
        started = time.perf_counter()
        result = work()
        seconds[name].append(time.perf_counter() - started)
        return result

    def engine_step(index: torch.Tensor, batch: int) -> None:
        noise = None if run.bank is None else run.bank.window(batch % run.batches)
        augmented = timed("gather + augment", lambda: augment(
            train.x.index_select(0, index), stage.augment, run.noise, run.mirror, noise,
            run.hands))
        inputs = timed("features", lambda: features(augmented, data.motion))
        targets = train.y.index_select(0, index)
        inputs, order, weights = timed("mixup", lambda: mix(inputs, stage.augment.mixup,
                                                            run.noise))

        def forward_backward() -> tuple[torch.Tensor, torch.Tensor]:
            loss, correct = run.head(inputs, targets, label_smoothing=stage.label_smoothing,
                                     partners=targets[order], weights=weights)
            run.gradients.zero()
            loss.mean().backward()
            return loss, correct

        loss, correct = timed("forward + backward", forward_backward)
        timed("clipping", lambda: run.gradients.clip(stage.grad_clip))
        timed("optimiser + schedule", lambda: (run.optimizer.step(), run.schedule.step()))
        timed("EMA + metrics", lambda: (run.averaged.update_parameters(model),
                                        run.metrics.add(loss.detach(), correct)))

    def bare_step() -> None:
        index = torch.randint(len(train), (setup.batch_size,), generator=draws)
        inputs = timed("bare: gather + features",
                       lambda: features(train.x.index_select(0, index), data.motion))

        def forward_backward() -> None:
            loss = F.cross_entropy(bare(inputs), train.y.index_select(0, index))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()

        timed("bare: forward + backward", forward_backward)
        timed("bare: optimiser", optimizer.step)

    for step in range(options.steps + 20):
        engine_step(torch.randint(len(train), (setup.batch_size,), generator=draws), step)
        bare_step()
        if step == 19:
            seconds.clear()
    medians = {name: statistics.median(values) * 1e3 for name, values in seconds.items()}
    for name, value in medians.items():
        print(f"{name:<26}{value:8.3f} ms")
    engine = sum(v for k, v in medians.items() if not k.startswith("bare"))
    plain = sum(v for k, v in medians.items() if k.startswith("bare"))
    print(f"{'engine step':<26}{engine:8.3f} ms\n{'bare step':<26}{plain:8.3f} ms "
          f"(ratio {plain / engine:.3f})")


if __name__ == "__main__":
    main()
