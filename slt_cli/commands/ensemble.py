"""``slt ensemble``: combine saved checkpoints into one (``slt_cli.ensemble`` does it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from slt_cli import console

if TYPE_CHECKING:
    from slt_cli.ensemble import EnsembleResult


def ensemble(
    members: Annotated[list[str], typer.Argument(
        help="Two or more checkpoints of the folder, e.g. best_model_stage_4 "
             "best_model_stage_5.", show_default=False)],
    name: Annotated[str, typer.Option(
        "--name", help="Name of the new checkpoint (must not exist yet).", show_default=False)],
    method: Annotated[str, typer.Option(
        "--method", help="logits: average the members' predictions (any architectures); "
                         "weights: average their weights (one architecture).")] = "logits",
    checkpoint_dir: Annotated[Path | None, typer.Option(
        "--checkpoint-dir", help="Folder of the members and the result [default: "
        "run.checkpoint_dir of the config, else checkpoints/].", show_default=False)] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Combine checkpoints into one, scored on their validation data and saved beside them."""
    from slt_cli.config import find_config, load_config
    from slt_cli.ensemble import make_ensemble

    reporter = console.RichReporter()
    with reporter.running():
        result = make_ensemble(load_config(find_config(None)), members, name, method=method,
                               checkpoint_dir=checkpoint_dir, device=device, reporter=reporter)
    for note in result.notes:
        reporter.note(note)
    console.out.print(ensemble_table(result))


def ensemble_table(result: EnsembleResult) -> Table:
    """Each member's validation score, then the ensemble's on the same sequences."""
    table = Table(title=f"{result.name}: {result.method} ensemble, scored on the val split "
                        f"of {result.source} ({result.count} sequences)", title_justify="left")
    for column in ("checkpoint", "model", "val loss", "val acc"):
        table.add_column(column, justify="right" if column.startswith("val") else "left")
    for member in result.members:
        table.add_row(member.name, member.model, f"{member.val_loss:.4f}",
                      f"{member.val_accuracy:.4f}")
    best = max(member.val_accuracy for member in result.members)
    table.add_row(f"[bold]{result.name}[/]", f"{result.method} ensemble",
                  f"{result.val_loss:.4f}", f"[bold]{result.val_accuracy:.4f}[/] "
                  f"{console.arrow(result.val_accuracy - best, higher_is_better=True)}")
    return table
