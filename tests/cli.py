"""How tests run the CLI: in this process, through Typer's ``CliRunner``."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from slt_cli.cli import app


def slt(*args: str) -> Result:
    """``slt ARGS`` as a user types it; ``.stdout`` and ``.stderr`` apart."""
    return CliRunner().invoke(app, list(args))
