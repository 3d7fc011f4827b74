"""Training in several processes under ``torchrun``: one process per device, DDP.

``torchrun --nproc_per_node=N -m slt_cli train ...`` starts N copies of ``slt``
with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set. Each copy trains on its own
shard of every epoch, DistributedDataParallel averages the gradients, and every
number that decides something (losses, validation scores, a request to stop) is
summed across the processes, so all of them take the same decisions. Only rank 0
takes the folder lock, writes files and reports.

Importing this module does not import torch (the CLI reads ``World`` at start-up).
"""

from __future__ import annotations

import atexit
import os
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from slt_cli.errors import SltError

if TYPE_CHECKING:
    import torch
    from torch import nn

# How long a collective waits for a process that stopped answering before failing;
# torchrun usually ends the others much sooner, as soon as one process exits.
TIMEOUT = timedelta(minutes=5)


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run."""

    rank: int = 0  # 0..size-1 across all machines
    size: int = 1  # number of processes
    local_rank: int = 0  # index on this machine: which GPU this process uses

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and reports (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_environment() -> World:
    """The ``World`` torchrun describes in the environment; one process without it.

    Raises:
        SltError: when the variables are there but not consistent integers.
    """
    if "WORLD_SIZE" not in os.environ:
        return World()
    try:
        world = World(rank=int(os.environ.get("RANK", "0")),
                      size=int(os.environ["WORLD_SIZE"]),
                      local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    except ValueError:
        raise SltError("RANK, WORLD_SIZE and LOCAL_RANK must be integers",
                       hint="Start several processes with torchrun, which sets them.") from None
    if world.size < 1 or not 0 <= world.rank < world.size or world.local_rank < 0:
        raise SltError(f"inconsistent RANK={world.rank}, WORLD_SIZE={world.size}, "
                       f"LOCAL_RANK={world.local_rank}",
                       hint="Start several processes with torchrun, which sets them.")
    return world


def start(world: World, device: torch.device) -> None:
    """Join the process group (once per process): NCCL on GPUs, gloo on the CPU.

    torchrun's rendezvous (``MASTER_ADDR``/``MASTER_PORT`` or ``--rdzv-endpoint``)
    tells each process where the others are, on one machine or many.
    """
    import torch.distributed as dist

    if not world.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        import torch

        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=world.rank, world_size=world.size,
                            timeout=TIMEOUT)
    atexit.register(stop)


def stop() -> None:
    """Leave the process group, if this process is in one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """``tensor`` summed over every process, in place (the same result on all)."""
    if world.distributed:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(world: World) -> None:
    """Wait until every process gets here (rank 0's writes are done)."""
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``module``; rank 0's weights are copied to all
    processes as it is built, so every process starts from the same point."""
    from torch.nn.parallel import DistributedDataParallel

    # The depthwise convolutions' gradients come with other strides than their weights
    # on size-1 dimensions only: the same memory layout, so nothing is lost.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    ids = [device] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def shard(order: torch.Tensor, world: World) -> torch.Tensor:
    """This process's share of an epoch's order: every ``size``-th item from
    ``rank``, after repeating the first few so every process gets as many (the
    processes must take the same number of steps)."""
    if not world.distributed:
        return order
    import torch

    pad = (-len(order)) % world.size
    return torch.cat([order, order[:pad]])[world.rank::world.size]
