"""``slt distill``: train a small student from teacher checkpoints (``slt_cli.use.distill``),
then hold its exported size and latency against the budgets asked for."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from slt_cli.commands.options import CheckpointDir, Device
from slt_cli.commands.shared import check_device, checkpoint_folder
from slt_cli.errors import BudgetMissed, SltError
from slt_cli.show import console

if TYPE_CHECKING:
    from rich.table import Table

    from slt_cli.use.distill import DistillResult


def distill(
    teachers: Annotated[list[str], typer.Argument(
        help="One or more teacher checkpoints of the folder (ensembles too), of one data "
             "layout; several are averaged (mean probabilities).", show_default=False)],
    name: Annotated[str, typer.Option(
        "--name", help="Name of the student's checkpoint (must not exist yet).",
        show_default=False)],
    student: Annotated[str | None, typer.Option(
        "--student", help="Student preset: tiny (33k parameters on mediapipe-dev) or small "
                          "(61k; the default network: 168k) [default: small, or the "
                          "[model] of --config].",
        show_default=False)] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="A stages.toml: its [model] is the student (unless --student), its "
                         "stages and [run] the training settings.", show_default=False)] = None,
    alpha: Annotated[float, typer.Option(
        "--alpha", help="Share of the teachers' soft targets in the loss, 0 to 1; 0 trains "
                        "on the labels alone (the control).")] = 0.7,
    temperature: Annotated[float, typer.Option(
        "--temperature", help="Softens teacher and student distributions (> 0).")] = 3.0,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", help="Epochs of the student's stage [default: the stage's].",
        show_default=False)] = None,
    stage: Annotated[int, typer.Option(
        "--stage", help="The config's stage whose settings (optimiser, augmentations, label "
                        "smoothing) the student trains with.")] = 2,
    max_mb: Annotated[float | None, typer.Option(
        "--max-mb", help="Budget for the exported ONNX file, in MB (10^6 bytes); needs the "
                         "onnx extra.", show_default=False)] = None,
    max_ms: Annotated[float | None, typer.Option(
        "--max-ms", help="Budget for CPU latency per sequence (ONNX Runtime, one thread, "
                         "median), in ms; needs the onnx extra.", show_default=False)] = None,
    data: Annotated[str | None, typer.Option(
        "--data", help="Train on this data spec instead of the first teacher's (same "
                       "layout and classes).", show_default=False)] = None,
    checkpoint_dir: CheckpointDir = None,
    device: Device = "auto",
) -> None:
    """Distill teachers into a small student saved beside them; exit 3 when it misses
    --max-mb or --max-ms (the student is kept)."""
    from slt_cli.cfg.config import find_config, load_config

    check_device(device)
    for flag, value in (("--max-mb", max_mb), ("--max-ms", max_ms)):
        if value is not None and not value > 0:
            raise SltError(f"{flag} {value}: must be > 0")
    budgets = max_mb is not None or max_ms is not None
    if budgets:
        from slt_cli.use.export import require_onnx

        require_onnx()  # before training: a budget cannot be checked without it
    settings = load_config(find_config(config))
    from slt_cli.use.distill import DEFAULT_STUDENT, STUDENT_PRESETS, check_request

    check_request(teachers, name, alpha, temperature, epochs, student)
    model: dict[str, Any] = STUDENT_PRESETS[student or DEFAULT_STUDENT]
    if student is None and config is not None:  # the [model] of the file named
        model = {"name": settings.model.name, **settings.model.settings}
    from slt_cli.show.progress import RichReporter
    from slt_cli.use.distill import distill as run_distill

    reporter = RichReporter()
    with reporter.running():
        result = run_distill(settings, teachers, name, student=model, alpha=alpha,
                             temperature=temperature, epochs=epochs, stage_idx=stage,
                             data_spec=data,
                             checkpoint_dir=checkpoint_folder(checkpoint_dir, settings),
                             device=device, reporter=reporter)
    for note in result.notes:
        reporter.note(note)
    console.out.print(distill_table(result))
    _check_budgets(result, max_mb, max_ms)


def distill_table(result: DistillResult) -> Table:
    """Teachers and student on the same validation clips, then the exported student's
    size and latency."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{result.name}: distilled (alpha {result.alpha:g}, T "
                        f"{result.temperature:g}), scored on the val split of {result.source}",
                  title_justify="left")
    for column in ("model", "parameters", "val acc", "agrees with teachers"):
        table.add_column(column, justify="left" if column == "model" else "right")
    table.add_row(escape(", ".join(result.teachers)), f"{result.teacher_parameters:,}",
                  f"{result.teacher_val_accuracy:.4f}", "–")
    table.add_row(f"[bold]{escape(result.name)}[/] (epoch {result.best_epoch}/{result.epochs})",
                  f"{result.parameters:,}", f"[bold]{result.val_accuracy:.4f}[/]",
                  f"{result.agreement:.4f}")
    if result.footprint is not None:
        figures = result.footprint
        table.caption = (f"ONNX {figures.path}: {figures.size_mb:.3f} MB, "
                         f"{figures.ms_per_sequence:.3f} ms per sequence (CPU, one thread)")
        table.caption_justify = "left"
    return table


def _check_budgets(result: DistillResult, max_mb: float | None, max_ms: float | None) -> None:
    """Raises: BudgetMissed with every figure over its budget."""
    figures = result.footprint
    if figures is None:
        return
    missed = []
    if max_mb is not None and figures.size_mb > max_mb:
        missed.append(f"{figures.size_mb:.3f} MB > --max-mb {max_mb:g}")
    if max_ms is not None and figures.ms_per_sequence > max_ms:
        missed.append(f"{figures.ms_per_sequence:.3f} ms per sequence > --max-ms {max_ms:g}")
    if missed:
        raise BudgetMissed(f"{result.name} misses its budget: {'; '.join(missed)}",
                           hint=f"The checkpoint {result.name} is kept; try --student tiny "
                                "or a smaller [model].")
