"""What several commands do alike: find the checkpoint folder, read its checkpoints,
and stop a training run cleanly on Ctrl-C."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slt_cli import console
from slt_cli.config import DEVICE_CHOICES
from slt_cli.errors import SltError

if TYPE_CHECKING:
    from slt_cli.config import Config
    from slt_cli.sidecar import Sidecar


def checkpoint_folder(option: Path | None, config: Config | None = None) -> Path:
    """The one rule for the checkpoint folder: ``--checkpoint-dir``, else the config's
    ``run.checkpoint_dir``. Without a loaded config (commands that only read checkpoints)
    the config in use is read leniently: a broken stages.toml must not stop them."""
    if option is not None:
        return option
    if config is not None:
        return Path(config.run.checkpoint_dir)
    from slt_cli.config import configured_checkpoint_dir

    return configured_checkpoint_dir()


def check_device(choice: str) -> str:
    """Refuse a typo'd ``--device`` at once, before torch is imported."""
    if choice not in DEVICE_CHOICES:
        raise SltError(f"unknown device {choice!r}", hint="Use auto, cpu or cuda.")
    return choice


def readable_checkpoints(folder: Path) -> list[Sidecar]:
    """The folder's checkpoints; each damaged sidecar is named on stderr, then skipped."""
    from slt_cli.checkpoints import list_checkpoints

    records, problems = list_checkpoints(folder)
    for problem in problems:
        console.err.print(f"warning: skipped {problem}", highlight=False)
    return records


@contextmanager
def stop_on_interrupt(trainer: Any) -> Iterator[None]:
    """First Ctrl-C: finish the batch, save the resume state, exit 130. Second: at once."""

    def first_interrupt(signum: int, frame: Any) -> None:
        console.err.print("stopping after this batch; Ctrl-C again to quit at once",
                          highlight=False)
        trainer.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, first_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
