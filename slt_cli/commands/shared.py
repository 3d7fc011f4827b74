"""What several commands do alike: find the checkpoint folder, read its checkpoints,
and stop a training run cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slt_cli.cfg.config import DEVICE_CHOICES
from slt_cli.errors import SltError
from slt_cli.show import console

if TYPE_CHECKING:
    from slt_cli.cfg.config import Config
    from slt_cli.store.sidecar import Sidecar


def checkpoint_folder(option: Path | None, config: Config | None = None) -> Path:
    """The one rule for the checkpoint folder: ``--checkpoint-dir``, else the config's
    ``run.checkpoint_dir``. Without a loaded config (commands that only read checkpoints)
    the config in use is read leniently: a broken stages.toml must not stop them."""
    if option is not None:
        folder = option
    elif config is not None:
        folder = Path(config.run.checkpoint_dir)
    else:
        from slt_cli.cfg.config import configured_checkpoint_dir

        folder = configured_checkpoint_dir(warn=lambda line: console.err.print(
            f"warning: {line}", highlight=False, markup=False))
    if folder.exists() and not folder.is_dir():
        from slt_cli.errors import SltError

        raise SltError(f"checkpoint folder {folder} is a file, not a folder",
                       hint="Name a folder with --checkpoint-dir (slt makes it when absent).")
    return folder


def check_device(choice: str) -> str:
    """Refuse a typo'd ``--device`` at once, before torch is imported."""
    if choice not in DEVICE_CHOICES:
        raise SltError(f"unknown device {choice!r}", hint="Use auto, cpu or cuda.")
    return choice


def readable_checkpoints(folder: Path) -> list[Sidecar]:
    """The folder's checkpoints; each damaged sidecar is named on stderr, then skipped."""
    from slt_cli.store.checkpoints import list_checkpoints

    records, problems = list_checkpoints(folder)
    for problem in problems:
        console.err.print(f"warning: skipped {problem}", highlight=False)
    return records


@contextmanager
def stop_on_interrupt(trainer: Any) -> Iterator[None]:
    """First Ctrl-C or SIGTERM (kill, timeout, Slurm, Kubernetes): finish the batch, save
    the resume state, print the resume command, exit 130 (143 for SIGTERM). A second
    one: at once."""
    from slt_cli.commands import SIGTERM_EXIT, raise_terminated
    from slt_cli.errors import RunInterrupted

    received: list[int] = []

    def first_signal(signum: int, frame: Any) -> None:
        again = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        console.err.print(f"stopping after this batch; {again} again to quit at once",
                          highlight=False)
        received.append(signum)
        trainer.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, raise_terminated)

    previous = {sig: signal.signal(sig, first_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except RunInterrupted as exc:
        if received and received[0] == signal.SIGTERM:
            exc.exit_code = SIGTERM_EXIT
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
