"""The real-data yardstick: the default recipe on real recordings, scored on people
it never saw. Defaults are decided here; the generator only checks the machinery.

    python benchmarks/real_suite.py [DATA ...] [--seeds 0,1,2] [--folds 3] [--choose]
        [--stages all] [--config PATH] [--set 'stages[*].patience=4'] [--jobs 1]
        [--json OUT.json] [--label TEXT] [--compare BEFORE.json]

DATA: ``.npz`` paths or ``gislr:DIR`` / ``pose:DIR`` specs; by default every shared
set in ``../shared/datasets``: LIBRAS, mediapipe-dev and mediapipe-28 (each skipped,
with a line, when absent).

For each dataset and seed, every selected stage is trained (forced) in a temporary
folder and each ``best_model_stage_N`` is scored on held-out data:
- data with a ``test`` split: that split, the same for every seed (the figures to
  report). With ``--choose`` the test split is never read: such data is dealt into
  folds of its train and val sequences like the data below (the figures to choose by);
- data without one: signer-grouped folds. The signers are dealt into ``--folds``
  groups once (``--fold-seed``); run *r* (seed ``seeds[r]``) tests on group
  ``r mod folds`` and validates on other whole signers, picked so that validation
  covers the trained classes where the signers allow. With as many seeds as folds,
  every signer is tested exactly once, so the pooled accuracy covers every sequence.
  Data without signer ids is dealt by class instead (stratified folds).

Per stage it prints held-out accuracy (mean ± std over runs), pooled held-out
accuracy, the mean and the worst per-signer accuracy, validation accuracy, the best
epoch and the stage's wall time, then the mean over the sets beside each set;
``--json`` keeps every run's numbers, and each run is appended to
``OUT.json.runs.jsonl`` as soon as it finishes.

The rule for a default (docs/development.md): it changes only when the mean held-out
accuracy over all sets rises and no set falls by more than its seed spread.
``--compare BEFORE.json`` applies that rule to this run against an earlier one, stage
by stage, and prints the verdict.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_lab import apply_setting  # noqa: E402

from slt_cli import Reporter, Trainer, load_config  # noqa: E402
from slt_cli.data import load_source  # noqa: E402
from slt_cli.data.npz import load_npz  # noqa: E402
from slt_cli.data.preprocess import assign_folds  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DEFAULT_DATA = (SHARED / "libras" / "libras.npz", SHARED / "mediapipe-dev" / "mediapipe_dev.npz",
                SHARED / "mediapipe-28" / "mediapipe_28.npz")
VAL_FRACTION = 0.2  # share of the non-test sequences that validation holds out, by signer


class StageClock(Reporter):
    """Wall time of each stage, from its start to its result."""

    def __init__(self) -> None:
        self.started: dict[int, float] = {}
        self.seconds: dict[int, float] = {}

    def stage_started(self, *, stage_idx: int, **_: Any) -> None:
        self.started[stage_idx] = time.perf_counter()

    def stage_done(self, result: Any) -> None:
        self.seconds[result.stage_idx] = time.perf_counter() - self.started[result.stage_idx]


@dataclasses.dataclass(frozen=True)
class Job:
    """One training run of one dataset: what to train on and what to score."""

    dataset: str
    spec: str  # the data spec the run trains on (a temporary .npz for fold runs)
    seed: int
    test_signers: tuple[int, ...]  # the held-out people (empty when the data has a test split)


def pick_validation(y: np.ndarray, signer: np.ndarray, pool: np.ndarray,
                    rng: np.random.Generator, tries: int = 200) -> np.ndarray:
    """Whole signers of ``pool`` (a mask) for validation: about VAL_FRACTION of its
    sequences, in a seeded random order, preferring a draw whose validation signs every
    class training does (real signers sign subsets of the vocabulary)."""
    if signer is None:  # no people named: a stratified share of every class
        chosen = np.zeros(len(y), dtype=bool)
        for label in np.unique(y[pool]):
            members = rng.permutation(np.flatnonzero(pool & (y == label)))
            chosen[members[:max(1, round(len(members) * VAL_FRACTION))]] = True
        return chosen
    people, sizes = np.unique(signer[pool], return_counts=True)
    best, best_missing = None, None
    for _ in range(tries):
        order = rng.permutation(len(people))
        taken = np.cumsum(sizes[order]) < VAL_FRACTION * pool.sum()
        count = min(len(people) - 1, max(1, int(taken.sum()) + 1))
        chosen = np.isin(signer, people[order[:count]]) & pool
        missing = len(set(y[pool & ~chosen].tolist()) - set(y[chosen].tolist()))
        if best_missing is None or missing < best_missing:
            best, best_missing = chosen, missing
        if missing == 0:
            break
    return best


def plan_jobs(name: str, spec: str, seeds: list[int], folds: int, fold_seed: int,
              scratch: Path, choose: bool = False) -> list[Job]:
    """The runs of one dataset; fold runs get their own .npz with an explicit split.
    With ``choose``, a test split is left out and the rest is dealt into folds."""
    # An .npz's landmarks are kept whole (the run's [data] landmarks picks from them).
    raw = load_npz(Path(spec)) if spec.endswith(".npz") else load_source(spec)
    split = raw.split.astype(str) if raw.split is not None else None
    has_test = split is not None and (split == "test").any()
    if has_test and not choose:
        return [Job(name, spec, seed, ()) for seed in seeds]
    keep = split != "test" if has_test else np.ones(len(raw.y), dtype=bool)
    signer = raw.signer[keep] if raw.signer is not None else None
    y = raw.y[keep]
    number, _ = assign_folds(y, signer, None, folds, fold_seed)
    jobs = []
    for run, seed in enumerate(seeds):
        test = number == run % folds + 1
        val = pick_validation(y, signer, ~test, np.random.default_rng(seed))
        labels = np.where(test, "test", np.where(val, "val", "train"))
        path = scratch / f"{Path(name).stem}-run{run}.npz"
        arrays = {"x": raw.x[keep], "y": y, "classes": np.array(raw.classes),
                  "lengths": raw.lengths[keep], "split": labels}
        if signer is not None:
            arrays["signer"] = signer
        if raw.joints is not None:
            arrays["joints"] = np.array(raw.joints)
        np.savez(path, **arrays)
        people = tuple(np.unique(signer[test]).tolist()) if signer is not None else ()
        jobs.append(Job(name, str(path), seed, people))
    return jobs


def job_config(job: Job, config_path: str | None, settings: list[str]) -> Any:
    """The config a job trains with: the file (or the defaults) on the job's data and
    seed, with ``settings`` applied as ``recipe_lab.py`` takes them."""
    config = load_config(Path(config_path) if config_path else None)
    config = dataclasses.replace(
        config, data=dataclasses.replace(config.data, source=job.spec),
        run=dataclasses.replace(config.run, seed=job.seed))
    for assignment in settings:
        config = apply_setting(config, assignment)
    return config


def run_job(job: Job, config_path: str | None, settings: list[str],
            stages: list[int] | None, threads: int | None) -> dict[str, Any]:
    """Train every selected stage for one job and score each stage's best on held-out
    data; runs in a worker process when ``--jobs`` > 1."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    config = job_config(job, config_path, settings)
    clock = StageClock()
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, checkpoint_dir=folder, device="cpu", reporter=clock)
        started = time.perf_counter()
        result = trainer.train(stages, force=True)
        seconds = time.perf_counter() - started
        rows = []
        for stage in result.stages:
            scored = trainer.evaluate(stage.checkpoint, split="test")
            rows.append({"stage": stage.stage_idx, "name": stage.name,
                         "val_accuracy": stage.val_accuracy, "best_epoch": stage.best_epoch,
                         "epochs": stage.epochs,
                         "epochs_run": getattr(stage, "epochs_run", stage.epochs),
                         "seconds": clock.seconds.get(stage.stage_idx),
                         "test_accuracy": scored.accuracy, "test_count": scored.count,
                         "per_signer": dict(getattr(scored, "per_signer", {}) or {})})
    return {"dataset": job.dataset, "seed": job.seed, "test_signers": list(job.test_signers),
            "seconds": seconds, "stages": rows}


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per stage: means over runs, pooled held-out accuracy, per-signer accuracies."""
    table = []
    for index, first in enumerate(runs[0]["stages"]):
        rows = [run["stages"][index] for run in runs]
        tests = [row["test_accuracy"] for row in rows]
        pooled = (sum(r["test_accuracy"] * r["test_count"] for r in rows)
                  / sum(r["test_count"] for r in rows))
        people: dict[str, list[float]] = {}
        for row in rows:
            for who, accuracy in row["per_signer"].items():
                people.setdefault(who, []).append(accuracy)
        signer_means = {who: statistics.mean(values) for who, values in people.items()}
        worst = min(signer_means.items(), key=lambda item: item[1]) if signer_means else None
        table.append({
            "stage": first["stage"], "name": first["name"],
            "test_mean": statistics.mean(tests),
            "test_std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
            "test_pooled": pooled,
            "signer_mean": statistics.mean(signer_means.values()) if signer_means else None,
            "worst_signer": worst[0] if worst else None,
            "worst_accuracy": worst[1] if worst else None,
            "val_mean": statistics.mean(r["val_accuracy"] for r in rows),
            "best_epochs": [r["best_epoch"] for r in rows],
            "epochs_run": [r["epochs_run"] for r in rows],
            "seconds": statistics.mean(r["seconds"] or 0.0 for r in rows)})
    return table


def render(dataset: str, table: list[dict[str, Any]], runs: list[dict[str, Any]]) -> str:
    lines = [f"{dataset} ({len(runs)} runs, {statistics.mean(r['seconds'] for r in runs):.0f} s "
             "a run)",
             f"  {'stage':<18} {'held-out':>13} {'pooled':>7} {'signers':>7} "
             f"{'worst signer':>14} {'val':>6} {'best epochs':>12} {'ran':>10} {'time':>6}"]
    for row in table:
        worst = (f"{row['worst_accuracy']:.3f} (#{row['worst_signer']})"
                 if row["worst_signer"] is not None else "-")
        signers = f"{row['signer_mean']:.3f}" if row["signer_mean"] is not None else "-"
        lines.append(
            f"  {row['stage']} {row['name']:<16} {row['test_mean']:.3f}±{row['test_std']:.3f} "
            f"{row['test_pooled']:>7.3f} {signers:>7} {worst:>14} {row['val_mean']:>6.3f} "
            f"{','.join(map(str, row['best_epochs'])):>12} "
            f"{','.join(map(str, row['epochs_run'])):>10} {row['seconds']:>5.0f}s")
    return "\n".join(lines)


def across_sets(datasets: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per stage, the mean over sets of their held-out accuracy (each set counts once,
    whatever its size) and the worst person of any set."""
    tables = [entry["stages"] for entry in datasets.values()]
    rows = []
    for index in range(min(len(table) for table in tables)):
        stage = [table[index] for table in tables]
        worst = [row for row in stage if row["worst_accuracy"] is not None]
        rows.append({"stage": stage[0]["stage"], "name": stage[0]["name"],
                     "test_mean": statistics.mean(row["test_mean"] for row in stage),
                     "worst_accuracy": min(row["worst_accuracy"] for row in worst)
                     if worst else None,
                     "seconds": sum(row["seconds"] for row in stage)})
    return rows


def render_sets(datasets: dict[str, dict[str, Any]]) -> str:
    """Each set's held-out accuracy per stage beside the mean over the sets."""
    names = [Path(spec).stem for spec in datasets]
    lines = [f"over {len(datasets)} sets",
             "  " + f"{'stage':<18}" + "".join(f"{name:>16}" for name in names)
             + f"{'mean':>8}{'worst person':>14}"]
    for index, row in enumerate(across_sets(datasets)):
        cells = "".join(
            f"{entry['stages'][index]['test_mean']:>9.3f}±{entry['stages'][index]['test_std']:.3f}"
            for entry in datasets.values())
        worst = f"{row['worst_accuracy']:.3f}" if row["worst_accuracy"] is not None else "-"
        lines.append(f"  {row['stage']} {row['name']:<16}{cells}{row['test_mean']:>8.3f}"
                     f"{worst:>14}")
    return "\n".join(lines)


def verdict(before: dict[str, Any], after: dict[str, Any]) -> str:
    """The rule for a default, stage by stage, on the sets both runs have: the mean
    over sets must rise and no set may fall by more than its seed spread (the standard
    deviation over the earlier run's seeds)."""
    common = [spec for spec in after["datasets"] if spec in before["datasets"]]
    if not common:
        return "compare: no set in common"
    lines = [f"against {before.get('label') or 'the earlier run'} on "
             f"{', '.join(Path(spec).stem for spec in common)}:"]
    old = across_sets({spec: before["datasets"][spec] for spec in common})
    new = across_sets({spec: after["datasets"][spec] for spec in common})
    for index, (was, now) in enumerate(zip(old, new, strict=False)):
        falls = []
        for spec in common:
            a = before["datasets"][spec]["stages"][index]
            b = after["datasets"][spec]["stages"][index]
            if a["test_mean"] - b["test_mean"] > a["test_std"]:
                falls.append(f"{Path(spec).stem} {b['test_mean'] - a['test_mean']:+.3f} "
                             f"(spread {a['test_std']:.3f})")
        gain = now["test_mean"] - was["test_mean"]
        ok = gain > 0 and not falls
        lines.append(f"  stage {now['stage']}: mean {was['test_mean']:.3f} -> "
                     f"{now['test_mean']:.3f} ({gain:+.3f}); "
                     + (f"falls beyond spread: {'; '.join(falls)}; " if falls else "")
                     + ("passes" if ok else "does not pass"))
    return "\n".join(lines)


def kept(run: dict[str, Any], log: Path | None) -> dict[str, Any]:
    """Say that ``run`` finished, and append it to ``log`` at once: a crash or a stopped
    suite loses only the runs still going."""
    last = run["stages"][-1]
    print(f"finished {run['dataset']} seed {run['seed']}: stage {last['stage']} "
          f"{last['test_accuracy']:.3f} in {run['seconds']:.0f} s", file=sys.stderr, flush=True)
    if log is not None:
        with open(log, "a", encoding="utf-8") as file:
            file.write(json.dumps(run) + "\n")
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="*", help="datasets (default: every shared set, "
                        "LIBRAS, mediapipe-dev and mediapipe-28)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--folds", type=int, default=3, help="signer groups for data "
                        "without a test split")
    parser.add_argument("--fold-seed", type=int, default=0)
    parser.add_argument("--stages", default="all", help="'all' or e.g. 1,2,3")
    parser.add_argument("--config", default=None)
    parser.add_argument("--set", action="append", default=[], help="a config change, as "
                        "recipe_lab.py takes them, e.g. 'data.frames=48'")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes "
                        "(each with one torch thread)")
    parser.add_argument("--json", default=None, help="write every run's numbers here")
    parser.add_argument("--label", default="")
    parser.add_argument("--choose", action="store_true", help="leave every test split "
                        "out: data with one is dealt into signer folds of train+val")
    parser.add_argument("--compare", default=None, help="an earlier --json report: apply "
                        "the rule for a default to this run against it")
    options = parser.parse_args()
    seeds = [int(s) for s in options.seeds.split(",")]
    stages = None if options.stages == "all" else [int(s) for s in options.stages.split(",")]
    specs = options.data or [str(p) for p in DEFAULT_DATA]
    with tempfile.TemporaryDirectory() as scratch:
        jobs = []
        for spec in specs:
            if ":" not in spec and not Path(spec).exists():
                print(f"skipped {spec}: not found", file=sys.stderr)
                continue
            jobs += plan_jobs(spec, spec, seeds, options.folds, options.fold_seed, Path(scratch),
                              options.choose)
        arguments = (options.config, options.set, stages)
        log = Path(f"{options.json}.runs.jsonl") if options.json else None
        if options.jobs > 1:
            os.environ.setdefault("OMP_NUM_THREADS", "1")
            with ProcessPoolExecutor(options.jobs) as pool:
                futures = [pool.submit(run_job, job, *arguments, 1) for job in jobs]
                for future in as_completed(futures):
                    kept(future.result(), log)
                runs = [future.result() for future in futures]
        else:
            runs = [kept(run_job(job, *arguments, None), log) for job in jobs]
    report = {"label": options.label, "settings": options.set, "seeds": seeds,
              "folds": options.folds, "choose": options.choose, "datasets": {}}
    for spec in dict.fromkeys(job.dataset for job in jobs):
        mine = [run for run in runs if run["dataset"] == spec]
        table = summarise(mine)
        report["datasets"][spec] = {"runs": mine, "stages": table}
        print(render(spec, table, mine), flush=True)
    if len(report["datasets"]) > 1:
        print(render_sets(report["datasets"]), flush=True)
    if options.compare:
        print(verdict(json.loads(Path(options.compare).read_text(encoding="utf-8")), report))
    if options.json:
        Path(options.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
