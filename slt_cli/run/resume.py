"""The state an interrupted run resumes from, kept without pickle.

``<checkpoint_dir>/resume/state.json`` describes the run (its configuration, which
stage, which epoch and batch, results so far) and names a safetensors file beside
it that holds every tensor (weights, optimiser moments, averaged weights, random
number generator states). The tensors are written first under a new name, then the
JSON that points to them, then older tensor files are removed: whenever the process
is killed, ``state.json`` names a whole file whose hash it records.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slt_cli.common.files import abandoned_temps, load_json, own_folder, read_bounded
from slt_cli.errors import CheckpointError, SltError, UnreadableFile
from slt_cli.store.checkpoints import atomic_write_bytes, fault_point

if TYPE_CHECKING:
    import torch

RESUME_FOLDER = "resume"
STATE_FILE = "state.json"
_TENSORS = re.compile(r"state-[0-9a-f]{16}\.safetensors")  # state-<hash>.safetensors


def save_resume(directory: Path, plan: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Record where the run is, atomically (see the module's docstring)."""
    from safetensors.torch import save as save_tensors

    folder = own_folder(directory, RESUME_FOLDER)
    blob = save_tensors({key: value.detach().cpu().contiguous() for key, value in tensors.items()})
    digest = hashlib.sha256(blob).hexdigest()
    name = f"state-{digest[:16]}.safetensors"
    atomic_write_bytes(folder / name, blob)
    record = {**plan, "tensors": name, "tensors_sha256": digest}
    text = json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_bytes(folder / STATE_FILE, text.encode("utf-8"))
    fault_point()
    for old in _own_files(folder):
        if old.name not in (name, STATE_FILE):
            old.unlink(missing_ok=True)


def has_resume(directory: Path) -> bool:
    return (directory / RESUME_FOLDER / STATE_FILE).is_file()


def load_resume(directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The plan and tensors of the interrupted run in ``directory``.

    Raises:
        SltError: when there is nothing to resume.
        CheckpointError: when the resume state is damaged.
    """
    from safetensors.torch import load as load_tensors

    path = directory / RESUME_FOLDER / STATE_FILE
    if not path.is_file():
        raise SltError(f"nothing to resume in {directory}",
                       hint="Only a run that was interrupted can be resumed; start a new one.")
    try:
        plan = load_json(path)
        blob = read_bounded(path.parent / Path(plan["tensors"]).name, "weights")
    except UnreadableFile as exc:
        raise CheckpointError(f"damaged resume state: {exc}",
                              hint="Start a new run; the saved checkpoints are intact.") from None
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: damaged resume state ({exc})",
                              hint="Start a new run; the saved checkpoints are intact.") from None
    if hashlib.sha256(blob).hexdigest() != plan.get("tensors_sha256"):
        raise CheckpointError(f"{path}: resume tensors do not match their hash",
                              hint="Start a new run; the saved checkpoints are intact.")
    return plan, load_tensors(blob)


def clear_resume(directory: Path) -> None:
    """Forget the resume state once the run it belongs to has finished: slt's own files
    in ``resume/`` are removed, and the folder too when nothing else is left in it."""
    folder = own_folder(directory, RESUME_FOLDER)
    for path in _own_files(folder):
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # absent, or holding others' files: they stay
        folder.rmdir()


def _own_files(folder: Path) -> list[Path]:
    """What slt writes in ``resume/``: state.json, state-<hash>.safetensors, and its
    temporary files whose writer is gone."""
    if not folder.is_dir():
        return []
    named = [path for path in folder.iterdir() if not path.is_dir() and (
        path.name == STATE_FILE or _TENSORS.fullmatch(path.name))]
    return named + abandoned_temps(folder)
