"""How fast `slt list` answers with 100 checkpoints in the folder.

Builds 100 checkpoints (real safetensors files and full sidecars) in a temporary
folder, then times the `slt list` and `slt list --json` commands end to end, as a
user meets them (a fresh interpreter each time). Target: under 0.5 s.

    python benchmarks/list_latency.py [--count 100] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from slt_cli.checkpoints import save_checkpoint
from slt_cli.config import load_config


def build_checkpoints(folder: Path, count: int) -> None:
    config = load_config().to_dict()
    state = {"stem.weight": torch.randn(96, 371), "head.weight": torch.randn(20, 96)}
    for index in range(count):
        stage = index % 5 + 1
        save_checkpoint(folder, f"best_model_stage_{stage}_run{index // 5}", state, {
            "stage_idx": stage, "stage_name": config["stages"][stage - 1]["name"],
            "stage_description": config["stages"][stage - 1]["description"],
            "val_loss": 1.0 / stage, "val_accuracy": 0.5 + stage / 20, "epoch": 3,
            "training_time": 12.5, "classes": [f"sign_{k:03d}" for k in range(20)],
            "model": {"name": "conv_transformer", "settings": {}}, "parent": None,
            "run_id": f"run{index // 5}", "slt_version": "bench",
            "config": {**config, "stage": config["stages"][stage - 1]},
        })


def time_command(args: list[str], repeats: int) -> list[float]:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        timings.append(time.perf_counter() - started)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        build_checkpoints(folder, options.count)
        base = [sys.executable, "-m", "slt_cli", "list", "--checkpoint-dir", str(folder)]
        for label, args in (("slt list", base), ("slt list --json", [*base, "--json"])):
            timings = time_command(args, options.repeats)
            median = statistics.median(timings)
            print(f"{label:<16} {options.count} checkpoints: median {median:.3f}s"
                  f"  min {min(timings):.3f}s  max {max(timings):.3f}s  ({options.repeats} runs)")


if __name__ == "__main__":
    main()
