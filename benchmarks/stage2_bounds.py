"""What stages 3-5 could add at most by variance alone: two bounds on stage 2's best.

    python benchmarks/stage2_bounds.py --cache DIR [DATA ...] [--tag A] [--set ...]

``DIR`` is ``later_stages.py prepare``'s cache (stages 1-2 of the nine ``real_suite.py
--choose`` runs). For each run this trains a *twin*: stages 1-2 again on the same data
split with seed + 100 and the ``--set`` changes (another start, another order of
batches and augmentation draws; a model family by ``--set 'model.name="resnet1d"'``),
kept in ``DIR/twins/<set>-s<seed>-<tag>/``. It then scores on the fold's held-out
people:

- stage 2's best, the twin's, and the mean of their predicted probabilities (what distilling a
  two-network ensemble into one network aims at, as a polishing stage would);
- the worst held-out person's accuracy with stage 2 and with the pair, where the data
  names people;
- test-time augmentation of stage 2's best: with its mirror image (where the landmarks
  name left and right), and the mean over itself and 8 augmented draws, mild (rotate
  7.5, scale 0.075, speed 0.1) and stage 2's own rotation, scale, shear, shift and speed.

One line a run goes to ``DIR/bounds-<tag>.jsonl``; the table gives mean ± std over the
seeds per set and the mean over sets.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import later_stages  # noqa: E402
import real_suite  # noqa: E402

from slt_cli import Trainer  # noqa: E402

MILD = {"rotate": 7.5, "scale": 0.075, "speed": 0.1}
DRAWS = 8


def twin_folder(cache: Path, job: real_suite.Job, tag: str) -> Path:
    return cache / "twins" / f"{later_stages.folder(cache, job).name}-{tag}"


def test_time(trainer: Trainer, name: str) -> dict[str, float]:
    """Held-out accuracy of checkpoint ``name`` scored plainly and with test-time
    augmentation (see the module's docstring)."""
    import torch

    from slt_cli.cfg.config import AugmentConfig
    from slt_cli.data import load_configured
    from slt_cli.data.transforms import augment, mirror_permutation
    from slt_cli.run.records import build_network, checked_record, load_state
    from slt_cli.run.scoring import TensorSplit, predict_logits
    from slt_cli.store.checkpoints import load_weights, read_sidecar

    sidecar = read_sidecar(trainer.checkpoint_dir, name)
    data = load_configured(sidecar.config.data, sidecar.config.run.seed, trainer.reporter)
    model = build_network(checked_record(name, sidecar, data), seed=0)
    load_state(model, load_weights(trainer.checkpoint_dir, name, sidecar), name)
    test = TensorSplit.as_trained(data, "test", torch.device("cpu"),
                                   sidecar.config.data.dominant_hand)
    batch = trainer.config.run.batch_size

    def probabilities(clips: torch.Tensor, mirror: list[int] | None = None) -> torch.Tensor:
        return predict_logits(model, TensorSplit(clips, test.y), data.motion, batch,
                              mirror=mirror).softmax(-1)

    def accuracy(p: torch.Tensor) -> float:
        return (p.argmax(-1) == test.y).float().mean().item()

    plain = probabilities(test.x)
    scores = {"plain": accuracy(plain)}
    mirror = mirror_permutation(data.joints)
    if mirror is not None:  # the mean of a clip's and its mirror image's probabilities
        scores["mirror"] = accuracy(probabilities(test.x, mirror))
    trained = trainer.config.stages[1].augment  # the augmentation stage's settings
    for label, settings in (("tta_mild", AugmentConfig(**MILD)),
                            ("tta_train", dataclasses.replace(
                                trained, jitter=0.0, time_mask=0.0, joint_drop=0.0,
                                mirror=0.0, mixup=0.0))):
        generator, total = torch.Generator().manual_seed(0), plain.clone()
        for _ in range(DRAWS):
            total += probabilities(augment(test.x, settings, generator))
        scores[label] = accuracy(total)
    return scores


def bounds(job: real_suite.Job, cache: Path, tag: str, settings: list[str]) -> dict[str, Any]:
    import torch

    from slt_cli.errors import DataError
    from slt_cli.use.ensemble import make_ensemble

    torch.set_num_threads(1)
    twin_dir = twin_folder(cache, job, tag)
    twin = dataclasses.replace(job, seed=job.seed + 100)
    if not (twin_dir / "best_model_stage_2.safetensors").exists():
        later_stages.trainer_for(twin, settings, twin_dir).train([1, 2], force=True)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "checkpoints"
        shutil.copytree(later_stages.folder(cache, job), work)
        for suffix in (".safetensors", ".json"):
            shutil.copy(twin_dir / f"best_model_stage_2{suffix}", work / f"twin{suffix}")
        trainer = later_stages.trainer_for(job, [], work)
        scored = [("stage 1", "best_model_stage_1"), ("stage 2", "best_model_stage_2"),
                  ("twin", "twin")]
        try:
            make_ensemble(trainer.config, ["best_model_stage_2", "twin"], "pair",
                          checkpoint_dir=work, device="cpu")
            scored.append(("pair", "pair"))
        except DataError as error:  # a twin prepared otherwise (--set 'data....') is no member
            print(f"{twin_dir.name}: no pair: {error}", file=sys.stderr)
        row: dict[str, Any] = {"dataset": job.dataset, "seed": job.seed}
        for key, name in scored:
            scored = later_stages.held_out(trainer, name)
            row[key] = scored["accuracy"]
            if key in ("stage 2", "pair") and scored["per_signer"]:
                row[f"{key} worst person"] = min(scored["per_signer"].values())
        row.update({f"stage 2 {key}": value
                    for key, value in test_time(trainer, "best_model_stage_2").items()})
    return row


def render(rows: list[dict[str, Any]]) -> str:
    keys = [key for key in dict.fromkeys(key for row in rows for key in row)
            if key not in ("dataset", "seed")]
    lines, means = [], {}
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        mine = [row for row in rows if row["dataset"] == dataset]
        cells = {key: [row[key] for row in mine] for key in keys if key in mine[0]}
        lines.append(f"{Path(dataset).stem} ({len(mine)} runs)")
        lines.append("  " + "  ".join(f"{key} {later_stages.spread(values)}"
                                      for key, values in cells.items()))
        for key, values in cells.items():
            means.setdefault(key, []).append(statistics.mean(values))
    full = {key: values for key, values in means.items() if len(values) == len(lines) // 2}
    lines.append("mean over sets: " + "  ".join(f"{key} {statistics.mean(values):.3f}"
                                                for key, values in full.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="*")
    parser.add_argument("--cache", required=True, type=Path)
    parser.add_argument("--tag", default="A", help="names the twins' folders and the log")
    parser.add_argument("--set", action="append", default=[],
                        help="a change for the twins' stages 1-2, as recipe_lab.py takes it")
    parser.add_argument("--jobs", type=int, default=2)
    options = parser.parse_intermixed_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    specs = options.data or [str(p) for p in real_suite.DEFAULT_DATA if p.exists()]
    jobs = later_stages.plan(options.cache, specs)
    count = len(jobs)
    with ProcessPoolExecutor(options.jobs) as pool:
        rows = list(pool.map(bounds, jobs, [options.cache] * count, [options.tag] * count,
                             [options.set] * count))
    log = options.cache / f"bounds-{options.tag}.jsonl"
    log.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    print(render(rows))


if __name__ == "__main__":
    main()
