"""Command groups of the ``slt`` CLI that live outside ``cli.py``, and the one error
boundary every command runs behind."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import typer

from slt_cli import console
from slt_cli.errors import SltError


def guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``func`` behind the CLI's error boundary: a user's mistake (SltError) prints
    ``error:`` and a hint and exits 2; a bug shows its traceback only with SLT_DEBUG=1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SltError as exc:
            console.print_error(exc.message, exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            console.print_error("interrupted; checkpoints saved so far are kept")
            raise typer.Exit(130) from None
        except Exception as exc:
            if os.environ.get("SLT_DEBUG") == "1":
                raise
            console.print_error(f"unexpected {type(exc).__name__}: {exc}",
                                "This is a bug in slt; rerun with SLT_DEBUG=1 for details.")
            raise typer.Exit(1) from None

    return wrapper
