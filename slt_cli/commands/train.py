"""``slt train``: run the stages of stages.toml (or K folds of them)."""

from __future__ import annotations

from typing import Annotated

import typer

from slt_cli.commands.options import (
    CheckpointDir,
    Compile,
    ConfigPath,
    DataOption,
    Device,
    Layout,
    LogTo,
    Precision,
    Resume,
    SignerFrom,
)
from slt_cli.commands.shared import check_device, checkpoint_folder, stop_on_interrupt
from slt_cli.show import console


def train(
    stages: Annotated[str, typer.Option(
        help="Stages to run: all, 3, 2-4, 1,3,5 or names.")] = "all",
    force: Annotated[bool, typer.Option(
        help="Run every selected stage whatever the improvement (threshold -1.0).")] = False,
    config: ConfigPath = None,
    data: DataOption = None,
    layout: Layout = None,
    signer_from: SignerFrom = None,
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
    log_to: LogTo = None,
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
    from slt_cli.cfg.config import find_config, load_config, parse_stage_selection, with_overrides

    check_device(device)
    settings = with_overrides(load_config(find_config(config)), run_seed=seed,
                              run_multi_gpu=multi_gpu, data_source=data, data_layout=layout,
                              data_signer_from=signer_from,
                              stage_epochs=epochs_per_stage, run_compile=compile_,
                              run_precision=precision, run_log_to=log_to)
    if not resume:  # a resumed run logs where it did: the engine checks that one
        from slt_cli.run.trackers import require_trackers

        require_trackers(settings.run.log_to)
    selected = parse_stage_selection(stages, [stage.name for stage in settings.stages])
    folder = checkpoint_folder(checkpoint_dir, settings)
    from slt_cli.show.progress import RichReporter

    reporter = RichReporter()
    if resume and folds is None:  # the interrupted run there may be a cross-validation
        from slt_cli.run.foldsummary import unfinished_folds

        folds = unfinished_folds(folder)
    if folds is not None:
        from slt_cli.run.folds import CrossValidation

        folded = CrossValidation(settings, folds, checkpoint_dir=folder, device=device,
                                 reporter=reporter)
        with reporter.running(), stop_on_interrupt(folded):
            outcome = folded.resume() if resume else folded.run(selected, force=force)
        console.out.print(console.folds_table(outcome))
        return
    from slt_cli.run.engine import Trainer  # torch: only once the arguments are known good

    trainer = Trainer(settings, checkpoint_dir=folder, device=device, reporter=reporter)
    with reporter.running(), stop_on_interrupt(trainer):
        result = trainer.resume("train") if resume else trainer.train(selected, force=force)
    console.out.print(console.stage_table(result.stages, f"run {result.run_id}"))
    if result.stopped:
        console.err.print(f"stopped early: {result.stopped}", highlight=False)
