"""How fast the commands that need no training answer, against `import torch`.

Builds 100 checkpoints (real safetensors files and full sidecars) in a temporary
folder, then times `slt --help`, `slt list`, `slt list --json` and `slt analyze`
end to end as a user meets them (a fresh interpreter each time), beside
`python -c "import torch"`, which none of them may pay for. Each command is also
run once under `python -X importtime` to check that torch is never imported.
Target: `slt list` with 100 checkpoints in under 0.3 s; a typo'd option, preset, split,
config or checkpoint name is told (exit 2) in under 1 s, without importing torch.

    python benchmarks/cli_latency.py [--count 100] [--repeats 7]

Prints one JSON line per command.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from slt_cli.cfg.config import load_config
from slt_cli.store.checkpoints import save_checkpoint
from slt_cli.store.sidecar import Sidecar, TrainedWith


def build_checkpoints(folder: Path, count: int) -> None:
    """``count`` checkpoints of small weights; the first five are a run's
    ``best_model_stage_1..5``, so ``slt analyze`` has stages to compare."""
    config = load_config()
    state = {"stem.weight": torch.randn(96, 371), "head.weight": torch.randn(20, 96)}
    for index in range(count):
        stage, run = index % 5 + 1, index // 5
        name = f"best_model_stage_{stage}" + (f"_run{run}" if run else "")
        settings = config.stages[stage - 1]
        save_checkpoint(folder, name, state, Sidecar(
            stage_idx=stage, stage_name=settings.name, stage_description=settings.description,
            val_loss=1.0 / stage, val_accuracy=0.5 + stage / 20, epoch=3, training_time=12.5,
            stage_time=20.0, classes=tuple(f"sign_{k:03d}" for k in range(20)), joints=None,
            model={"name": "conv_transformer", "settings": {}, "in_features": 371,
                   "num_classes": 20, "num_frames": 32}, parent=None,
            run_id=f"run{run}", slt_version="bench",
            config=TrainedWith(run=config.run, data=config.data,
                               model={"name": "conv_transformer"}, stage=settings)))


def seconds(args: list[str], repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU (user + system) seconds of each run. On a machine shared
    with other work the wall clock includes waiting for a core; CPU time does not."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(args, capture_output=True, text=True)
        if done.returncode != (2 if "error:" in done.stderr else 0):
            raise SystemExit(f"{' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if "warning" in done.stderr:  # a skipped sidecar would make the folder look smaller
            raise SystemExit(f"{' '.join(args)}: {done.stderr.strip()}")
    return walls, cpus


def imports_torch(args: list[str]) -> bool:
    """Whether the command imports torch, by ``-X importtime``'s list of imports."""
    done = subprocess.run([args[0], "-X", "importtime", *args[1:]], capture_output=True,
                          text=True)
    return any(line.rsplit("|", 1)[-1].strip() == "torch" for line in done.stderr.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    options = parser.parse_args()
    slt = [sys.executable, "-m", "slt_cli"]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        build_checkpoints(folder, options.count)
        where = ["--checkpoint-dir", str(folder)]
        commands = {
            "python -c 'import torch'": [sys.executable, "-c", "import torch"],
            "slt --help": [*slt, "--help"],
            "slt list": [*slt, "list", *where],
            "slt list --json": [*slt, "list", "--json", *where],
            "slt analyze": [*slt, "analyze", *where],
            # typos: each must be told (exit 2) before torch is imported
            "slt continue --type explore": [*slt, "continue", "best_model_stage_5", "--type",
                                            "explore", *where],
            "slt evaluate --split tset": [*slt, "evaluate", "best_model_stage_5", "--split",
                                          "tset", *where],
            "slt train --config nothere.toml": [*slt, "train", "--config", "nothere.toml"],
            "slt evaluate best_model_stage_9": [*slt, "evaluate", "best_model_stage_9", *where],
        }
        baseline = None
        for label, args in commands.items():
            timings, cpu = seconds(args, options.repeats)
            median = statistics.median(timings)
            baseline = baseline or median
            print(json.dumps({
                "command": label, "checkpoints": options.count if "--help" not in label and (
                    label.startswith("slt")) else None,
                "median_s": round(median, 3), "min_s": round(min(timings), 3),
                "max_s": round(max(timings), 3), "cpu_median_s": round(statistics.median(cpu), 3),
                "repeats": options.repeats,
                "vs_import_torch": round(median / baseline, 2),
                "imports_torch": imports_torch(args),
            }), flush=True)


if __name__ == "__main__":
    main()
