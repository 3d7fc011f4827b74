"""``slt smoke``: check the installation on a tiny generated set."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from slt_cli.commands.options import Device
from slt_cli.commands.shared import check_device
from slt_cli.show import console


def smoke(
    epochs: Annotated[int, typer.Option(min=1, help="Epochs per stage.")] = 1,
    keep: Annotated[Path | None, typer.Option(
        help="Keep the checkpoints in this folder instead of a temporary one.",
        show_default=False)] = None,
    device: Device = "auto",
) -> None:
    """Check the installation: all stages on a tiny generated set, then every file."""
    check_device(device)
    from slt_cli.run.smoke import run_smoke

    with tempfile.TemporaryDirectory(prefix="slt-smoke-") as scratch:
        checks = run_smoke(epochs, keep or Path(scratch), device=device)
    for check in checks:
        mark = "[green]ok  [/]" if check.ok else "[red]FAIL[/]"
        console.out.print(f"{mark} {check.name}: {check.detail}", highlight=False)
    failed = sum(not check.ok for check in checks)
    console.out.print(f"{len(checks) - failed} passed, {failed} failed", highlight=False)
    if failed:
        raise typer.Exit(1)
