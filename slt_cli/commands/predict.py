"""``slt predict``: classify new sequences with a trained checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from slt_cli.commands.options import CheckpointDir, Device, Json, Model
from slt_cli.commands.shared import check_device, checkpoint_folder
from slt_cli.show import console


def predict(
    model: Model,
    inputs: Annotated[list[Path], typer.Argument(
        help="Sequences to classify: .npz files (x, optional lengths and y), GISLR .parquet "
             "or .pose files, video clips (.mp4, ...; needs slt[video]), folders of one "
             "sequence's MediaPipe FRAME.npy or OpenPose "
             "*_keypoints.json frames, or any folder of these (every sequence under it; a "
             "folder named like a class labels what is in it).", show_default=False)],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Labels to show per sequence.")] = 5,
    json: Json = False,
    checkpoint_dir: CheckpointDir = None,
    device: Device = "auto",
) -> None:
    """Classify sequences with a checkpoint: top-k labels and their probabilities.

    Each input gets exactly the preprocessing the checkpoint was trained with (its
    sidecar's landmark selection, normalisation, frames and motion features).
    """
    from slt_cli.store.checkpoints import read_sidecar

    check_device(device)
    folder = checkpoint_folder(checkpoint_dir)
    read_sidecar(folder, model)  # a typo'd name is told before torch is imported
    import numpy as np

    from slt_cli.data.inputs import find_inputs, is_video, read_sequences
    from slt_cli.data.sources import ReadOptions
    from slt_cli.run.devices import resolve_device
    from slt_cli.use.inference import load_model, predict_probabilities

    loaded = load_model(folder, model, resolve_device(device))
    rows: list[dict[str, Any]] = []
    found = [item for given in inputs for item in find_inputs(given, loaded.classes)]
    if any(is_video(path) for path, _ in found):
        rows += _clips(loaded, [item for item in found if is_video(item[0])], top_k)
        found = [item for item in found if not is_video(item[0])]
    for path, label in found:
        sequences = read_sequences(path, landmarks=loaded.preprocessing.landmarks,
                                   classes=loaded.classes, joints=loaded.preprocessing.joints,
                                   options=ReadOptions.of(loaded.sidecar.config.data),
                                   label=label)
        for note in sequences.notes:
            console.err.print(note, highlight=False)
        loaded.check_layout(sequences.x.shape[2], sequences.x.shape[3], str(path))
        probabilities = predict_probabilities(loaded, sequences.x, sequences.lengths)
        empty = np.isnan(sequences.x).all(axis=(1, 2, 3))
        if empty.any():  # training leaves such clips out; here they stay, unclassified
            console.err.print(f"{path.name}: {int(empty.sum())} sequence(s) hold no landmark at "
                              f"all (all NaN or zero) and are not classified, the first at "
                              f"index {int(np.argmax(empty))}", highlight=False)
        rows += _rows(sequences, probabilities, loaded.classes, top_k, empty)
    if json:
        console.print_json(rows)
    else:
        from slt_cli.video.scoring import shown_rows

        console.out.print(console.prediction_table(shown_rows(rows), model))
    labelled = [row for row in rows if row["label"] is not None]
    if labelled:
        hits = sum(bool(row["top"]) and row["top"][0]["class"] == row["label"]
                   for row in labelled)
        console.err.print(f"top-1 accuracy {hits / len(labelled):.4f} on {len(labelled)} "
                          "labelled sequence(s)", highlight=False)


def _clips(loaded: Any, clips: list[tuple[Path, str | None]], top_k: int
           ) -> list[dict[str, Any]]:
    """Rows of video clips: landmarks extracted (MediaPipe), then the whole clip and every
    window of the checkpoint's frame count scored."""
    from slt_cli.show.progress import RichReporter
    from slt_cli.video.backend import load_backend
    from slt_cli.video.scoring import clip_landmarks, clip_rows

    backend, reporter, rows = load_backend("slt predict on video"), RichReporter(), []
    for path, label in clips:
        with reporter.running():
            x = clip_landmarks(loaded, path, backend, reporter)
        rows += clip_rows(loaded, path, x, label, top_k)
    return rows


def _rows(sequences: Any, probabilities: Any, classes: tuple[str, ...], top_k: int,
          empty: Any) -> list[dict[str, Any]]:
    """One JSON-ready row per sequence: its input, index, label and top-k classes; a
    sequence with no landmark at all gets none (``top`` empty): there is nothing to
    classify, as training agrees by leaving such clips out."""
    order = (-probabilities).argsort(axis=1, kind="stable")[:, :top_k]
    return [{"input": str(sequences.source), "index": i,
             "label": sequences.labels[i] if sequences.labels else None,
             "top": [] if empty[i] else [
                 {"class": classes[k], "probability": round(float(probabilities[i, k]), 6)}
                 for k in order[i]]}
            for i in range(len(sequences))]
