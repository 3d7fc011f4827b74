"""The ``slt`` command line: the Typer app and its commands, one file each under
``slt_cli/commands/``. A command parses, calls the engine and renders; nothing else.

Heavy modules (torch, the engine) are imported inside the commands once their arguments
are checked, so ``slt --help``, ``slt list`` and a typo'd option answer at once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from slt_cli import __version__
from slt_cli.commands import guarded
from slt_cli.commands.analyze import analyze
from slt_cli.commands.config import config_app
from slt_cli.commands.continue_run import continue_run
from slt_cli.commands.data import data_app
from slt_cli.commands.distill import distill
from slt_cli.commands.ensemble import ensemble
from slt_cli.commands.evaluate import evaluate
from slt_cli.commands.export import export
from slt_cli.commands.extract import extract
from slt_cli.commands.listing import list_checkpoints
from slt_cli.commands.live import live
from slt_cli.commands.predict import predict
from slt_cli.commands.smoke import smoke
from slt_cli.commands.train import train
from slt_cli.commands.tune import tune
from slt_cli.show import console

# Help in markdown mode: rich markup would read "[default: ...]" and "[run]" as tags.
app = typer.Typer(
    name="slt", no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
    rich_markup_mode="markdown",
    help="Train sign-language recognisers on keypoint sequences through a staged curriculum.",
)

COMMANDS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("train", train), ("continue", continue_run), ("list", list_checkpoints),
    ("analyze", analyze), ("evaluate", evaluate), ("ensemble", ensemble),
    ("distill", distill), ("tune", tune),
    ("predict", predict), ("export", export), ("smoke", smoke),
    ("extract", extract), ("live", live),
)
# What an interrupted command leaves, for the commands that write checkpoints.
KEPT = {name: "checkpoints saved so far are kept" for name in ("train", "continue",
                                                               "ensemble", "distill")}
KEPT["tune"] = "finished trials are kept in the study"
KEPT["extract"] = "the clips extracted so far are kept; the same command carries on"
for _name, _command in COMMANDS:  # each behind the one error boundary
    app.command(_name)(guarded(_command, kept=KEPT.get(_name)))
app.add_typer(data_app, name="data")
app.add_typer(config_app, name="config")


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
