"""GISLR at scale: conversion rate, peak memory, cache size, time to first batch.

    python benchmarks/corpus_scale.py [--sequences 5000] [--small 1000] [--folder DIR]

Builds a GISLR-layout corpus (Kaggle's exact parquet schema, 543 rows per frame,
20-100 frames per sequence, NaN hands) of ``--sequences`` sequences, and a second one
of ``--small`` sequences (hard links to the first one's files). For each size, in a
fresh process each:

1. ``convert``: the first use, which converts the corpus into its cache (rate in
   sequences/s, peak RSS of the main process and of the largest worker);
2. ``train 1``: ``slt train --stages 1 --epochs-per-stage 1`` with the default model,
   which also prepares the resampled splits once (peak RSS, and peak anonymous RSS,
   the part that is not file pages of the memory-mapped cache);
3. ``train 2``: the same command again: time from starting the process to the first
   finished batch, and the same memory figures.

Then it extrapolates conversion time and cache size to the full 94,477 sequences.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FULL_GISLR = 94_477
SIGNS = 250
LENGTHS = (20, 100)
CORES = len(os.sched_getaffinity(0))  # os.cpu_count() counts the host's, not ours

# Runs inside each measured process: samples RSS and anonymous RSS every 20 ms.
PROBE = r"""
import json, resource, sys, threading, time
peak = {"anon": 0, "file": 0}
def sample():
    while True:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(("RssAnon", "RssFile")):
                    key = "anon" if line.startswith("RssAnon") else "file"
                    peak[key] = max(peak[key], int(line.split()[1]))
        time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
report = {"first_batch_at": None}
def finish(extra=None):
    time.sleep(0.05)
    usage = resource.getrusage
    report.update(extra or {}, peak_rss_mb=usage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  peak_anon_mb=peak["anon"] / 1024, peak_file_mb=peak["file"] / 1024,
                  workers_peak_rss_mb=usage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    print("REPORT " + json.dumps(report), flush=True)
"""

CONVERT = PROBE + r"""
from slt_cli.data.corpus import open_corpus
start = time.perf_counter()
store = open_corpus(sys.argv[1], "hands+pose+lips")
seconds = time.perf_counter() - start
finish({"seconds": seconds, "sequences": len(store), "frames": int(store.offsets[-1]),
        "folder": str(store.folder)})
"""

TRAIN = PROBE + r"""
from slt_cli.run import engine
from slt_cli.cli import main
from slt_cli.show.progress import RichReporter
load_data = engine.load_configured
def timed_load_data(*args, **kwargs):
    start = time.time()
    data = load_data(*args, **kwargs)
    report.update(load_data_s=time.time() - start, data_ready_at=time.time())
    return data
engine.load_configured = timed_load_data
original = RichReporter.batch_done
def batch_done(self, **info):
    if report["first_batch_at"] is None:
        report["first_batch_at"] = time.time()
    original(self, **info)
RichReporter.batch_done = batch_done
sys.argv = ["slt", "train", "--data", sys.argv[1], "--stages", "1", "--epochs-per-stage", "1",
            "--force", "--checkpoint-dir", sys.argv[2], "--device", "cpu"]
try:
    main()
except SystemExit as exc:
    report["exit"] = exc.code
finish()
"""


def measure(script: str, *args: str, env: dict[str, str]) -> dict:
    started = time.time()
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          env=env, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    if done.returncode != 0 or not lines or json.loads(lines[-1][7:]).get("exit"):
        raise SystemExit(f"failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    report = json.loads(lines[-1][len("REPORT "):])
    report["wall"] = time.time() - started
    for key in ("first_batch", "data_ready"):
        if report.get(f"{key}_at"):
            report[f"{key}_s"] = report[f"{key}_at"] - started
    return report


def write_part(args: tuple[Path, int, int, int]) -> None:
    from tests.corpora import write_gislr

    root, signers, start, count = args
    write_gislr(root, signers=signers, signs=SIGNS, repeats=1, lengths=LENGTHS, seed=0,
                start=start, count=count)


def build(folder: Path, sequences: int, small: int) -> tuple[Path, Path]:
    """The big corpus (written in parallel) and the small one (hard links into it)."""
    from tests.corpora import write_gislr

    big, little = folder / f"gislr-{sequences}", folder / f"gislr-{small}"
    signers = sequences // SIGNS
    if not (big / "train.csv").exists():
        start = time.perf_counter()
        step = 250
        jobs = [(big, signers, s, step) for s in range(0, signers * SIGNS, step)]
        with ProcessPoolExecutor(CORES) as pool:
            list(pool.map(write_part, jobs[1:]))
        write_part(jobs[0])  # last: train.csv appears only when every file exists
        print(f"wrote {signers * SIGNS} sequences in {time.perf_counter() - start:.0f}s")
    if not (little / "train.csv").exists():
        write_gislr(little, signers=small // SIGNS, signs=SIGNS, repeats=1, lengths=LENGTHS,
                    count=0)
        for person in sorted((big / "train_landmark_files").iterdir())[: small // SIGNS]:
            target = little / "train_landmark_files" / person.name
            target.mkdir(parents=True, exist_ok=True)
            for file in person.iterdir():
                os.link(file, target / file.name)
    return big, little


def size_mb(path: Path, skip: str | None = None) -> float:
    total = 0
    for dirpath, dirnames, files in os.walk(path):
        if skip in dirnames:
            dirnames.remove(skip)
        total += sum((Path(dirpath) / name).stat().st_size for name in files)
    return total / 1e6


def run(corpus: Path, cache: Path) -> dict:
    env = {**os.environ, "SLT_CACHE_DIR": str(cache), "COLUMNS": "160"}
    shutil.rmtree(cache, ignore_errors=True)
    spec = f"gislr:{corpus}"
    convert = measure(CONVERT, spec, env=env)
    store = Path(convert["folder"])
    with tempfile.TemporaryDirectory() as runs:
        first = measure(TRAIN, spec, f"{runs}/a", env=env)
        second = measure(TRAIN, spec, f"{runs}/b", env=env)
    prepared = sum(size_mb(p) for p in store.glob("prepared-*"))
    return {"sequences": convert["sequences"], "frames": convert["frames"],
            "raw_mb": size_mb(corpus, skip=".slt-cache"),
            "store_mb": size_mb(store) - prepared, "prepared_mb": prepared,
            "convert": convert, "train1": first, "train2": second}


def show(result: dict) -> None:
    c, t1, t2 = result["convert"], result["train1"], result["train2"]
    n = result["sequences"]
    print(f"\n== {n:,} sequences ({result['frames'] / n:.1f} frames on average)")
    print(f"convert: {c['seconds']:.1f}s = {n / c['seconds']:.0f} sequences/s; peak RSS "
          f"main {c['peak_rss_mb']:.0f} MB (anon {c['peak_anon_mb']:.0f} MB), largest worker "
          f"{c['workers_peak_rss_mb']:.0f} MB")
    print(f"size: raw parquet {result['raw_mb']:,.0f} MB, store {result['store_mb']:,.1f} MB "
          f"({result['raw_mb'] / result['store_mb']:.0f}x smaller), prepared splits "
          f"{result['prepared_mb']:,.1f} MB")
    for name, t in (("train 1 (prepares splits)", t1), ("train 2 (warm cache)", t2)):
        print(f"{name}: data ready after {t['data_ready_s']:.2f}s "
              f"(load_data {t['load_data_s']:.2f}s), first batch after "
              f"{t['first_batch_s']:.2f}s, whole run {t['wall']:.1f}s, "
              f"peak RSS {t['peak_rss_mb']:.0f} MB (anon {t['peak_anon_mb']:.0f} MB, "
              f"file-backed {t['peak_file_mb']:.0f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=5000)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "slt-bench")
    parser.add_argument("--keep", action="store_true", help="Keep the corpora for a rerun.")
    args = parser.parse_args()
    if min(args.sequences, args.small) < SIGNS:
        parser.error(f"each corpus holds whole signers of {SIGNS} signs: give at least {SIGNS}")
    args.folder.mkdir(parents=True, exist_ok=True)
    try:
        big, little = build(args.folder, args.sequences, args.small)
        results = [run(little, args.folder / "cache-small"), run(big, args.folder / "cache-big")]
        with tempfile.TemporaryDirectory() as runs:  # the same command on the built-in data
            baseline = measure(TRAIN, "synthetic", f"{runs}/s", env=dict(os.environ))
    finally:
        if not args.keep:
            shutil.rmtree(args.folder, ignore_errors=True)
    for result in results:
        show(result)
    print(f"\nbaseline, built-in synthetic data: data ready after {baseline['data_ready_s']:.2f}s,"
          f" first batch after {baseline['first_batch_s']:.2f}s")
    small, large = results
    n = large["sequences"]
    rate = n / large["convert"]["seconds"]
    print(f"\n== extrapolated to GISLR's {FULL_GISLR:,} sequences (at this corpus's mean length)")
    print(f"conversion {FULL_GISLR / rate / 60:.0f} min on {CORES} cores; store "
          f"{large['store_mb'] / n * FULL_GISLR / 1e3:.1f} GB, prepared splits "
          f"{large['prepared_mb'] / n * FULL_GISLR / 1e3:.1f} GB, raw "
          f"{large['raw_mb'] / n * FULL_GISLR / 1e3:.0f} GB")
    for key, label in (("convert", "conversion main process"), ("train2", "training (anon)")):
        field = "peak_rss_mb" if key == "convert" else "peak_anon_mb"
        print(f"{label}: {small[key][field]:.0f} MB at {small['sequences']:,} -> "
              f"{large[key][field]:.0f} MB at {n:,} sequences")
    print(json.dumps(results, indent=1, default=str), file=sys.stderr)


if __name__ == "__main__":
    main()
