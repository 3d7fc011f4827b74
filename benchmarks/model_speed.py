"""Forward+backward time of each registered model on one CPU batch.

    python benchmarks/model_speed.py [--batch 64 --frames 48 --features 300]

Target for the default model on a 2-core CPU: well under 0.1 s a step (best of 10;
other processes on a shared machine only ever add time).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from slt_cli.models import DEFAULT_MODEL, MODEL_BUILDERS, build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--features", type=int, default=300)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=10)
    options = parser.parse_args()
    torch.manual_seed(0)
    clips = torch.randn(options.batch, options.frames, options.features)
    labels = torch.randint(0, options.classes, (options.batch,))
    for name in MODEL_BUILDERS:
        model = build_model(name, in_features=options.features, num_classes=options.classes,
                            num_frames=options.frames)
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
