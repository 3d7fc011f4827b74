"""``slt continue``: train further from a saved checkpoint with a named preset."""

from __future__ import annotations

from typing import Annotated

import typer

from slt_cli.commands.options import (
    CheckpointDir,
    Compile,
    ConfigPath,
    Device,
    LogTo,
    Precision,
    Resume,
)
from slt_cli.commands.shared import check_device, checkpoint_folder, stop_on_interrupt
from slt_cli.errors import SltError
from slt_cli.show import console


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
    log_to: LogTo = None,
    resume: Resume = False,
) -> None:
    """Train further from a saved checkpoint with a named preset."""
    from slt_cli.cfg.config import continue_preset, find_config, load_config, with_overrides
    from slt_cli.store.checkpoints import read_sidecar

    if not resume and (model is None or type_ is None):
        raise SltError("continue needs a checkpoint and --type",
                       hint="For example: slt continue best_model_stage_5 --type exploration.")
    check_device(device)
    settings = with_overrides(load_config(find_config(config)), run_compile=compile_,
                              run_precision=precision, run_log_to=log_to)
    folder = checkpoint_folder(checkpoint_dir, settings)
    if not resume:  # a typo'd preset or checkpoint is told before torch is imported
        from slt_cli.run.trackers import require_trackers

        require_trackers(settings.run.log_to)
        continue_preset(settings, type_)  # type: ignore[arg-type]
        read_sidecar(folder, model)  # type: ignore[arg-type]
    from slt_cli.run.engine import Trainer
    from slt_cli.show.progress import RichReporter

    reporter = RichReporter()
    trainer = Trainer(settings, checkpoint_dir=folder, device=device, reporter=reporter)
    with reporter.running(), stop_on_interrupt(trainer):
        if resume:
            stages = trainer.resume("continue").stages
        else:
            stages = (trainer.continue_from(model, type_, epochs=epochs),)  # type: ignore[arg-type]
    console.out.print(console.stage_table(stages, f"continued from {stages[0].parent}"))
