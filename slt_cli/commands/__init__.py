"""Command groups of the ``slt`` CLI that live outside ``cli.py``, and the one error
boundary every command runs behind.

May import every package; none imports this one but ``cli``. A command imports what it
calls inside its body, so ``slt --help`` and ``slt list`` never import torch."""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer

from slt_cli.errors import SltError
from slt_cli.show import console

SIGPIPE_EXIT = 141  # what a shell reports for `git log | head -1`: 128 + SIGPIPE
SIGTERM_EXIT = 143  # 128 + SIGTERM


class Terminated(BaseException):
    """SIGTERM (kill, timeout, Slurm, Kubernetes) outside a training loop: it unwinds
    like Ctrl-C, so a half-written temporary file is removed on the way out. A
    BaseException, so that no ``except Exception`` swallows it."""


def guarded(func: Callable[..., Any], *, kept: str | None = None) -> Callable[..., Any]:
    """Run ``func`` behind the CLI's error boundary: a user's mistake (SltError) prints
    ``error:`` and a hint and exits 2; a bug shows its traceback only with SLT_DEBUG=1.

    Ctrl-C exits 130 and SIGTERM 143, saying ``kept`` (what survives, e.g. "checkpoints
    saved so far are kept") when given; stdout closed by the reader (``| head``) ends
    the command quietly, as git and ls do.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with _sigterm_unwinds():
                result = func(*args, **kwargs)
                sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
            return result
        except BrokenPipeError:
            _silence_stdout()
            raise typer.Exit(SIGPIPE_EXIT) from None
        except SltError as exc:
            console.print_error(exc.message, exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            console.print_error(f"interrupted; {kept}" if kept else "interrupted")
            raise typer.Exit(130) from None
        except Terminated:
            console.print_error(f"terminated (SIGTERM); {kept}" if kept
                                else "terminated (SIGTERM)")
            raise typer.Exit(SIGTERM_EXIT) from None
        except Exception as exc:
            if os.environ.get("SLT_DEBUG") == "1":
                raise
            console.print_error(f"unexpected {type(exc).__name__}: {exc}",
                                "This is a bug in slt; rerun with SLT_DEBUG=1 for details.")
            raise typer.Exit(1) from None

    return wrapper


def raise_terminated(signum: int, frame: Any) -> None:
    """A SIGTERM handler: unwind the command (see ``Terminated``)."""
    raise Terminated


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` while the block runs (signals reach the main
    thread only; elsewhere, e.g. in a test runner's thread, nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush of what is still
    buffered for the closed pipe does not complain on the way out."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (a test runner's capture): nothing will flush it
