"""What each stage and each augmentation adds, on several seeds.

    python benchmarks/ablation.py [--data synthetic] [--seeds 0,1,2] [--stage 2]
                                  [--config stages.toml] [--skip-stages]
                                  [--try mixup=0.3 --try shear=0.2]

Part 1, stages: the default run (all stages, forced) per seed; best validation
accuracy of each stage and its gain over the stage before.

Part 2, augmentations: stage ``--stage`` (default 2, the augmentation stage) is
trained from the same stage-before checkpoint once with its augmentations as
configured, once with none, once without each augmentation in turn, and once with
each ``--try`` augmentation added. The stages before are trained once per seed, so
every variant starts from the same weights.

Prints two markdown tables (mean ± standard deviation over seeds).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from slt_cli import Trainer, load_config
from slt_cli.cfg.config import AugmentConfig, Config


def with_seed(config: Config, seed: int) -> Config:
    return dataclasses.replace(config, run=dataclasses.replace(config.run, seed=seed))


def with_augment(config: Config, stage: int, augment: AugmentConfig) -> Config:
    stages = list(config.stages)
    stages[stage - 1] = dataclasses.replace(stages[stage - 1], augment=augment)
    return dataclasses.replace(config, stages=tuple(stages))


def summary(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


def stage_table(config: Config, seeds: list[int]) -> None:
    """Per-stage best validation accuracy of full forced runs."""
    rows: dict[int, list[float]] = {}
    times = []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            result = Trainer(with_seed(config, seed), checkpoint_dir=folder,
                             device="cpu").train(force=True)
            times.append(time.perf_counter() - started)
        accuracies = [s.val_accuracy for s in result.stages]
        print(f"  seed {seed}: " + " ".join(f"{a:.3f}" for a in accuracies)
              + f"  ({times[-1]:.0f} s)", flush=True)
        for index, accuracy in enumerate(accuracies, start=1):
            rows.setdefault(index, []).append(accuracy)
    print("\n| stage | val accuracy | gain over the stage before |\n|---|---|---|")
    for index, values in rows.items():
        gains = ([v - p for v, p in zip(values, rows[index - 1], strict=True)]
                 if index > 1 else None)
        name = config.stages[index - 1].name
        print(f"| {index} {name} | {summary(values)} | {summary(gains) if gains else '-'} |")
    print(f"\ntraining time per run: {summary(times)} s\n", flush=True)


def augment_table(config: Config, seeds: list[int], stage: int,
                  trials: dict[str, float]) -> None:
    """Stage ``stage`` from shared starting weights, one augmentation off at a time."""
    configured = config.stages[stage - 1].augment
    switched_on = [f.name for f in dataclasses.fields(AugmentConfig)
                   if getattr(configured, f.name) > 0]
    variants = {"as configured": configured, "none": AugmentConfig()}
    variants |= {f"without {name}": dataclasses.replace(configured, **{name: 0.0})
                 for name in switched_on}
    variants |= {f"with {name} {value:g}": dataclasses.replace(configured, **{name: value})
                 for name, value in trials.items()}
    scores: dict[str, list[float]] = {name: [] for name in variants}
    for seed in seeds:
        with tempfile.TemporaryDirectory() as folder:
            Trainer(with_seed(config, seed), checkpoint_dir=folder,
                    device="cpu").train(list(range(1, stage)), force=True)
            for name, augment in variants.items():
                variant = with_augment(with_seed(config, seed), stage, augment)
                result = Trainer(variant, checkpoint_dir=folder, device="cpu").train(
                    [stage], force=True)
                scores[name].append(result.stages[0].val_accuracy)
                print(f"  seed {seed} {name}: {scores[name][-1]:.3f}", flush=True)
    reference = scores["as configured"]
    print(f"\n| stage {stage} augmentations | val accuracy | change against as configured |"
          "\n|---|---|---|")
    for name, values in scores.items():
        change = [v - r for v, r in zip(values, reference, strict=True)]
        print(f"| {name} | {summary(values)} | "
              f"{summary(change) if name != 'as configured' else '-'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--stage", type=int, default=2)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--skip-stages", action="store_true", help="only the augmentations")
    parser.add_argument("--try", dest="trials", action="append", default=[],
                        help="an augmentation to add, e.g. mixup=0.3")
    options = parser.parse_args()
    config = load_config(options.config)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                  source=options.data))
    seeds = [int(s) for s in options.seeds.split(",")]
    if not options.skip_stages:
        stage_table(config, seeds)
    trials = {name: float(value) for name, _, value in
              (trial.partition("=") for trial in options.trials)}
    augment_table(config, seeds, options.stage, trials)


if __name__ == "__main__":
    main()
