"""``slt list``: the saved checkpoints of a folder, from their sidecars alone."""

from __future__ import annotations

from typing import Any

from slt_cli import console
from slt_cli.commands.options import CheckpointDir, Json
from slt_cli.commands.shared import checkpoint_folder, readable_checkpoints

LISTED_KEYS = ("name", "stage_idx", "stage_name", "val_loss", "val_accuracy", "training_time",
               "stage_time", "epoch", "parent", "created_at", "run_id")


def list_checkpoints(checkpoint_dir: CheckpointDir = None, json: Json = False) -> None:
    """List saved checkpoints (reads sidecars only, so it answers at once)."""
    from slt_cli.checkpoints import FOLDS_FILE

    folder = checkpoint_folder(checkpoint_dir)
    records = readable_checkpoints(folder)
    summary = [_listed(record.name, record.to_json()) for record in records]
    if json:
        console.print_json(summary)
    elif not records and (folder / FOLDS_FILE).is_file():
        from slt_cli.foldsummary import fold_folder

        console.err.print(f"no checkpoints in {folder} itself: it holds a cross-validation "
                          f"run; list a fold with --checkpoint-dir {fold_folder(folder, 1)}")
    elif not records:
        console.err.print(f"no checkpoints in {folder}; run `slt train` to make some")
    else:
        console.out.print(console.checkpoint_table(summary, str(folder)))


def _listed(name: str, sidecar: dict[str, Any]) -> dict[str, Any]:
    """The listed keys; a distilled student's also its ``teachers`` (names)."""
    row = {"name": name, **{key: sidecar[key] for key in LISTED_KEYS[1:]}}
    if sidecar.get("distilled"):
        row["teachers"] = [teacher["name"] for teacher in sidecar["distilled"]["teachers"]]
    return row
