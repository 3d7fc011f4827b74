"""LIBRAS test accuracy of the default recipe over several seeds, through the CLI.

    python benchmarks/libras_seeds.py [--data ../shared/datasets/libras/libras.npz]
                                      [--seeds 0,1,2] [--min-batches 0]

For each seed, in its own temporary folder: ``slt train --data D --stages all --force
--seed S`` then ``slt evaluate best_model_stage_5 --split test --json``. Prints each
seed's test accuracy and time, then mean ± standard deviation (target: >= 0.96).

The engine repeats a small training set within each epoch up to
``run.min_batches_per_epoch`` (25) batches.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/datasets/libras/libras.npz"


def run_seed(data: Path, seed: int) -> tuple[float, float]:
    """Train all stages for ``seed`` in a fresh folder; (test accuracy, seconds)."""
    slt = [sys.executable, "-m", "slt_cli"]
    with tempfile.TemporaryDirectory() as folder:
        spec = data.resolve()
        started = time.perf_counter()
        subprocess.run([*slt, "train", "--data", str(spec), "--stages", "all", "--force",
                        "--seed", str(seed)], cwd=folder, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        shown = subprocess.run([*slt, "evaluate", "best_model_stage_5", "--split", "test",
                                "--json"], cwd=folder, check=True, capture_output=True,
                               text=True)
    return json.loads(shown.stdout)["accuracy"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", default="0,1,2")
    options = parser.parse_args()
    accuracies = []
    for seed in (int(s) for s in options.seeds.split(",")):
        accuracy, seconds = run_seed(options.data, seed)
        accuracies.append(accuracy)
        print(f"seed {seed}: test accuracy {accuracy:.4f}  ({seconds:.0f} s)", flush=True)
    spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    print(f"mean {statistics.mean(accuracies):.4f} ± {spread:.4f} over {len(accuracies)} seeds")


if __name__ == "__main__":
    main()
