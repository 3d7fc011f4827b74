"""Forward+backward time of each registered model on one CPU batch.

    python benchmarks/model_speed.py [--batch 64 --frames 30 --landmarks 56]
        [--epoch DATA [--epochs 2]]

The clips are shaped as slt makes them of MediaPipe data with the default landmark
selection: ``--landmarks`` (56: both hands and the upper body; 96 with the lips) of 3
coordinates, their motion and a presence flag, 7 features each (392 for 56); the graph
network gets those landmarks' names.

With ``--epoch DATA`` (an ``.npz`` path or any ``--data`` spec), each model also trains
``--epochs`` epochs of the augmentation stage on DATA through the engine (its
augmentation, mixup, clipping and validation included) and the median epoch's seconds
are printed beside the step time: the time an epoch takes a user on this machine.

Target for the default model on a 2-core CPU: well under 0.1 s a step (best of 10;
other processes on a shared machine only ever add time).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from slt_cli import Reporter, Trainer, load_config
from slt_cli.data.landmarks import select_landmarks
from slt_cli.data.transforms import feature_count
from slt_cli.models import DEFAULT_MODEL, MODEL_BUILDERS, build_model, takes_joints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--landmarks", type=int, default=56, help="56 or 96 (with the lips)")
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--epoch", metavar="DATA", help="also time training epochs on DATA")
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed with --epoch")
    options = parser.parse_args()
    torch.manual_seed(0)
    names = [mark.name for mark in select_landmarks("hands+pose+lips")][:options.landmarks]
    features = feature_count(len(names), 3, motion=True)
    clips = torch.randn(options.batch, options.frames, features)
    labels = torch.randint(0, options.classes, (options.batch,))
    print(f"{options.batch} clips of {options.frames} frames x {features} features "
          f"({len(names)} landmarks), {torch.get_num_threads()} threads")
    for name in MODEL_BUILDERS:
        model = build_model(name, in_features=features, num_classes=options.classes,
                            num_frames=options.frames,
                            joints=names if takes_joints(name) else None)
        seconds = []
        for _ in range(options.repeats + 1):
            started = time.perf_counter()
            F.cross_entropy(model(clips), labels).backward()
            seconds.append(time.perf_counter() - started)
        seconds = seconds[1:]  # the first step pays for one-off allocations
        params = sum(p.numel() for p in model.parameters())
        marker = " (default)" if name == DEFAULT_MODEL else ""
        epoch = (f"  epoch {epoch_seconds(name, options.epoch, options.epochs):6.1f} s"
                 if options.epoch else "")
        print(f"{name:<17}{params:>9,} params  best {min(seconds) * 1e3:6.1f} ms  "
              f"median {statistics.median(seconds) * 1e3:6.1f} ms{epoch}{marker}")


class EpochClock(Reporter):
    """The seconds of each trained epoch (epoch 0, a scoring of the start, is left out)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def epoch_done(self, metrics: Any) -> None:
        if metrics.epoch > 0:
            self.seconds.append(metrics.seconds)


def epoch_seconds(model: str, data: str, epochs: int) -> float:
    """Median seconds of an epoch of the default augmentation stage, with ``model``,
    trained from scratch on ``data`` by the engine in a temporary folder."""
    config = load_config()
    stage = dataclasses.replace(config.stages[1], epochs=epochs, patience=0)
    config = dataclasses.replace(
        config, stages=(stage,), data=dataclasses.replace(config.data, source=data),
        model=dataclasses.replace(config.model, name=model, settings={}))
    clock = EpochClock()
    with tempfile.TemporaryDirectory() as folder:
        Trainer(config, checkpoint_dir=Path(folder), reporter=clock).train(force=True)
    return statistics.median(clock.seconds)


if __name__ == "__main__":
    main()
