"""How fast `slt list` and `slt list --json` answer over 100, 1,000 and 10,000 checkpoints.

Builds one folder per size through the project's own `save_checkpoint` (tiny weights,
full sidecars with the packaged config, five stages, a distilled student now and then),
ends each build as a writing command ends (`lock.folder_lock`, which refreshes the
folder's listing index), then times each command as a user meets it: a fresh
interpreter per run, output to a pipe, median of `--repeats` runs. Each size is timed
twice: with the index the writers keep, and without it (the index moved aside, so
every sidecar is read and checked: a folder copied from elsewhere, or an older slt's).
Targets (issue 28): 100 checkpoints under 0.3 s, 10,000 under 1 s.

    python benchmarks/list_speed.py [--sizes 100,1000,10000] [--repeats 5] [--dir /dev/shm]

Prints a table (seconds, median; min-max in brackets).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from slt_cli.cfg.config import load_config
from slt_cli.store.checkpoints import save_checkpoint
from slt_cli.store.lock import folder_lock
from slt_cli.store.sidecar import Distillation, Sidecar, Teacher, TrainedWith

INDEX_FILE = ".slt-index"  # slt_cli.store.catalog.INDEX_FILE (absent from older trees)


def build_checkpoints(folder: Path, count: int) -> None:
    """``count`` checkpoints of tiny weights, as five-stage runs; every 50th a student."""
    config = load_config()
    state = {"stem.weight": torch.randn(4, 4)}
    with folder_lock(folder, "bench"):
        for index in range(count):
            stage, run = index % 5 + 1, index // 5
            settings = config.stages[stage - 1]
            distilled = (Distillation((Teacher(f"best_model_stage_5_run{run}", "0" * 64),),
                                      0.5, 2.0, 1000) if index % 50 == 49 else None)
            save_checkpoint(folder, f"best_model_stage_{stage}_run{run}", state, Sidecar(
                stage_idx=stage, stage_name=settings.name,
                stage_description=settings.description, val_loss=1.0 / stage + index * 1e-6,
                val_accuracy=0.5 + stage / 20 - index * 1e-7, epoch=3, training_time=12.5,
                stage_time=20.0, classes=tuple(f"sign_{k:03d}" for k in range(20)),
                joints=None, model={"name": "conv_transformer", "settings": {},
                                    "in_features": 371, "num_classes": 20, "num_frames": 32},
                parent=f"best_model_stage_{stage - 1}_run{run}" if stage > 1 else None,
                run_id=f"run{run}", slt_version="bench", distilled=distilled,
                config=TrainedWith(run=config.run, data=config.data,
                                   model={"name": "conv_transformer"}, stage=settings)))
        # The steady state: a folder listed a little after its last write (a sidecar
        # changed in the last two seconds is read afresh, in case a clock tick hid an edit).
        time.sleep(2.1)


def timed(args: list[str], repeats: int) -> list[float]:
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(args, capture_output=True, text=True)
        walls.append(time.perf_counter() - started)
        if done.returncode != 0 or "warning" in done.stderr:
            raise SystemExit(f"{' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
    return walls


def shown(walls: list[float]) -> str:
    return f"{statistics.median(walls):.3f} [{min(walls):.2f}-{max(walls):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                        help="where to build the folders (tmpfs: fsync costs nothing)")
    options = parser.parse_args()
    slt = [sys.executable, "-m", "slt_cli", "list"]
    rows = []
    for size in (int(s) for s in options.sizes.split(",")):
        with tempfile.TemporaryDirectory(dir=options.dir) as scratch:
            folder = Path(scratch) / "checkpoints"
            started = time.perf_counter()
            build_checkpoints(folder, size)
            built = time.perf_counter() - started
            where = ["--checkpoint-dir", str(folder)]
            index = folder / INDEX_FILE
            row = [f"{size:,}", f"{built:.0f}",
                   shown(timed([*slt, *where], options.repeats)),
                   shown(timed([*slt, "--json", *where], options.repeats))]
            if index.is_file():
                index.rename(folder / "index-aside")
                row += [shown(timed([*slt, *where], options.repeats)),
                        shown(timed([*slt, "--json", *where], options.repeats))]
            else:
                row += ["(no index)", "(no index)"]
            rows.append(row)
            print(" | ".join(row), file=sys.stderr, flush=True)
    header = ["checkpoints", "build s", "slt list", "slt list --json",
              "list, no index", "--json, no index"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for line in [header, ["-" * w for w in widths], *rows]:
        print(" | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
    print(f"\n{options.repeats} runs each, median [min-max] seconds; python "
          f"{sys.version.split()[0]}, {os.cpu_count()} cores, folders in "
          f"{options.dir or tempfile.gettempdir()}")


if __name__ == "__main__":
    main()
