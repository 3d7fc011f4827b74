"""``slt list``: the saved checkpoints of a folder, from their sidecars alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from slt_cli.commands.options import CheckpointDir, Json
from slt_cli.commands.shared import checkpoint_folder
from slt_cli.errors import SltError
from slt_cli.show import console
from slt_cli.show.console import stage_seconds

Row = dict[str, Any]
# --sort: each key orders best (or first) on top; ties keep the default order: oldest
# run first, each run's stages in order
SORT_KEYS: dict[str, Callable[[Row], Any]] = {
    "created": lambda row: 0,  # the default order, as folder_rows gives it
    "name": lambda row: row["name"],
    "stage": lambda row: row["stage_idx"],
    "val_acc": lambda row: -row["val_accuracy"],
    "val_loss": lambda row: row["val_loss"],
    "time": lambda row: stage_seconds(row),
}

Sort = Annotated[str, typer.Option(
    "--sort", help=f"Order by {', '.join(SORT_KEYS)} (val_acc: highest first; val_loss "
                   "and time: lowest first).")]
Stage = Annotated[int | None, typer.Option(
    "--stage", min=0, help="Only the checkpoints of stage N.", show_default=False)]
Limit = Annotated[int | None, typer.Option(
    "--limit", min=1, help="Show the first N (after sorting); says how many are left out.",
    show_default=False)]


def list_checkpoints(checkpoint_dir: CheckpointDir = None, json: Json = False,
                     sort: Sort = "created", stage: Stage = None, limit: Limit = None) -> None:
    """List saved checkpoints (reads sidecars only, so it answers at once)."""
    from slt_cli.store.catalog import folder_rows
    from slt_cli.store.checkpoints import FOLDS_FILE

    if sort not in SORT_KEYS:
        raise SltError(f"unknown sort key {sort!r}", hint=f"Use {', '.join(SORT_KEYS)}.")
    folder = checkpoint_folder(checkpoint_dir)
    rows, problems = folder_rows(folder)
    for problem in problems:
        console.err.print(f"warning: skipped {problem}", highlight=False)
    found = len(rows)
    if stage is not None:
        rows = [row for row in rows if row["stage_idx"] == stage]
    if sort != "created":  # folder_rows gives the default order; sorting keeps its ties
        rows.sort(key=SORT_KEYS[sort])
    shown = rows[:limit]
    if json:
        console.print_json(shown)
    elif not found and (folder / FOLDS_FILE).is_file():
        from slt_cli.run.foldsummary import fold_folder

        console.err.print(f"no checkpoints in {folder} itself: it holds a cross-validation "
                          f"run; list a fold with --checkpoint-dir {fold_folder(folder, 1)}")
    elif not found:
        console.err.print(f"no checkpoints in {folder}; run `slt train` to make some")
    elif not rows:
        console.err.print(f"no checkpoints of stage {stage} in {folder} ({found:,} of other "
                          "stages)", highlight=False)
    elif len(shown) + 5 <= console.out.size.height:  # a rich table while it fits a screen
        console.out.print(console.checkpoint_table(shown, str(folder)))
    else:
        console.print_plain(console.checkpoint_lines(shown, str(folder)))
    if len(shown) < len(rows):
        console.err.print(f"showing {len(shown):,} of {len(rows):,} checkpoints "
                          f"(--limit {limit}); {len(rows) - len(shown):,} left out",
                          highlight=False)
