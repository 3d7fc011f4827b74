"""Where training runs: device choice and DataParallel over all visible GPUs."""

from __future__ import annotations

import torch
from torch import nn

from slt_cli.errors import SltError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(choice: str) -> torch.device:
    """``auto`` = the first GPU when one is visible, else the CPU.

    Raises:
        SltError: when ``cuda`` is asked for on a machine without a GPU.
    """
    if choice not in DEVICE_CHOICES:
        raise SltError(f"unknown device {choice!r}", hint="Use auto, cpu or cuda.")
    if choice == "cuda" and not torch.cuda.is_available():
        raise SltError("--device cuda was asked for, but no GPU is visible",
                       hint="Use --device auto or cpu, or check CUDA_VISIBLE_DEVICES.")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def device_count(device: torch.device, multi_gpu: bool) -> int:
    """How many devices one step uses: every visible GPU when ``multi_gpu``."""
    if device.type != "cuda" or not multi_gpu:
        return 1
    return max(1, torch.cuda.device_count())


def parallelise(model: nn.Module, devices: int) -> nn.Module:
    """Wrap in DataParallel when more than one device takes part.

    The model holds no BatchNorm (per-replica statistics are DataParallel's trap),
    and the engine computes the loss inside the replicas (see ``training.LossHead``),
    so only per-sample numbers are gathered on GPU 0, not the logits' gradients.
    """
    return nn.DataParallel(model) if devices > 1 else model


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside any DataParallel / DistributedDataParallel wrapper."""
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model
