"""``slt export``: write a checkpoint as one ONNX or TorchScript file that takes raw
landmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slt_cli.commands.options import CheckpointDir, Model
from slt_cli.commands.shared import checkpoint_folder
from slt_cli.errors import SltError
from slt_cli.show import console


def export(
    model: Model,
    format_: Annotated[str, typer.Option(
        "--format", help="onnx (needs the onnx extra) or torchscript.", show_default=False)],
    out: Annotated[Path | None, typer.Option(
        "--out", help="File or folder to write to "
                      "[default: CHECKPOINT_DIR/exports/MODEL.onnx or .pt].",
        show_default=False)] = None,
    samples: Annotated[int, typer.Option(
        "--samples", min=1, max=10_000,
        help="Held-out and random sequences for the parity check (1 to 10,000).")] = 64,
    checkpoint_dir: CheckpointDir = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace the file at --out (and its .json) if it exists.")] = False,
) -> None:
    """Write a checkpoint as one ONNX or TorchScript file that takes raw landmarks.

    The file takes one sequence (T, J, C) float32, NaN for missing points, any T, and
    returns logits and probabilities; class names and preprocessing facts go beside it
    in FILE.json, which names FILE's SHA-256. It is checked against PyTorch before it is
    written; an existing file is replaced only with --force.
    """
    from slt_cli.store.checkpoints import EXPORT_FORMATS, read_sidecar

    if format_ not in EXPORT_FORMATS:
        raise SltError(f"--format {format_!r}: expected onnx or torchscript")
    folder = checkpoint_folder(checkpoint_dir)
    read_sidecar(folder, model)  # a typo'd name is told before torch is imported
    from slt_cli.use.export import export_checkpoint

    result = export_checkpoint(folder, model, format_, out, samples=samples, force=force)
    console.out.print(console.parity_table(result, model))
    if result.note:
        console.err.print(result.note, highlight=False)
    console.err.print(f"wrote {result.path} ({result.size / 1e6:,.2f} MB) and "
                      f"{result.metadata_path.name}", highlight=False)
