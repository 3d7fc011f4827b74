"""Stages 3-5 on the yardstick's folds, from stages 1-2 trained once.

    python benchmarks/later_stages.py prepare --cache DIR [DATA ...] [--jobs 2]
    python benchmarks/later_stages.py run --name NAME --cache DIR [DATA ...] [--set ...]

``prepare`` trains stages 1 and 2 of every ``real_suite.py --choose`` run (seeds 0-2,
the same folds and validation people) into ``DIR/<set>-s<seed>/`` and keeps them.
``run`` copies each of those folders, trains stages 3-5 with the ``--set`` changes
(as ``recipe_lab.py`` takes them; changes to stages 1-2 are not seen, as those are not
trained again) and scores, on the fold's held-out people, stage 2's best and each later
stage's best and final weights. One line a run goes to ``DIR/NAME.jsonl``; the table
gives mean ± std over the seeds per set and the mean over sets. A variant costs about
40% of a full ``real_suite.py --choose`` run. Stage 2's figures equal real_suite's
(the same code, folds and seeds), so its rule can be read off beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_suite  # noqa: E402

from slt_cli import Trainer  # noqa: E402

SEEDS = (0, 1, 2)


def plan(cache: Path, specs: list[str]) -> list[real_suite.Job]:
    jobs = []
    for spec in specs:
        jobs += real_suite.plan_jobs(spec, spec, list(SEEDS), 3, 0, cache, choose=True)
    return jobs


def folder(cache: Path, job: real_suite.Job) -> Path:
    return cache / f"{Path(job.dataset).stem}-s{job.seed}"


def trainer_for(job: real_suite.Job, settings: list[str], checkpoints: Path) -> Trainer:
    return Trainer(real_suite.job_config(job, None, settings), checkpoint_dir=checkpoints,
                   device="cpu")


def held_out(trainer: Trainer, name: str) -> dict[str, Any]:
    scored = trainer.evaluate(name, split="test")
    return {"accuracy": scored.accuracy,
            "per_signer": dict(scored.per_signer)}


def prepare(job: real_suite.Job, cache: Path) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    target = folder(cache, job)
    trainer = trainer_for(job, [], target)
    if not (target / "best_model_stage_2.safetensors").exists():
        trainer.train([1, 2], force=True)
    return {"dataset": job.dataset, "seed": job.seed,
            "stage_2": held_out(trainer, "best_model_stage_2")}


def run(job: real_suite.Job, cache: Path, settings: list[str]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "checkpoints"
        shutil.copytree(folder(cache, job), work)
        trainer = trainer_for(job, settings, work)
        started = time.perf_counter()
        result = trainer.train([3, 4, 5], force=True)
        row = {"dataset": job.dataset, "seed": job.seed,
               "seconds": time.perf_counter() - started,
               "stage_2": held_out(trainer, "best_model_stage_2"), "stages": []}
        for stage in result.stages:
            final = f"stage_{stage.stage_idx}_{stage.name}"
            row["stages"].append({"stage": stage.stage_idx, "best_epoch": stage.best_epoch,
                                  "best": held_out(trainer, stage.checkpoint),
                                  "final": held_out(trainer, final)})
    return row


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f}±{statistics.stdev(values):.3f}"


def render(rows: list[dict[str, Any]]) -> str:
    lines, means = [], {}
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        mine = [row for row in rows if row["dataset"] == dataset]
        cells = {"stage 2": [row["stage_2"]["accuracy"] for row in mine]}
        for index, stage in enumerate(mine[0]["stages"]):
            for kind in ("best", "final"):
                cells[f"{stage['stage']} {kind}"] = [row["stages"][index][kind]["accuracy"]
                                                     for row in mine]
        epochs = " ".join(",".join(str(row["stages"][i]["best_epoch"]) for row in mine)
                          for i in range(len(mine[0]["stages"])))
        lines.append(f"{Path(dataset).stem} ({len(mine)} runs; best epochs {epochs})")
        lines.append("  " + "  ".join(f"{key} {spread(v)}" for key, v in cells.items()))
        for key, values in cells.items():
            means.setdefault(key, []).append(statistics.mean(values))
    lines.append("mean over sets: " + "  ".join(f"{key} {statistics.mean(v):.3f}"
                                                for key, v in means.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("prepare", "run"))
    parser.add_argument("data", nargs="*")
    parser.add_argument("--cache", required=True, type=Path)
    parser.add_argument("--name", default=None, help="the run's name (its .jsonl file)")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--jobs", type=int, default=2)
    options = parser.parse_intermixed_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    options.cache.mkdir(parents=True, exist_ok=True)
    specs = options.data or [str(p) for p in real_suite.DEFAULT_DATA if p.exists()]
    jobs = plan(options.cache, specs)
    with ProcessPoolExecutor(options.jobs) as pool:
        if options.what == "prepare":
            rows = list(pool.map(prepare, jobs, [options.cache] * len(jobs)))
        else:
            rows = list(pool.map(run, jobs, [options.cache] * len(jobs),
                                 [options.set] * len(jobs)))
    log = options.cache / f"{options.name or options.what}.jsonl"
    with open(log, "w", encoding="utf-8") as file:
        file.writelines(json.dumps(row) + "\n" for row in rows)
    if options.what == "run":
        print(render(rows))
    else:
        for row in rows:
            print(f"{Path(row['dataset']).stem} seed {row['seed']}: stage 2 "
                  f"{row['stage_2']['accuracy']:.3f}")


if __name__ == "__main__":
    main()
