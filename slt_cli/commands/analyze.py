"""``slt analyze``: each stage's best model against the stage before it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from slt_cli.commands.options import CheckpointDir, Json
from slt_cli.commands.shared import checkpoint_folder, readable_checkpoints
from slt_cli.errors import SltError
from slt_cli.show import console

if TYPE_CHECKING:
    from rich.table import Table

    from slt_cli.store.sidecar import Sidecar
    from slt_cli.use.analysis import Analysis


def analyze(
    table: Annotated[bool, typer.Option(
        "--table", help="Show the stage-by-stage table (the default output).")] = True,
    json: Json = False,
    checkpoint_dir: CheckpointDir = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Also draw validation loss and accuracy over every epoch of every "
        "stage into this .png (or .svg, .pdf) file; needs slt[plot].",
        show_default=False)] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace the --plot file if it exists.")] = False,
) -> None:
    """Compare the best model of each stage with the stage before it."""
    from slt_cli.use.analysis import analyze as compare

    folder = checkpoint_folder(checkpoint_dir)
    if plot is not None:
        from slt_cli.show import plots

        plots.check_output(plot, replace=force)
    records = readable_checkpoints(folder)
    analysis = compare(records)
    if json:
        console.print_json(analysis.to_dict())
    elif not analysis.stages and not analysis.students:
        raise SltError(f"no best_model_stage_N checkpoints in {folder}",
                       hint="Run `slt train` first, or pass --checkpoint-dir.")
    else:
        if analysis.stages:
            console.out.print(console.analysis_table(analysis))
        if analysis.loss_reduction_pct is not None:
            console.out.print(f"total: loss reduction {analysis.loss_reduction_pct:+.1f}%, "
                              f"accuracy gain {analysis.accuracy_gain_pct:+.1f} points",
                              highlight=False)
        if analysis.students:  # distilled students, beside their teachers
            console.out.print(students_table(analysis))
    if plot is not None:
        _plot_curves(folder, records, plot)


def students_table(analysis: Analysis) -> Table:
    """``slt analyze``: each distilled student against the best of its teachers."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="distilled students (slt distill)", title_justify="left")
    for column in ("checkpoint", "teachers", "alpha", "T", "parameters", "val acc",
                   "Δ acc vs teachers"):
        table.add_column(column, justify="left" if column in ("checkpoint", "teachers")
                         else "right")
    for row in analysis.students:
        table.add_row(escape(row.checkpoint), escape(", ".join(row.teachers)), f"{row.alpha:g}",
                      f"{row.temperature:g}", f"{row.parameters:,}", f"{row.val_accuracy:.4f}",
                      console.arrow(row.accuracy_change, higher_is_better=True))
    return table


def _plot_curves(folder: Path, records: list[Sidecar], path: Path) -> None:
    """``--plot``: the epochs of the best checkpoints' runs, from metrics.csv."""
    from slt_cli.run.history import METRICS_FILE, read_history
    from slt_cli.show import plots

    rows, problems = read_history(folder)
    for problem in problems:
        console.err.print(f"warning: skipped {problem}", highlight=False)
    curves = plots.training_curves(records, rows)
    if not curves.stages:
        raise SltError(f"no recorded epochs of the best_model_stage_N checkpoints in "
                       f"{folder / METRICS_FILE}",
                       hint="Checkpoints trained before slt kept metrics.csv cannot be "
                            "plotted; train them again.")
    if curves.missing:
        console.err.print(f"note: no recorded epochs for stage(s) "
                          f"{', '.join(map(str, curves.missing))}; plotted the others",
                          highlight=False)
    plots.save_training_curves(curves, path)
    console.err.print(f"wrote {path}", highlight=False)
