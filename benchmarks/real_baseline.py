"""A plain baseline on exactly the splits ``real_suite.py`` trains on: logistic
regression on the flattened sequence (scikit-learn, not a dependency of slt).

    pip install scikit-learn
    python benchmarks/real_baseline.py [DATA ...] [--seeds 0,1,2] [--folds 3]

As in mediapipe-dev's README: ``StandardScaler`` then ``LogisticRegression(max_iter=
5000)`` on the raw coordinates (T x J x C values, NaN as 0), trained on a run's
training and validation sequences and scored on its held-out ones. Prints held-out
accuracy (mean ± std over runs), pooled accuracy, mean and worst per-signer accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_suite import DEFAULT_DATA, plan_jobs  # noqa: E402

from slt_cli.data import load_source  # noqa: E402


def score_job(spec: str) -> tuple[float, int, dict[str, float]]:
    """(held-out accuracy, held-out count, accuracy per held-out signer) of one run."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    with np.load(spec, allow_pickle=False) as arrays:
        x, y, split = arrays["x"], arrays["y"], arrays["split"].astype(str)
        signer = arrays["signer"] if "signer" in arrays.files else None
    flat = np.nan_to_num(x.reshape(len(x), -1), nan=0.0)
    test = split == "test"
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    model.fit(flat[~test], y[~test])
    hits = model.predict(flat[test]) == y[test]
    people = {} if signer is None else {
        str(who): float(hits[signer[test] == who].mean()) for who in np.unique(signer[test])}
    return float(hits.mean()), int(test.sum()), people


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="*")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--fold-seed", type=int, default=0)
    options = parser.parse_args()
    seeds = [int(s) for s in options.seeds.split(",")]
    for spec in options.data or [str(p) for p in DEFAULT_DATA]:
        if not Path(spec).exists():
            print(f"skipped {spec}: not found", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory() as scratch:
            jobs = plan_jobs(spec, spec, seeds, options.folds, options.fold_seed, Path(scratch))
            if not jobs[0].test_signers:  # the data's own test split: write it as is
                raw = load_source(spec)
                path = Path(scratch) / "given.npz"
                np.savez(path, x=raw.x, y=raw.y, split=raw.split)
                jobs = [dataclasses.replace(jobs[0], spec=str(path))]  # deterministic
            scores = [score_job(job.spec) for job in jobs]
        accuracies = [accuracy for accuracy, _, _ in scores]
        pooled = sum(a * n for a, n, _ in scores) / sum(n for _, n, _ in scores)
        people = {who: acc for _, _, found in scores for who, acc in found.items()}
        line = (f"{spec}: logistic regression held-out {statistics.mean(accuracies):.3f}"
                f"±{statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0:.3f}, "
                f"pooled {pooled:.3f}")
        if people:
            worst = min(people, key=people.get)
            line += (f", signers {statistics.mean(people.values()):.3f}, worst "
                     f"{people[worst]:.3f} (#{worst})")
        print(line, flush=True)


if __name__ == "__main__":
    main()
