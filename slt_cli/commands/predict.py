"""``slt predict`` and ``slt export``: use a trained checkpoint on new sequences, or write
it as one file (ONNX or TorchScript) that takes raw landmarks.

Registered on the app in ``cli.py``; torch is imported inside the commands only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from slt_cli import console
from slt_cli.config import configured_checkpoint_dir
from slt_cli.errors import SltError

Model = Annotated[str, typer.Argument(help="Checkpoint to use, e.g. best_model_stage_5.")]
CheckpointDir = Annotated[Path | None, typer.Option(
    "--checkpoint-dir", help="Checkpoint folder [default: run.checkpoint_dir of the config, "
    "else checkpoints/].", show_default=False)]


def predict(
    model: Model,
    inputs: Annotated[list[Path], typer.Argument(
        help="Sequences to classify: .npz files (x, optional lengths and y), GISLR .parquet "
             "or .pose files.", show_default=False)],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Labels to show per sequence.")] = 5,
    json: Annotated[bool, typer.Option("--json", help="Print JSON to stdout instead of a table.")
                    ] = False,
    checkpoint_dir: CheckpointDir = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Classify sequences with a checkpoint: top-k labels and their probabilities.

    Each input gets exactly the preprocessing the checkpoint was trained with (its
    sidecar's landmark selection, normalisation, frames and motion features).
    """
    import numpy as np

    from slt_cli.data.inputs import read_sequences
    from slt_cli.devices import resolve_device
    from slt_cli.inference import load_model, predict_probabilities

    loaded = load_model(checkpoint_dir or configured_checkpoint_dir(), model,
                        resolve_device(device))
    rows: list[dict[str, Any]] = []
    for path in inputs:
        sequences = read_sequences(path, landmarks=loaded.preprocessing.landmarks,
                                   classes=loaded.classes, joints=loaded.preprocessing.joints)
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
        console.out.print(_prediction_table(rows, model))
    labelled = [row for row in rows if row["label"] is not None]
    if labelled:
        hits = sum(bool(row["top"]) and row["top"][0]["class"] == row["label"]
                   for row in labelled)
        console.err.print(f"top-1 accuracy {hits / len(labelled):.4f} on {len(labelled)} "
                          "labelled sequence(s)", highlight=False)


def export(
    model: Model,
    format_: Annotated[str, typer.Option(
        "--format", help="onnx (needs the onnx extra) or torchscript.", show_default=False)],
    out: Annotated[Path | None, typer.Option(
        "--out", help="File or folder to write to "
                      "[default: CHECKPOINT_DIR/exports/MODEL.onnx or .pt].",
        show_default=False)] = None,
    samples: Annotated[int, typer.Option(
        "--samples", min=1, help="Held-out and random sequences for the parity check.")] = 64,
    checkpoint_dir: CheckpointDir = None,
) -> None:
    """Write a checkpoint as one ONNX or TorchScript file that takes raw landmarks.

    The file takes one sequence (T, J, C) float32, NaN for missing points, any T, and
    returns logits and probabilities; class names and preprocessing facts go beside it
    in FILE.json. It is checked against PyTorch before it is written.
    """
    from slt_cli.export import FORMATS, export_checkpoint

    if format_ not in FORMATS:
        raise SltError(f"--format {format_!r}: expected onnx or torchscript")
    result = export_checkpoint(checkpoint_dir or configured_checkpoint_dir(), model, format_,
                               out, samples=samples)
    table = Table(title=f"{result.format} export of {model}: parity with PyTorch")
    for column in ("inputs", "sequences", "max |Δ logit|", "top-1 agreement"):
        table.add_column(column, justify="left" if column == "inputs" else "right")
    for check in result.parity:
        table.add_row(check.inputs, str(check.count), f"{check.max_abs_diff:.2e}",
                      f"{check.top1_agreement:.4f}")
    console.out.print(table)
    if result.note:
        console.err.print(result.note, highlight=False)
    console.err.print(f"wrote {result.path} ({result.size / 1e6:,.2f} MB) and "
                      f"{result.metadata_path.name}", highlight=False)


def _rows(sequences: Any, probabilities: Any, classes: tuple[str, ...], top_k: int,
          empty: Any) -> list[dict[str, Any]]:
    """One row per sequence; a sequence with no landmark at all gets no labels (``top``
    empty): there is nothing to classify, as training agrees by leaving such clips out."""
    order = (-probabilities).argsort(axis=1, kind="stable")[:, :top_k]
    return [{"input": str(sequences.source), "index": i,
             "label": sequences.labels[i] if sequences.labels else None,
             "top": [] if empty[i] else [
                 {"class": classes[k], "probability": round(float(probabilities[i, k]), 6)}
                 for k in order[i]]}
            for i in range(len(sequences))]


def _prediction_table(rows: list[dict[str, Any]], model: str) -> Table:
    table = Table(title=f"predictions of {model}")
    table.add_column("input")
    table.add_column("#", justify="right")
    labelled = any(row["label"] is not None for row in rows)
    if labelled:
        table.add_column("true label")
    table.add_column("top label")
    table.add_column("prob", justify="right")
    table.add_column("next labels")
    for row in rows:
        if not row["top"]:
            cells = [escape(Path(row["input"]).name), str(row["index"])]
            cells += [escape(row["label"] or "–")] if labelled else []
            table.add_row(*cells, "[dim]no landmark at all[/]", "–", "–")
            continue
        best, *rest = row["top"]
        mark = ""
        if row["label"] is not None:
            mark = " [green]✓[/]" if best["class"] == row["label"] else " [red]✗[/]"
        cells = [escape(Path(row["input"]).name), str(row["index"])]
        cells += [escape(row["label"] or "–")] if labelled else []
        cells += [f"{escape(best['class'])}{mark}", f"{best['probability']:.3f}",
                  escape(", ".join(f"{t['class']} {t['probability']:.3f}" for t in rest) or "–")]
        table.add_row(*cells)
    return table
