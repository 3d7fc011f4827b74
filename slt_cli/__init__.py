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
    "Trainer": "slt_cli.engine",
    "RunResult": "slt_cli.results",
    "StageResult": "slt_cli.results",
    "Evaluation": "slt_cli.results",
    "load_config": "slt_cli.config",
    "quick_test_config": "slt_cli.config",
    "Reporter": "slt_cli.reporting",
    "RecordingReporter": "slt_cli.reporting",
    "CrossValidation": "slt_cli.folds",
    "make_ensemble": "slt_cli.ensemble",
    "load_model": "slt_cli.inference",
    "predict_probabilities": "slt_cli.inference",
    "export_checkpoint": "slt_cli.export",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'slt_cli' has no attribute {name!r}")
