"""Forward+backward time of each registered model on one CPU batch.

    python benchmarks/model_speed.py [--batch 64 --frames 30 --landmarks 56]

The clips are shaped as slt makes them of MediaPipe data with the default landmark
selection: ``--landmarks`` (56: both hands and the upper body; 96 with the lips) of 3
coordinates, their motion and a presence flag, 7 features each (392 for 56); the graph
network gets those landmarks' names.

Target for the default model on a 2-core CPU: well under 0.1 s a step (best of 10;
other processes on a shared machine only ever add time).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

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
        print(f"{name:<17}{params:>9,} params  best {min(seconds) * 1e3:6.1f} ms  "
              f"median {statistics.median(seconds) * 1e3:6.1f} ms{marker}")


if __name__ == "__main__":
    main()
