"""``slt config show`` and ``slt config init``: print the effective configuration, or
write the packaged stages.toml, comments and all, as a starting point."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slt_cli.commands import guarded
from slt_cli.commands.options import ConfigPath
from slt_cli.errors import SltError
from slt_cli.show import console

config_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="markdown",
    help="Show the effective stages.toml, or write the packaged one to start from.")


@config_app.command("show")
@guarded
def show(config: ConfigPath = None, defaults: Annotated[bool, typer.Option(
             "--defaults", help="The packaged defaults, whatever ./stages.toml says.")] = False,
         json: Annotated[bool, typer.Option(
             "--json", help="Print it as JSON instead of stages.toml text.")] = False) -> None:
    """Print the configuration a run would use: ./stages.toml or --config laid over the
    packaged defaults, every stage whole."""
    from slt_cli.cfg.config import find_config, load_config
    from slt_cli.cfg.config_text import config_toml, shown_tables

    settings = load_config(None if defaults else find_config(config))
    if json:
        console.print_json(shown_tables(settings))
    else:
        print(config_toml(settings), end="")


@config_app.command("init")
@guarded
def init(path: Annotated[Path, typer.Argument(help="Where to write it.")] = Path("stages.toml"),
         force: Annotated[bool, typer.Option(
             "--force", help="Replace the file when it exists.")] = False) -> None:
    """Write the packaged stages.toml (every key, commented) to edit."""
    from slt_cli.cfg.config import default_config_text
    from slt_cli.common.files import check_writable_output, readable_as_umask_allows
    from slt_cli.store.checkpoints import atomic_write_bytes

    if path.is_dir():
        raise SltError(f"{path} is a folder", hint="Give a file name, e.g. stages.toml.")
    check_writable_output(path, replace=force)
    atomic_write_bytes(path, default_config_text().encode("utf-8"))
    readable_as_umask_allows(path)
    console.err.print(f"wrote {path}; `slt config show --config {path}` prints what it "
                      "resolves to", highlight=False)
