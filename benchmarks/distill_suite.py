"""Distillation on real recordings: teacher, distilled student and control, held out.

    OMP_NUM_THREADS=1 python benchmarks/distill_suite.py [DATA ...] [--seeds 0,1,2]
        [--student small] [--alpha 0.7] [--temperature 3] [--epochs 18]
        [--teacher-stages 1,2,3] [--teacher-epochs N] [--no-ensemble] [--only-run R]
        [--json OUT.json]

DATA as ``real_suite.py`` takes it (LIBRAS and mediapipe-dev from ``../shared/datasets``
by default), with its splits: LIBRAS's own test split; for data without one, signer-grouped
folds (``real_suite.plan_jobs``: run *r* tests on signer group ``r mod 3``, validates on
other whole signers), so every mediapipe-dev person is tested once over three seeds.

Per run (dataset, seed), in one temporary folder:
1. the teacher: the default recipe's stages ``--teacher-stages`` (forced); its
   ``best_model_stage_N`` of the last of them (stages 4-5 keep stage 3's weights on this
   data, see docs/decisions.md);
2. the student: ``slt distill`` of the teacher into ``--student`` (alpha, T, epochs);
3. the control: the same student, stage and epochs with ``--alpha 0`` (labels only).
Each is scored on held-out data (accuracy, per signer), counted (parameters), exported to
ONNX and timed (``distill.measure_footprint``: ONNX Runtime, one thread, batch 1, median).

Then, unless ``--no-ensemble``, per dataset: the teachers of three seeds on one split (for
fold data, fold 1's split, where seeds 1 and 2 train two extra teachers) made into one
``slt ensemble`` (mean probabilities), distilled into one student (seed 0), against the
single seed with the best validation accuracy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_suite import DEFAULT_DATA, Job, plan_jobs  # noqa: E402

from slt_cli import Reporter, Trainer, load_config  # noqa: E402
from slt_cli.cfg.config import with_overrides  # noqa: E402
from slt_cli.use.distill import STUDENT_PRESETS, distill, measure_footprint  # noqa: E402
from slt_cli.use.ensemble import make_ensemble  # noqa: E402


def scored(folder: Path, name: str, config: Any) -> dict[str, Any]:
    """Held-out accuracy, per signer, parameters, ONNX size and latency of one checkpoint."""
    trainer = Trainer(config, checkpoint_dir=folder, device="cpu")
    evaluation = trainer.evaluate(name, split="test")
    footprint = measure_footprint(folder, name)
    from slt_cli.store.checkpoints import load_weights, read_sidecar

    sidecar = read_sidecar(folder, name)
    parameters = sum(t.numel() for t in load_weights(folder, name, sidecar).values())
    return {"test_accuracy": evaluation.accuracy, "test_count": evaluation.count,
            "per_signer": dict(evaluation.per_signer), "val_accuracy": sidecar.val_accuracy,
            "parameters": parameters, "onnx_mb": footprint.size_mb,
            "ms": footprint.ms_per_sequence}


def teacher(config: Any, spec: str, seed: int, folder: Path, stages: list[int],
            epochs: int | None = None) -> str:
    """Train the default recipe's ``stages``; the name of the last one's best model."""
    config = with_overrides(config, data_source=spec, run_seed=seed, stage_epochs=epochs)
    Trainer(config, checkpoint_dir=folder, device="cpu", reporter=Reporter()).train(
        stages, force=True)
    return f"best_model_stage_{stages[-1]}"


def run_job(job: Job, options: argparse.Namespace, folder: Path) -> dict[str, Any]:
    config = load_config(None)
    student = STUDENT_PRESETS[options.student]
    best = teacher(config, job.spec, job.seed, folder, options.teacher_stages,
                   options.teacher_epochs)
    row: dict[str, Any] = {"dataset": job.dataset, "seed": job.seed,
                           "test_signers": list(job.test_signers),
                           "teacher": scored(folder, best, config)}
    for name, alpha in (("student", options.alpha), ("control", 0.0)):
        result = distill(config, [best], name, student=student, alpha=alpha,
                         temperature=options.temperature, epochs=options.epochs,
                         checkpoint_dir=folder, device="cpu", measure=False)
        row[name] = {**scored(folder, name, config), "agreement_val": result.agreement,
                     "seconds": result.seconds}
    print(json.dumps({k: row[k] for k in ("dataset", "seed")} | {
        k: round(row[k]["test_accuracy"], 4) for k in ("teacher", "student", "control")}),
        flush=True)
    return row


def ensemble_part(dataset: str, jobs: list[Job], folders: list[Path], options: argparse.Namespace,
                  scratch: Path) -> dict[str, Any]:
    """Three seeds' teachers on the first job's split, their ensemble, its student."""
    config = load_config(None)
    first = jobs[0]
    folder = scratch / f"{Path(dataset).stem}-ensemble"
    folder.mkdir()
    names = []
    for index, seed in enumerate(options.seeds):
        name = f"seed{seed}"
        best = f"best_model_stage_{options.teacher_stages[-1]}"
        if first.test_signers and index > 0:  # fold data: more teachers on fold 1's split
            source = scratch / f"{Path(dataset).stem}-extra{seed}"
            teacher(config, first.spec, seed, source, options.teacher_stages,
                    options.teacher_epochs)
        else:
            source = folders[index]
        for suffix in (".safetensors", ".json"):
            shutil.copy(source / f"{best}{suffix}", folder / f"{name}{suffix}")
        names.append(name)
    singles = {name: scored(folder, name, config) for name in names}
    make_ensemble(config, names, "teachers", checkpoint_dir=folder, device="cpu")
    result = distill(config, ["teachers"], "student", student=STUDENT_PRESETS[options.student],
                     alpha=options.alpha, temperature=options.temperature,
                     epochs=options.epochs, checkpoint_dir=folder, device="cpu", measure=False)
    best_seed = max(names, key=lambda n: singles[n]["val_accuracy"])
    return {"singles": singles, "best_on_val": best_seed,
            "ensemble": scored(folder, "teachers", config),
            "student": {**scored(folder, "student", config), "agreement_val": result.agreement}}


def summary(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    tests = [row[key]["test_accuracy"] for row in rows]
    people: dict[str, list[float]] = {}
    for row in rows:
        for who, accuracy in row[key]["per_signer"].items():
            people.setdefault(who, []).append(accuracy)
    means = {who: statistics.mean(v) for who, v in people.items()}
    worst = min(means.items(), key=lambda item: item[1]) if means else None
    pooled = (sum(r[key]["test_accuracy"] * r[key]["test_count"] for r in rows)
              / sum(r[key]["test_count"] for r in rows))
    return {"mean": statistics.mean(tests), "std": statistics.stdev(tests) if len(tests) > 1
            else 0.0, "pooled": pooled, "per_run": tests,
            "signer_mean": statistics.mean(means.values()) if means else None,
            "worst": worst, "parameters": rows[0][key]["parameters"],
            "onnx_mb": statistics.mean(r[key]["onnx_mb"] for r in rows),
            "ms": statistics.median(r[key]["ms"] for r in rows)}


def save(report: dict[str, Any], path: str | None) -> None:
    if path:
        Path(path).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="*")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--student", default="small", choices=sorted(STUDENT_PRESETS))
    parser.add_argument("--alpha", type=float, default=0.7)
    parser.add_argument("--temperature", type=float, default=3.0)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--teacher-stages", default="1,2,3")
    parser.add_argument("--teacher-epochs", type=int, default=None,
                        help="every teacher stage's epochs (a quick check of the script)")
    parser.add_argument("--only-run", type=int, default=None,
                        help="only run R (0-based) of each dataset's plan")
    parser.add_argument("--no-ensemble", action="store_true")
    parser.add_argument("--json", default=None)
    options = parser.parse_args()
    options.seeds = [int(s) for s in options.seeds.split(",")]
    options.teacher_stages = [int(s) for s in options.teacher_stages.split(",")]
    report: dict[str, Any] = {"options": {k: v for k, v in vars(options).items()}}
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        for spec in options.data or [str(p) for p in DEFAULT_DATA]:
            if not Path(spec).exists():
                print(f"skipped {spec}: not found", file=sys.stderr)
                continue
            jobs = plan_jobs(spec, spec, options.seeds, 3, 0, scratch)
            if options.only_run is not None:  # e.g. the third fold alone, after a stop
                jobs = [jobs[options.only_run]]
            rows, folders = [], []
            for job in jobs:
                folder = scratch / f"{Path(spec).stem}-seed{job.seed}"
                folders.append(folder)
                rows.append(run_job(job, options, folder))
                report[spec] = {"runs": rows}
                save(report, options.json)  # after each run: a late stop keeps the others
            entry: dict[str, Any] = {"runs": rows, "summary": {
                key: summary(rows, key) for key in ("teacher", "student", "control")}}
            if not options.no_ensemble:
                entry["ensemble"] = ensemble_part(spec, jobs, folders, options, scratch)
            report[spec] = entry
            print(json.dumps({spec: entry["summary"]}, indent=1), flush=True)
            if "ensemble" in entry:
                part = entry["ensemble"]
                print(json.dumps({"ensemble": part["ensemble"]["test_accuracy"],
                                  "student": part["student"]["test_accuracy"],
                                  "singles": {n: s["test_accuracy"]
                                              for n, s in part["singles"].items()},
                                  "best_on_val": part["best_on_val"]}), flush=True)
            save(report, options.json)


if __name__ == "__main__":
    main()
