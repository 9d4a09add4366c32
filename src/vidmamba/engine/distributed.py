"""torchrun integration: process-group setup from the environment and the few collectives the trainer needs.

Launch with ``torchrun --nproc_per_node N ...`` (or ``python -m torch.distributed.run``); multi-node adds
``--nnodes/--node_rank/--master_addr``. With ``WORLD_SIZE`` unset or 1 everything here is a no-op.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    owns_group: bool = False  # True when this context created the process group (and should destroy it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def init_distributed(device: torch.device, timeout_s: float = 3600.0) -> DistContext:
    """Join the process group torchrun describes (``WORLD_SIZE``/``RANK``/``LOCAL_RANK``), if there is one.

    Backend: nccl for cuda devices, gloo otherwise. An existing default group is reused as is.
    """
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), _env_int("LOCAL_RANK", 0), dist.get_world_size(), owns_group=False)
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistContext()
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={world_size} but this torch build has no torch.distributed")
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend, rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=timeout_s)
    )
    return DistContext(rank, local_rank, world_size, owns_group=True)


def resolve_device(spec: str) -> torch.device:
    """``"auto"``: ``cuda:LOCAL_RANK`` when CUDA is available, else cpu."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", _env_int("LOCAL_RANK", 0) % torch.cuda.device_count())
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested but CUDA is not available")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", _env_int("LOCAL_RANK", 0) % torch.cuda.device_count())
    return device


def all_reduce_sums(values: dict[str, float], ctx: DistContext, device: torch.device) -> dict[str, float]:
    """Sum each value over the ranks (float64); every rank gets the same result. Keys must match across ranks."""
    if not ctx.enabled or not values:
        return dict(values)
    keys = sorted(values)
    packed = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    return dict(zip(keys, packed.tolist()))


def broadcast_object(obj, ctx: DistContext, src: int = 0):
    """Rank ``src``'s object on every rank."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj, ctx: DistContext) -> list:
    if not ctx.enabled:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def cleanup(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
