"""Try training recipes through the public API, without touching the engine.

    python benchmarks/recipe_lab.py --data PATH|synthetic --seeds 0,1,2 \
        [--batch 64] [--epoch-scale 1.0] [--stage-list 1,2] \
        [--set 'stages[1].augment.rotate=0'] [--set 'model.dim=96'] [--set 'data.frames=48']

Each seed trains in its own temporary folder; the script prints per-stage validation
accuracy, the test accuracy of ``best_model_stage_N`` (last selected stage) when the
data has a test split, and the training time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import tempfile
import time

from slt_cli import Trainer, load_config
from slt_cli.cfg.config import Config
from slt_cli.errors import DataError


def apply_setting(config: Config, assignment: str) -> Config:
    """``stages[1].augment.rotate=0``, ``stages[*].dropout=0.2``, ``model.dim=96``,
    ``data.frames=48``, ``run.batch_size=32`` (values parsed as JSON)."""
    path, _, text = assignment.partition("=")
    value = json.loads(text)
    head, *rest = path.split(".")
    if head == "model":
        settings = dict(config.model.settings)
        if rest == ["name"]:
            return dataclasses.replace(config, model=dataclasses.replace(config.model, name=value))
        settings[rest[0]] = value
        return dataclasses.replace(config, model=dataclasses.replace(config.model,
                                                                     settings=settings))
    if head in ("data", "run"):
        table = dataclasses.replace(getattr(config, head), **{rest[0]: value})
        return dataclasses.replace(config, **{head: table})
    if head.startswith("stages["):
        which = head[len("stages["):-1]
        indices = range(len(config.stages)) if which == "*" else [int(which) - 1]
        stages = list(config.stages)
        for i in indices:
            stage = stages[i]
            if rest[0] == "augment":
                stage = dataclasses.replace(stage, augment=dataclasses.replace(
                    stage.augment, **{rest[1]: value}))
            else:
                stage = dataclasses.replace(stage, **{rest[0]: value})
            stages[i] = stage
        return dataclasses.replace(config, stages=tuple(stages))
    raise SystemExit(f"cannot set {assignment!r}")


def scale_epochs(config: Config, scale: float) -> Config:
    """Every stage's epochs times ``scale`` (rounded, at least 1)."""
    stages = tuple(dataclasses.replace(s, epochs=max(1, round(s.epochs * scale)))
                   for s in config.stages)
    return dataclasses.replace(config, stages=stages)


def run_seed(config: Config, seed: int, selected: list[int]) -> dict:
    config = dataclasses.replace(config, run=dataclasses.replace(config.run, seed=seed,
                                                                 improvement_threshold=-1.0))
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, checkpoint_dir=folder, device="cpu")
        started = time.perf_counter()
        result = trainer.train(selected, force=True)
        seconds = time.perf_counter() - started
        test = {}
        for stage in result.stages:
            with contextlib.suppress(DataError):  # the data has no test split
                test[stage.stage_idx] = trainer.evaluate(stage.checkpoint, split="test").accuracy
    return {"seed": seed, "seconds": seconds,
            "val": {s.stage_idx: s.val_accuracy for s in result.stages},
            "epochs": {s.stage_idx: s.epochs for s in result.stages}, "test": test}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--stage-list", default="all")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--epoch-scale", type=float, default=1.0)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--config", default=None)
    parser.add_argument("--label", default="")
    options = parser.parse_args()
    from pathlib import Path
    config = load_config(Path(options.config) if options.config else None)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                  source=options.data))
    if options.batch:
        config = dataclasses.replace(config, run=dataclasses.replace(config.run,
                                                                     batch_size=options.batch))
    for assignment in options.set:
        config = apply_setting(config, assignment)
    config = scale_epochs(config, options.epoch_scale)
    selected = (list(range(1, len(config.stages) + 1)) if options.stage_list == "all"
                else [int(i) for i in options.stage_list.split(",")])
    rows = [run_seed(config, int(s), selected) for s in options.seeds.split(",")]
    last = selected[-1]
    for row in rows:
        vals = " ".join(f"{row['val'][i]:.3f}" for i in selected)
        tests = " ".join(f"{row['test'][i]:.3f}" for i in selected if i in row["test"])
        print(f"  seed {row['seed']}: val {vals} | test {tests} | {row['seconds']:.0f}s "
              f"epochs {[row['epochs'][i] for i in selected]}", flush=True)

    def summary(values: list[float]) -> str:
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.3f}±{spread:.3f}"

    val_means = " ".join(summary([r["val"][i] for r in rows]) for i in selected)
    test_part = ""
    if all(last in r["test"] for r in rows):
        test_part = " test " + " ".join(summary([r["test"][i] for r in rows]) for i in selected)
    print(f"{options.label or ' '.join(options.set)} | val {val_means} |{test_part} | "
          f"time {statistics.mean(r['seconds'] for r in rows):.0f}s", flush=True)


if __name__ == "__main__":
    main()
