"""``slt evaluate``: score a checkpoint on a split of its data (or of other data)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slt_cli.commands.options import CheckpointDir, Device, Json, Model
from slt_cli.commands.shared import check_device, checkpoint_folder
from slt_cli.errors import SltError
from slt_cli.show import console

SPLITS = ("val", "test", "train")


def evaluate(
    model: Model,
    data: Annotated[str | None, typer.Option(
        help="Data spec [default: the data the checkpoint was trained on].",
        show_default=False)] = None,
    split: Annotated[str, typer.Option(help="Split to score: val, test or train.")] = "val",
    json: Json = False,
    checkpoint_dir: CheckpointDir = None,
    device: Device = "auto",
    confusion: Annotated[Path | None, typer.Option(
        "--confusion", help="Also draw the row-normalised confusion matrix into this .png "
        "(or .svg, .pdf) file; needs slt[plot].", show_default=False)] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace the --confusion file if it exists.")] = False,
    by: Annotated[str | None, typer.Option(
        "--by", help="Also show accuracy per signer or per class, the weakest first.",
        show_default=False)] = None,
) -> None:
    """Score a checkpoint: loss, accuracy, top-5, per-class and per-signer accuracy, worst
    confusions."""
    from slt_cli.cfg.config import find_config, load_config
    from slt_cli.store.checkpoints import read_sidecar

    if split not in SPLITS:
        raise SltError(f"--split {split!r}: expected val, test or train")
    if by not in (None, "signer", "class"):
        raise SltError(f"--by {by!r}: expected signer or class")
    check_device(device)
    if confusion is not None:
        from slt_cli.show import plots

        plots.check_output(confusion, replace=force)
    settings = load_config(find_config(None))
    folder = checkpoint_folder(checkpoint_dir, settings)
    read_sidecar(folder, model)  # a typo'd name is told before torch is imported
    from slt_cli.run.engine import Trainer

    result = Trainer(settings, checkpoint_dir=folder, device=device).evaluate(
        model, data_spec=data, split=split)
    if confusion is not None:
        plots.save_confusion(result, confusion)
        console.err.print(f"wrote {confusion}", highlight=False)
    if by == "signer" and not result.per_signer:
        raise SltError(f"{result.source} names no signers, so there is no accuracy by signer",
                       hint="Give the data signer ids (a signer array, signers.csv, a signer "
                            "column).")
    if json:
        console.print_json(result.to_dict())
        return
    console.out.print(console.evaluation_table(result))
    if by is not None:
        console.out.print(console.group_table(result, by))
    if pairs := result.most_confused():
        console.out.print(console.confusion_table(pairs))
