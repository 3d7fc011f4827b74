"""Exported models against PyTorch: logit agreement and latency, on real and generated data.

    OMP_NUM_THREADS=1 python benchmarks/export_parity.py
        [--data ../shared/datasets/libras/libras.npz] [--checkpoint-dir DIR --model NAME]
        [--epochs 3] [--generated 200] [--repeats 3]

Without ``--checkpoint-dir`` it first trains one in a temporary folder through the CLI
(``slt train --data D --stages 1 --epochs-per-stage E --force``). Then ``slt export``
writes it as TorchScript and as ONNX, and every sequence of ``--data`` (all splits, each
at its own length, through the raw-landmark path) and ``--generated`` random sequences
(1 to 3 x frames long, a fifth of the landmarks missing) are run one at a time through
PyTorch eager, the TorchScript file and the ONNX file in ONNX Runtime, all on one CPU
thread. Prints JSON lines: per runtime and input set, the largest absolute logit
difference from PyTorch eager and the top-1 agreement (and accuracy where labels are
known); the same for the trainer's own path (numpy ``normalise`` + ``resample`` of the
padded data, then the network), which the raw path must reproduce; per runtime, the
median and 90th percentile milliseconds per sequence at batch 1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/datasets/libras/libras.npz"
MODEL = "best_model_stage_1"


def train(data: Path, folder: Path, epochs: int) -> None:
    subprocess.run([sys.executable, "-m", "slt_cli", "train", "--data", str(data.resolve()),
                    "--stages", "1", "--epochs-per-stage", str(epochs), "--force",
                    "--checkpoint-dir", str(folder)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def export(folder: Path, model: str, fmt: str, out: Path) -> float:
    """Export through the CLI; seconds it took."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "slt_cli", "export", model, "--format", fmt,
                    "--out", str(out), "--checkpoint-dir", str(folder)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def runtimes(folder: Path, model: str, files: dict[str, Path]) -> dict[str, Callable]:
    """name -> function of one (T, J, C) float32 array returning logits (K,)."""
    import numpy as np
    import onnxruntime
    import torch

    from slt_cli.use.inference import SequenceClassifier, load_model

    eager = SequenceClassifier(load_model(folder, model).classifier).eval()
    scripted = torch.jit.load(str(files["torchscript"]))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(files["onnx"]), options,
                                           providers=["CPUExecutionProvider"])

    def torch_runner(module: Callable) -> Callable:
        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.from_numpy(x))[0].numpy()
        return run

    return {"pytorch_eager": torch_runner(eager), "torchscript": torch_runner(scripted),
            "onnxruntime": lambda x: session.run(["logits"], {"landmarks": x})[0]}


def trainer_logits(loaded, raw):
    """Logits as training and ``slt evaluate`` compute them: numpy preprocessing of the
    padded arrays, then the network on features."""
    import torch

    from slt_cli.data.preprocess import normalise, resample
    from slt_cli.data.transforms import features

    prepared = resample(normalise(raw.x), raw.lengths, loaded.preprocessing.frames)
    with torch.inference_mode():
        inputs = features(torch.from_numpy(prepared), loaded.preprocessing.motion)
        return loaded.classifier.network(inputs).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--checkpoint-dir", type=Path)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--generated", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the inputs")
    options = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import numpy as np
    import torch

    from slt_cli.data import load_source
    from slt_cli.use.export import random_sequences
    from slt_cli.use.inference import load_model

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        folder = options.checkpoint_dir or Path(scratch) / "checkpoints"
        if options.checkpoint_dir is None:
            started = time.perf_counter()
            train(options.data, folder, options.epochs)
            print(json.dumps({"trained": options.model, "data": str(options.data),
                              "epochs": options.epochs,
                              "seconds": round(time.perf_counter() - started, 1)}), flush=True)
        files = {fmt: Path(scratch) / f"model{suffix}"
                 for fmt, suffix in (("torchscript", ".pt"), ("onnx", ".onnx"))}
        for fmt, path in files.items():
            seconds = export(folder, options.model, fmt, path)
            print(json.dumps({"export": fmt, "bytes": path.stat().st_size,
                              "seconds": round(seconds, 1)}), flush=True)
        run = runtimes(folder, options.model, files)
        loaded = load_model(folder, options.model)
        raw = load_source(str(options.data.resolve()))
        real = [np.ascontiguousarray(raw.x[i, :raw.lengths[i]]) for i in range(len(raw.y))]
        joints, channels = real[0].shape[1:]
        inputs = {
            options.data.stem: (real, [loaded.classes.index(raw.classes[k]) for k in raw.y]),
            "generated": (list(random_sequences(options.generated, joints, channels,
                                                loaded.preprocessing.frames, seed=0)), None),
        }
        trainer = trainer_logits(loaded, raw)
        reference = np.stack([run["pytorch_eager"](x) for x in real])
        print(json.dumps({"runtime": "trainer_numpy_path", "inputs": options.data.stem,
                          "count": len(real),
                          "max_abs_logit_diff": float(np.abs(trainer - reference).max()),
                          "top1_agreement": float((trainer.argmax(1)
                                                   == reference.argmax(1)).mean())}), flush=True)
        for name, (sequences, labels) in inputs.items():
            reference = np.stack([run["pytorch_eager"](x) for x in sequences])
            for runtime in ("pytorch_eager", "torchscript", "onnxruntime"):
                logits = np.stack([run[runtime](x) for x in sequences])
                line = {"runtime": runtime, "inputs": name, "count": len(sequences),
                        "max_abs_logit_diff": float(np.abs(logits - reference).max()),
                        "top1_agreement": float((logits.argmax(1) == reference.argmax(1)).mean())}
                if labels is not None:
                    line["accuracy"] = round(float((logits.argmax(1) == labels).mean()), 4)
                print(json.dumps(line), flush=True)
        timed = inputs[options.data.stem][0]
        for runtime, function in run.items():
            for x in timed[:20]:
                function(x)  # warm-up
            times = []
            for _ in range(options.repeats):
                for x in timed:
                    started = time.perf_counter()
                    function(x)
                    times.append((time.perf_counter() - started) * 1e3)
            times.sort()
            print(json.dumps({"runtime": runtime, "batch": 1, "calls": len(times),
                              "ms_median": round(statistics.median(times), 4),
                              "ms_p90": round(times[int(0.9 * len(times))], 4)}), flush=True)


if __name__ == "__main__":
    main()
