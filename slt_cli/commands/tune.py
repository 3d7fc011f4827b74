"""``slt tune``: search each stage's settings with Optuna; promote the winners."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from slt_cli.commands.options import CheckpointDir, ConfigPath, DataOption, Device, Json
from slt_cli.commands.shared import check_device, checkpoint_folder, stop_on_interrupt
from slt_cli.common.files import check_writable_output
from slt_cli.errors import SltError
from slt_cli.show import console

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smh]?)")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``20m`` or ``1.5h`` as seconds.

    Raises:
        SltError: for anything else.
    """
    match = _DURATION.fullmatch(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise SltError(f"--timeout {text!r}: not a duration", hint="Use 90s, 20m or 1.5h.")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def tune(
    stages: Annotated[str, typer.Option(
        help="Stages to tune, in order: all, 3, 2-4, 1,3,5 or names.")] = "all",
    trials: Annotated[int | None, typer.Option(
        min=1, help="Finished trials per stage [default: [tune] trials].",
        show_default=False)] = None,
    timeout: Annotated[str | None, typer.Option(
        help="Wall-clock budget for the whole search, e.g. 20m (shared evenly by the "
             "stages still to tune).", show_default=False)] = None,
    folds: Annotated[int, typer.Option(
        min=1, help="1: score on the configured validation split; K: mean over K "
                    "signer-grouped folds.")] = 1,
    joint: Annotated[bool, typer.Option(
        "--joint", help="Tune the selected stages together in one study instead of in "
                        "order.")] = False,
    data: DataOption = None,
    config: ConfigPath = None,
    checkpoint_dir: CheckpointDir = None,
    study: Annotated[str, typer.Option(help="Study name (one study per stage: NAME.stageN).")
                     ] = "slt",
    storage: Annotated[str | None, typer.Option(
        help="Optuna storage URL shared by several slt tune processes, e.g. "
             "sqlite:///tune.db or postgresql://host/db [default: "
             "CHECKPOINT_DIR/tune/study.db].", show_default=False)] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Carry on the study (its finished trials count towards "
                         "--trials).")] = False,
    promote: Annotated[Path | None, typer.Option(
        help="Write a complete stages file with the winning settings here.",
        show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Let --promote and --plot replace an "
                                                        "existing file.")
                     ] = False,
    keep_all: Annotated[bool, typer.Option(
        "--keep-all", help="Keep every trial's checkpoints, not only the best trial's.")] = False,
    auto: Annotated[bool, typer.Option(
        "--auto", help="AutoML: choose the model (family and size) by successive halving, "
                       "then tune the recipe for it, within --budget.")] = False,
    budget: Annotated[str | None, typer.Option(
        help="With --auto: the wall-clock budget of the whole search, e.g. 30m.",
        show_default=False)] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Also draw each study's trials and (from 10 complete trials) the "
        "importance of each setting into this .png (or .svg, .pdf) file; needs slt[plot].",
        show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(help="Override run.seed.",
                                                show_default=False)] = None,
    device: Device = "auto",
    json_: Json = False,
) -> None:
    """Search each stage's settings ([tune] in stages.toml) with Optuna, stages in order.

    Each trial trains into CHECKPOINT_DIR/tune/STUDY/stage_N_NAME/trial_NNNN and is
    scored on held-out data; hopeless trials are pruned. The first trial of each stage
    runs the untuned defaults; the best goes on only when it beats them by more than one
    standard error of the validation accuracy, else the defaults are kept (and the
    summary says why).
    """
    from slt_cli.cfg.config import find_config, load_config, parse_stage_selection, with_overrides
    from slt_cli.common.extras import require

    check_device(device)
    if auto and budget is None:
        raise SltError("--auto needs --budget", hint="e.g. slt tune --auto --budget 30m")
    if budget is not None and not auto:
        raise SltError("--budget goes with --auto", hint="Without --auto, use --timeout.")
    seconds = parse_duration(budget if auto else timeout) if (budget or timeout) else None
    if promote is not None:
        check_writable_output(promote, replace=force)
    require("tune", "slt tune")
    if plot is not None:
        from slt_cli.show.plots import check_output

        check_output(plot, replace=force)
    settings = with_overrides(load_config(find_config(config)), run_seed=seed, data_source=data)
    selected = parse_stage_selection(stages, [stage.name for stage in settings.stages])
    folder = checkpoint_folder(checkpoint_dir, settings)
    from slt_cli.tune.auto import AutoTuner
    from slt_cli.tune.console import TuneConsole, model_table, tune_table
    from slt_cli.tune.study import Tuner, TuneRequest, quiet_optuna

    quiet_optuna()

    request = TuneRequest(config=settings, stages=tuple(selected), checkpoint_dir=folder,
                          trials=trials or settings.tune.trials, timeout=seconds, folds=folds,
                          study=study, storage=storage, resume=resume, joint=joint,
                          keep_all=keep_all, device=device)
    runner: Any = AutoTuner(request, TuneConsole()) if auto else Tuner(request, TuneConsole())
    with stop_on_interrupt(runner):
        outcome = runner.run()
    result = outcome.tuning if auto else outcome
    if promote is not None:
        _promote(result.config, promote, force)
    if plot is not None:
        _plot(result, plot)
    if json_:
        console.print_json({**outcome.to_dict(), "promoted": str(promote) if promote else None})
        return
    if auto:
        console.out.print(model_table(outcome))
    console.out.print(tune_table(result))
    if promote is not None:
        console.err.print(f"wrote {promote}: slt train --config {promote} --force",
                          highlight=False)


def _plot(result: Any, path: Path) -> None:
    import optuna

    from slt_cli.show.plots import IMPORTANCE_TRIALS, save_tune_figure

    studies = []
    for study in result.studies:
        complete = [row for row in study.trials if row.state == "complete"]
        importances: dict[str, float] = {}
        if len(complete) >= IMPORTANCE_TRIALS and len(study.best.params) > 1:
            loaded = optuna.load_study(study_name=study.study, storage=result.storage)
            importances = optuna.importance.get_param_importances(loaded)
        studies.append((study.study, study.trials, importances))
    save_tune_figure(studies, path)
    console.err.print(f"wrote {path}", highlight=False)


def _promote(settings: object, path: Path, force: bool) -> None:
    from slt_cli.cfg.config_text import config_toml
    from slt_cli.store.checkpoints import atomic_write_bytes

    check_writable_output(path, replace=force)  # it may have appeared while the search ran
    atomic_write_bytes(path, config_toml(settings).encode("utf-8"))  # type: ignore[arg-type]
