"""LIBRAS test accuracy of ensembles against single models, through the CLI.

    OMP_NUM_THREADS=1 python benchmarks/libras_ensembles.py [--data .../libras.npz]
        [--seeds 0,1,2] [--runs DIR]

For each seed, in ``DIR/seed<S>/checkpoints`` (kept, so a second call reuses the trainings; a
temporary folder without ``--runs``): ``slt train --data D --stages all --force --seed S``
unless ``best_model_stage_5`` is already there. Then, in one scratch folder holding
copies of every seed's ``best_model_stage_N`` (``slt ensemble`` takes its members from
one folder), ``slt evaluate NAME --split test --json`` of

- the single best model (the ``best_model_stage_N`` best on val) and ``best_model_stage_5``,
- a logits and a weights ensemble of the five ``best_model_stage_N`` of one run,
- a logits (and, for contrast, a weights) ensemble of ``best_model_stage_5`` of all seeds.

Prints each figure per seed, then mean ± standard deviation over the seeds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/datasets/libras/libras.npz"
SLT = [sys.executable, "-m", "slt_cli"]
STAGES = [f"best_model_stage_{n}" for n in range(1, 6)]


def slt(folder: Path, *args: str) -> str:
    """Run one slt command on ``folder``'s checkpoints; its stdout."""
    done = subprocess.run([*SLT, *args, "--checkpoint-dir", str(folder)], cwd=folder.parent,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"slt {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def train(data: Path, seed: int, folder: Path) -> None:
    """A full default run for ``seed`` into ``folder``, unless it is there already."""
    if (folder / "best_model_stage_5.json").is_file():
        print(f"seed {seed}: reusing {folder}", flush=True)
        return
    started = time.perf_counter()
    slt(folder, "train", "--data", str(data.resolve()), "--stages", "all", "--force",
        "--seed", str(seed))
    print(f"seed {seed}: trained in {time.perf_counter() - started:.0f} s", flush=True)


def scores(folder: Path, name: str) -> tuple[float, float]:
    """(val accuracy from the sidecar, test accuracy from ``slt evaluate``)."""
    records = {r["name"]: r for r in json.loads(slt(folder, "list", "--json"))}
    test = json.loads(slt(folder, "evaluate", name, "--split", "test", "--json"))["accuracy"]
    return records[name]["val_accuracy"], test


def combination_rules(folder: Path, names: list[str]) -> tuple[float, float]:
    """Test accuracy of averaging the members' probabilities (what ``--method logits``
    does) and of averaging their raw logits instead, from the same member outputs."""
    import torch

    from slt_cli.data import load_data
    from slt_cli.run.records import build_network, load_state
    from slt_cli.run.training import TensorSplit, predict_logits
    from slt_cli.store.checkpoints import load_weights, read_sidecar

    outputs = []
    for name in names:
        sidecar = read_sidecar(folder, name)
        config = sidecar.config.data
        data = load_data(config.source, frames=config.frames, motion=config.motion,
                         val_fraction=config.val_fraction, seed=sidecar.config.run.seed,
                         landmarks=config.landmarks)
        network = build_network(sidecar.model, seed=0)
        load_state(network, load_weights(folder, name, sidecar), name)
        test = TensorSplit.from_split(data.split("test"), torch.device("cpu"))
        outputs.append(predict_logits(network, test, data.motion, 64))
    stacked = torch.stack(outputs)

    def accuracy(logits: torch.Tensor) -> float:
        return (logits.argmax(dim=-1) == test.y).float().mean().item()

    return accuracy(stacked.softmax(dim=-1).mean(dim=0)), accuracy(stacked.mean(dim=0))


def val_best(folder: Path, names: list[str]) -> str:
    """The checkpoint of ``names`` with the best val accuracy (lower val loss on a tie)."""
    records = {r["name"]: r for r in json.loads(slt(folder, "list", "--json"))}
    return max(names, key=lambda n: (records[n]["val_accuracy"], -records[n]["val_loss"]))


def copy_checkpoint(source: Path, name: str, target: Path, new_name: str) -> None:
    for suffix in (".json", ".safetensors"):
        shutil.copy(source / f"{name}{suffix}", target / f"{new_name}{suffix}")


def summary(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--runs", type=Path, default=None, help=(
                        "Keep (and reuse) each seed's checkpoints in RUNS/seed<S>/checkpoints/."))
    options = parser.parse_args()
    seeds = [int(s) for s in options.seeds.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        runs = options.runs or Path(scratch) / "runs"
        pool = Path(scratch) / "pool"
        pool.mkdir()
        for seed in seeds:
            folder = runs / f"seed{seed}" / "checkpoints"
            folder.mkdir(parents=True, exist_ok=True)
            train(options.data, seed, folder)
            for name in STAGES:
                copy_checkpoint(folder, name, pool, f"s{seed}_{name}")
        rows: dict[str, list[tuple[float, float]]] = {}
        for seed in seeds:
            members = [f"s{seed}_{name}" for name in STAGES]
            best = val_best(pool, members)
            slt(pool, "ensemble", *members, "--name", f"s{seed}_stages_logits")
            slt(pool, "ensemble", *members, "--name", f"s{seed}_stages_weights",
                "--method", "weights")
            figures = {
                f"single best on val ({best.split('_', 1)[1]})": scores(pool, best),
                "single best_model_stage_5": scores(pool, members[-1]),
                "logits ensemble of its 5 stages": scores(pool, f"s{seed}_stages_logits"),
                "weights ensemble of its 5 stages": scores(pool, f"s{seed}_stages_weights"),
            }
            for label, (val, test) in figures.items():
                print(f"seed {seed}: {label}: val {val:.4f}  test {test:.4f}", flush=True)
                rows.setdefault(label.split(" (")[0], []).append((val, test))
            probabilities, logits = combination_rules(pool, members)
            print(f"seed {seed}: its 5 stages, test accuracy of mean probabilities "
                  f"{probabilities:.4f}, of mean logits {logits:.4f}", flush=True)
        print(f"\nover seeds {options.seeds} (mean ± sd):")
        for label, pairs in rows.items():
            print(f"  {label:<44} val {summary([v for v, _ in pairs])}  "
                  f"test {summary([t for _, t in pairs])}")
        if len(seeds) > 1:
            finals = [f"s{seed}_best_model_stage_5" for seed in seeds]
            print(f"\nensembles of best_model_stage_5 of seeds {options.seeds}:")
            for method in ("logits", "weights"):
                slt(pool, "ensemble", *finals, "--name", f"seeds_{method}", "--method", method)
                val, test = scores(pool, f"seeds_{method}")
                print(f"  {method + ' ensemble':<44} val {val:.4f}  test {test:.4f}")
            probabilities, logits = combination_rules(pool, finals)
            print(f"  test accuracy of mean probabilities {probabilities:.4f}, "
                  f"of mean logits {logits:.4f}")

if __name__ == "__main__":
    main()
