"""Process-group set-up for multi-process training (torchrun), and the few collectives
the trainer needs. A single process is simply a world of size 1."""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class World:
    """Where this process sits among the training processes."""

    rank: int = 0
    """Index of this process, 0 .. size - 1."""
    size: int = 1
    """Number of processes."""
    local_rank: int = 0
    """Index of this process on its machine (selects its GPU)."""

    @property
    def is_main(self) -> bool:
        """True on the process that writes checkpoints, metrics and logs."""
        return self.rank == 0


def init_world(device: torch.device) -> World:
    """Joins the process group described by torchrun's environment, if any.

    torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them this is a world of one and no
    process group is created. The backend is gloo on the CPU and nccl on CUDA.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return world


def close_world(world: World) -> None:
    """Leaves the process group joined by :func:`init_world`."""
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean_(tensors: list[Tensor], world: World) -> None:
    """Averages ``tensors`` in place over all processes, with one collective call.

    The tensors are flattened into one buffer so that the reduction order (and so the result)
    is the same on every process.
    """
    if world.size == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world.size
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def broadcast_object(obj, world: World):
    """Returns rank 0's ``obj`` on every process."""
    if world.size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def process_group_size() -> int:
    """Processes in ``torch.distributed``'s default group: 1 when no group is initialised.

    For code that sees no :class:`World` (a loss inside a model): :func:`init_world` creates
    the group under torchrun, so during training this is ``World.size``.
    """
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """The sum of ``tensor`` over all processes.

    Exact and the same on every process for integer tensors (counts); a float sum's
    rounding depends on the backend's reduction order.

    Args:
        tensor: [*S], the same shape and dtype on every process.

    Returns:
        [*S]: ``tensor`` itself with one process, else a new tensor (``tensor`` is left
        unchanged).
    """
    if process_group_size() == 1:
        return tensor
    total = tensor.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total
