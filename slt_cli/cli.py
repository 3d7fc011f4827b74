"""The ``slt`` command line: parse, call the engine, render. Nothing else lives here.

Heavy modules (torch, the engine) are imported inside the commands that train, so
``slt --help`` and ``slt list`` answer at once.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from slt_cli import __version__, console
from slt_cli.checkpoints import FOLDS_FILE
from slt_cli.commands import guarded
from slt_cli.commands.data import data_app
from slt_cli.commands.ensemble import ensemble
from slt_cli.commands.predict import export, predict
from slt_cli.config import configured_checkpoint_dir
from slt_cli.errors import SltError

# Help in markdown mode: rich markup would read "[default: ...]" and "[run]" as tags.
app = typer.Typer(
    name="slt", no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
    rich_markup_mode="markdown",
    help="Train sign-language recognisers on keypoint sequences through a staged curriculum.",
)
app.add_typer(data_app, name="data")

CheckpointDir = Annotated[Path | None, typer.Option(
    "--checkpoint-dir", help="Checkpoint folder [default: run.checkpoint_dir of the config, "
    "else checkpoints/].", show_default=False)]
ConfigPath = Annotated[Path | None, typer.Option(
    "--config", help="A stages.toml to use instead of ./stages.toml or the built-in one.",
    show_default=False)]
Device = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON to stdout instead of a table.")]
Compile = Annotated[bool | None, typer.Option(
    "--compile/--no-compile", help="torch.compile the model: a slower start, then faster "
    "steps [default: run.compile].", show_default=False)]
Precision = Annotated[str | None, typer.Option(
    "--precision", help="auto (bf16 autocast on CUDA, fp32 on the CPU), bf16 or fp32 "
    "[default: run.precision].", show_default=False)]
Resume = Annotated[bool, typer.Option(
    "--resume", help="Carry on the interrupted run in the checkpoint folder (other flags "
    "but --checkpoint-dir and --device are taken from that run).")]


def command(name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a command behind the one error boundary (``commands.guarded``)."""

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        app.command(name)(guarded(func))
        return func

    return register


def _version(value: bool) -> None:
    if value:
        print(f"slt {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """Train sign-language recognisers on keypoint sequences through a staged curriculum."""


@command()
def train(
    stages: Annotated[str, typer.Option(
        help="Stages to run: all, 3, 2-4, 1,3,5 or names.")] = "all",
    force: Annotated[bool, typer.Option(
        help="Run every selected stage whatever the improvement (threshold -1.0).")] = False,
    config: ConfigPath = None,
    data: Annotated[str | None, typer.Option(
        help="Data spec: synthetic[:classes=60,signers=12,seed=0], a .npz path, gislr:DIR "
             "or pose:DIR.",
        show_default=False)] = None,
    checkpoint_dir: CheckpointDir = None,
    epochs_per_stage: Annotated[int | None, typer.Option(
        min=1, help="Override every stage's epochs.", show_default=False)] = None,
    device: Device = "auto",
    seed: Annotated[int | None, typer.Option(help="Override run.seed.",
                                                show_default=False)] = None,
    multi_gpu: Annotated[bool | None, typer.Option(
        "--multi-gpu/--no-multi-gpu", help="Use all visible GPUs [default: run.multi_gpu].",
        show_default=False)] = None,
    compile_: Compile = None,
    precision: Precision = None,
    resume: Resume = False,
    folds: Annotated[int | None, typer.Option(
        "--folds", help="K-fold cross-validation: train K times, fold i into "
        "CHECKPOINT_DIR/fold_i (validated on its own signers when the data names them), then "
        "write the per-stage mean ± std to CHECKPOINT_DIR/folds.json.",
        show_default=False)] = None,
) -> None:
    """Train the stages of stages.toml, saving each stage's best model.

    Under torchrun (torchrun --nproc_per_node=N -m slt_cli train ...) it trains one
    process per device with DistributedDataParallel; only rank 0 writes and prints.
    """
    from slt_cli.config import find_config, load_config, parse_stage_selection, with_overrides
    from slt_cli.engine import Trainer

    settings = with_overrides(load_config(find_config(config)), run_seed=seed,
                              run_multi_gpu=multi_gpu, data_source=data,
                              stage_epochs=epochs_per_stage, run_compile=compile_,
                              run_precision=precision)
    selected = parse_stage_selection(stages, [stage.name for stage in settings.stages])
    reporter = console.RichReporter()
    if resume and folds is None:  # the interrupted run there may be a cross-validation
        from slt_cli.folds import unfinished_folds

        folds = unfinished_folds(checkpoint_dir or Path(settings.run.checkpoint_dir))
    if folds is not None:
        from slt_cli.folds import CrossValidation

        folded = CrossValidation(settings, folds, checkpoint_dir=checkpoint_dir, device=device,
                                 reporter=reporter)
        with reporter.running(), _stop_on_interrupt(folded):
            outcome = folded.resume() if resume else folded.run(selected, force=force)
        console.out.print(console.folds_table(outcome))
        return
    trainer = Trainer(settings, checkpoint_dir=checkpoint_dir, device=device, reporter=reporter)
    with reporter.running(), _stop_on_interrupt(trainer):
        result = trainer.resume("train") if resume else trainer.train(selected, force=force)
    console.out.print(console.stage_table(result.stages, f"run {result.run_id}"))
    if result.stopped:
        console.err.print(f"stopped early: {result.stopped}", highlight=False)


@command("continue")
def continue_run(
    model: Annotated[str | None, typer.Argument(
        help="Checkpoint to start from, e.g. best_model_stage_5.", show_default=False)] = None,
    type_: Annotated[str | None, typer.Option(
        "--type", help="Preset from [continue.TYPE]: fine_tune, regularization, exploration.",
        show_default=False)] = None,
    epochs: Annotated[int | None, typer.Option(
        min=1, help="Override the preset's epochs.", show_default=False)] = None,
    config: ConfigPath = None,
    checkpoint_dir: CheckpointDir = None,
    device: Device = "auto",
    compile_: Compile = None,
    precision: Precision = None,
    resume: Resume = False,
) -> None:
    """Train further from a saved checkpoint with a named preset."""
    from slt_cli.config import find_config, load_config, with_overrides
    from slt_cli.engine import Trainer

    if not resume and (model is None or type_ is None):
        raise SltError("continue needs a checkpoint and --type",
                       hint="For example: slt continue best_model_stage_5 --type exploration.")
    settings = with_overrides(load_config(find_config(config)), run_compile=compile_,
                              run_precision=precision)
    reporter = console.RichReporter()
    trainer = Trainer(settings, checkpoint_dir=checkpoint_dir, device=device, reporter=reporter)
    with reporter.running(), _stop_on_interrupt(trainer):
        if resume:
            stages = trainer.resume("continue").stages
        else:
            stages = (trainer.continue_from(model, type_, epochs=epochs),)  # type: ignore[arg-type]
    console.out.print(console.stage_table(stages, f"continued from {stages[0].parent}"))


@command("list")
def list_checkpoints(checkpoint_dir: CheckpointDir = None, json: Json = False) -> None:
    """List saved checkpoints (reads sidecars only, so it answers at once)."""
    folder = checkpoint_dir or configured_checkpoint_dir()
    records = _readable_checkpoints(folder)
    summary = [{key: r.get(key) for key in (
        "name", "stage_idx", "stage_name", "val_loss", "val_accuracy", "training_time",
        "stage_time", "epoch", "parent", "created_at", "run_id")} for r in records]
    if json:
        console.print_json(summary)
    elif not records and (folder / FOLDS_FILE).is_file():
        from slt_cli.folds import fold_folder

        console.err.print(f"no checkpoints in {folder} itself: it holds a cross-validation "
                          f"run; list a fold with --checkpoint-dir {fold_folder(folder, 1)}")
    elif not records:
        console.err.print(f"no checkpoints in {folder}; run `slt train` to make some")
    else:
        console.out.print(console.checkpoint_table(summary, str(folder)))


@command()
def analyze(
    table: Annotated[bool, typer.Option(
        "--table", help="Show the stage-by-stage table (the default output).")] = True,
    json: Json = False,
    checkpoint_dir: CheckpointDir = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Also draw validation loss and accuracy over every epoch of every "
        "stage into this .png (or .svg, .pdf) file; needs slt[plot].",
        show_default=False)] = None,
) -> None:
    """Compare the best model of each stage with the stage before it."""
    from slt_cli.analysis import analyze as compare

    folder = checkpoint_dir or configured_checkpoint_dir()
    if plot is not None:
        from slt_cli import plots

        plots.check_output(plot)
    records = _readable_checkpoints(folder)
    analysis = compare(records)
    if json:
        console.print_json(analysis.to_dict())
    elif not analysis.stages:
        raise SltError(f"no best_model_stage_N checkpoints in {folder}",
                       hint="Run `slt train` first, or pass --checkpoint-dir.")
    else:
        console.out.print(console.analysis_table(analysis))
        if analysis.loss_reduction_pct is not None:
            console.out.print(f"total: loss reduction {analysis.loss_reduction_pct:+.1f}%, "
                              f"accuracy gain {analysis.accuracy_gain_pct:+.1f} points",
                              highlight=False)
    if plot is not None:
        _plot_curves(folder, records, plot)


@command()
def evaluate(
    model: Annotated[str, typer.Argument(help="Checkpoint to score, e.g. best_model_stage_5.")],
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
) -> None:
    """Score a checkpoint: loss, accuracy, top-5, per-class accuracy, worst confusions."""
    from slt_cli.config import find_config, load_config
    from slt_cli.engine import Trainer

    if split not in ("train", "val", "test"):
        raise SltError(f"--split {split!r}: expected val, test or train")
    if confusion is not None:
        from slt_cli import plots

        plots.check_output(confusion)
    trainer = Trainer(load_config(find_config(None)), checkpoint_dir=checkpoint_dir,
                      device=device)
    result = trainer.evaluate(model, data_spec=data, split=split)
    if confusion is not None:
        plots.save_confusion(result, confusion)
        console.err.print(f"wrote {confusion}", highlight=False)
    if json:
        console.print_json(result.to_dict())
        return
    console.out.print(console.evaluation_table(result))
    if pairs := result.most_confused():
        console.out.print(console.confusion_table(pairs))


command("ensemble")(ensemble)
command()(predict)
command()(export)


@command()
def smoke(
    epochs: Annotated[int, typer.Option(min=1, help="Epochs per stage.")] = 1,
    keep: Annotated[Path | None, typer.Option(
        help="Keep the checkpoints in this folder instead of a temporary one.",
        show_default=False)] = None,
    device: Device = "auto",
) -> None:
    """Check the installation: all stages on a tiny generated set, then every file."""
    from slt_cli.smoke import run_smoke

    with tempfile.TemporaryDirectory(prefix="slt-smoke-") as scratch:
        folder = keep or Path(scratch)
        checks = run_smoke(epochs, folder, device=device)
    for check in checks:
        mark = "[green]ok  [/]" if check.ok else "[red]FAIL[/]"
        console.out.print(f"{mark} {check.name}: {check.detail}", highlight=False)
    failed = sum(not check.ok for check in checks)
    console.out.print(f"{len(checks) - failed} passed, {failed} failed", highlight=False)
    if failed:
        raise typer.Exit(1)


@contextmanager
def _stop_on_interrupt(trainer: Any) -> Iterator[None]:
    """First Ctrl-C: finish the batch, save the resume state, exit 130. Second: at once."""

    def first_interrupt(signum: int, frame: Any) -> None:
        console.err.print("stopping after this batch; Ctrl-C again to quit at once",
                          highlight=False)
        trainer.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, first_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _plot_curves(folder: Path, records: list[dict[str, Any]], path: Path) -> None:
    """``analyze --plot``: the epochs of the best checkpoints' runs from metrics.csv."""
    from slt_cli import plots
    from slt_cli.history import METRICS_FILE, read_history

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


def _readable_checkpoints(folder: Path) -> list[dict[str, Any]]:
    """The folder's checkpoints; each damaged sidecar is named on stderr, then skipped."""
    from slt_cli.checkpoints import list_checkpoints

    records, problems = list_checkpoints(folder)
    for problem in problems:
        console.err.print(f"warning: skipped {problem}", highlight=False)
    return records


def main() -> None:
    """Entry point of the ``slt`` script and ``python -m slt_cli``.

    Under torchrun only rank 0 prints; the others print their errors alone.
    """
    rank = os.environ.get("RANK", "0")
    if rank not in ("", "0"):
        console.quiet_except_errors(f"rank {rank}: ")
    app(prog_name="slt")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
