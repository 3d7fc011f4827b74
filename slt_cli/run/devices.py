"""Where training runs: device choice, precision, DataParallel over all visible GPUs."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from slt_cli.cfg.config import DEVICE_CHOICES, RunConfig
from slt_cli.errors import SltError
from slt_cli.run.distributed import World


def resolve_device(choice: str, local_rank: int | None = None) -> torch.device:
    """``auto`` = the first GPU when one is visible, else the CPU.

    Under torchrun (``local_rank`` given) a process on a GPU machine takes GPU
    ``local_rank``, so the processes of one machine share its GPUs one each.

    Raises:
        SltError: when ``cuda`` is asked for on a machine without a GPU, or torchrun
            starts more processes on a machine than it has GPUs.
    """
    if choice not in DEVICE_CHOICES:
        raise SltError(f"unknown device {choice!r}", hint="Use auto, cpu or cuda.")
    if choice == "cuda" and not torch.cuda.is_available():
        raise SltError("--device cuda was asked for, but no GPU is visible",
                       hint="Use --device auto or cpu, or check CUDA_VISIBLE_DEVICES.")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and local_rank is not None:
        if local_rank >= torch.cuda.device_count():
            raise SltError(f"process {local_rank} of this machine has no GPU of its own "
                           f"({torch.cuda.device_count()} visible)",
                           hint="Start at most one process per GPU (--nproc_per_node).")
        return torch.device("cuda", local_rank)
    return torch.device(choice)


def describe(device: torch.device, run: RunConfig, world: World) -> str:
    """How a run trains, for its first line: ``cuda:0, bf16, compiled``."""
    parts = [str(device)]
    if resolve_precision(run.precision, device) == "bf16":
        parts.append("bf16")
    if run.compile:
        parts.append("compiled")
    if world.distributed:
        parts.append(f"{world.size} processes, DistributedDataParallel")
    return ", ".join(parts)


def resolve_precision(choice: str, device: torch.device) -> str:
    """``bf16`` or ``fp32``: what ``auto`` means on ``device`` (bf16 on a GPU that
    supports it, fp32 elsewhere), or the explicit choice once checked.

    Raises:
        SltError: when bf16 is asked for on a GPU without bf16 support.
    """
    if choice == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if choice == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SltError("precision bf16 was asked for, but this GPU does not support it",
                       hint="Use precision = \"fp32\" (or \"auto\") in [run].")
    return choice


def autocast(device: torch.device, precision: str) -> AbstractContextManager[object]:
    """bf16 autocast on ``device`` for ``precision`` ``bf16``; nothing for ``fp32``.

    Weights, gradients and optimiser state stay fp32 (checkpoints too): autocast
    runs matmuls and convolutions in bf16 and keeps reductions in fp32.
    """
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


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
