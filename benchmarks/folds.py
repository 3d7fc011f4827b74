"""K-fold cross-validation of the default recipe: how much does the score depend on
which signers validate?

    OMP_NUM_THREADS=1 python benchmarks/folds.py [--folds 5] [--epochs-per-stage N]
                                                 [--data SPEC] [--dir DIR]

Runs ``slt train --folds K --stages all --force`` (default stages.toml, default
generated data unless ``--data``) into ``DIR`` (a temporary folder by default), then
reads ``DIR/folds.json`` and prints a markdown table: per stage, the best validation
accuracy across folds as mean ± sample standard deviation, min-max and each fold's
value, and the validation loss, plus the wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def train(folder: Path, folds: int, epochs: int | None, data: str | None) -> float:
    command = [sys.executable, "-m", "slt_cli", "train", "--folds", str(folds), "--stages",
               "all", "--force", "--checkpoint-dir", str(folder), "--device", "cpu"]
    if epochs is not None:
        command += ["--epochs-per-stage", str(epochs)]
    if data is not None:
        command += ["--data", data]
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    if done.returncode != 0:
        raise SystemExit(f"slt train --folds failed with status {done.returncode}")
    return time.perf_counter() - started


def table(summary: dict) -> str:
    lines = ["| stage | name | val acc mean ± std | min–max | per fold | val loss mean ± std |",
             "|---|---|---|---|---|---|"]
    for stage in summary["stages"]:
        acc, loss = stage["val_accuracy"], stage["val_loss"]
        lines.append(f"| {stage['stage_idx']} | {stage['name']} | {acc['mean']:.3f} ± "
                     f"{acc['std']:.3f} | {acc['min']:.3f}–{acc['max']:.3f} | "
                     + " ".join(f"{v:.3f}" for v in acc["values"])
                     + f" | {loss['mean']:.3f} ± {loss['std']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs-per-stage", type=int, default=None)
    parser.add_argument("--data", default=None)
    parser.add_argument("--dir", type=Path, default=None, help="keep the checkpoints here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="slt-folds-") as scratch:
        folder = args.dir or Path(scratch)
        seconds = train(folder, args.folds, args.epochs_per_stage, args.data)
        summary = json.loads((folder / "folds.json").read_text(encoding="utf-8"))
    epochs = (f"{args.epochs_per_stage} epochs per stage" if args.epochs_per_stage
              else "default epochs")
    print(f"{args.folds}-fold cross-validation, {args.data or 'default generated data'}, "
          f"{epochs}: {seconds / 60:.1f} min\n")
    print(table(summary))


if __name__ == "__main__":
    main()
