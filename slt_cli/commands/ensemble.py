"""``slt ensemble``: combine saved checkpoints into one (``slt_cli.use.ensemble`` does it)."""

from __future__ import annotations

from typing import Annotated

import typer

from slt_cli.commands.options import CheckpointDir, Device
from slt_cli.commands.shared import check_device, checkpoint_folder
from slt_cli.show import console


def ensemble(
    members: Annotated[list[str], typer.Argument(
        help="Two or more checkpoints of the folder, e.g. best_model_stage_4 "
             "best_model_stage_5.", show_default=False)],
    name: Annotated[str, typer.Option(
        "--name", help="Name of the new checkpoint (must not exist yet).", show_default=False)],
    method: Annotated[str, typer.Option(
        "--method", help="logits: average the members' predictions (any architectures); "
                         "weights: average their weights (one architecture).")] = "logits",
    checkpoint_dir: CheckpointDir = None,
    device: Device = "auto",
) -> None:
    """Combine checkpoints into one, scored on their validation data and saved beside them."""
    from slt_cli.cfg.config import find_config, load_config
    from slt_cli.use.ensemble import make_ensemble

    check_device(device)
    settings = load_config(find_config(None))
    from slt_cli.show.progress import RichReporter

    reporter = RichReporter()
    with reporter.running():
        result = make_ensemble(settings, members, name, method=method,
                               checkpoint_dir=checkpoint_folder(checkpoint_dir, settings),
                               device=device, reporter=reporter)
    for note in result.notes:
        reporter.note(note)
    console.out.print(console.ensemble_table(result))
