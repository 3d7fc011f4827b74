"""slt: staged training of sign-language recognisers on keypoint sequences.

The Python API, for scripts and notebooks::

    from slt_cli import Trainer, load_config, quick_test_config

    result = Trainer(quick_test_config(epochs_per_stage=1)).train()

Names are imported on first use, so ``import slt_cli`` (and ``slt list``) stays
fast and does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Trainer": "slt_cli.run.engine",
    "RunResult": "slt_cli.run.results",
    "StageResult": "slt_cli.run.results",
    "Evaluation": "slt_cli.run.results",
    "load_config": "slt_cli.cfg.config",
    "quick_test_config": "slt_cli.cfg.config",
    "Reporter": "slt_cli.common.reporting",
    "RecordingReporter": "slt_cli.common.reporting",
    "CrossValidation": "slt_cli.run.folds",
    "make_ensemble": "slt_cli.use.ensemble",
    "load_model": "slt_cli.use.inference",
    "predict_probabilities": "slt_cli.use.inference",
    "export_checkpoint": "slt_cli.use.export",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'slt_cli' has no attribute {name!r}")
