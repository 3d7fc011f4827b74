"""``slt smoke``: the whole pipeline on a tiny generated set, then every file checked."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from slt_cli.cfg.config import load_config, quick_test_config
from slt_cli.common.reporting import Reporter
from slt_cli.store.checkpoints import load_weights, read_sidecar, sidecar_path
from slt_cli.store.sidecar import SIDECAR_KEYS

if TYPE_CHECKING:
    from slt_cli.run.engine import Trainer

SMOKE_DATA = "synthetic:classes=6,signers=5,repeats=3,frames=24"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def run_smoke(epochs: int, directory: Path, reporter: Reporter | None = None,
              device: str = "auto") -> list[Check]:
    """Train every default stage for ``epochs`` epochs into ``directory``, then reload
    each checkpoint, verify its hash and sidecar, and re-score it."""
    from slt_cli.errors import SltError
    from slt_cli.run.distributed import world_from_environment
    from slt_cli.run.engine import Trainer

    if world_from_environment().distributed:  # each process would check its own folder
        raise SltError("slt smoke runs in one process, not under torchrun",
                       hint="Run `slt smoke` alone; torchrun is for train and continue.")
    config = quick_test_config(epochs, load_config())
    config = dataclasses.replace(
        config, data=dataclasses.replace(config.data, source=SMOKE_DATA),
        run=dataclasses.replace(config.run, min_batches_per_epoch=1))  # seconds, not minutes
    trainer = Trainer(config, checkpoint_dir=directory, device=device, reporter=reporter)
    result = trainer.train()
    checks = [Check("train", len(result.stages) == len(config.stages),
                    f"{len(result.stages)} of {len(config.stages)} stages trained")]
    for stage in result.stages:
        for name in filter(None, (stage.checkpoint, stage.final_checkpoint)):
            checks.append(_check_checkpoint(trainer, directory, name))
    return checks


def _check_checkpoint(trainer: Trainer, directory: Path, name: str) -> Check:
    from slt_cli.errors import SltError

    try:
        sidecar = read_sidecar(directory, name)  # checked; the file itself must be whole too
        written = json.loads(sidecar_path(directory, name).read_text(encoding="utf-8"))
        missing = sorted(set(SIDECAR_KEYS) - set(written))
        if missing:
            return Check(name, False, f"sidecar lacks {', '.join(missing)}")
        tensors = load_weights(directory, name, sidecar)
        if any(key.startswith("module.") for key in tensors):
            return Check(name, False, "weights carry a 'module.' prefix")
        scored = trainer.evaluate(name, split="val")
    except SltError as exc:
        return Check(name, False, str(exc))
    if not math.isclose(scored.accuracy, sidecar.val_accuracy, abs_tol=1e-6):
        return Check(name, False, f"re-scored accuracy {scored.accuracy:.4f} differs from "
                                  f"the sidecar's {sidecar.val_accuracy:.4f}")
    return Check(name, True, f"{len(tensors)} tensors, hash ok, sidecar complete, "
                             f"val acc {scored.accuracy:.3f} reproduced")
