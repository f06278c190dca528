"""What saving and merging need on a sharded model (FSDP2 ``fully_shard``, DTensor parameters).

Under ``torch.distributed.fsdp.fully_shard`` a parameter is a ``DTensor`` holding one shard per
rank while the module is resharded, and a plain full tensor while it is unsharded (e.g. the root
module right after a forward pass). Changes to the unsharded copy are discarded at the next
reshard, so callers first put the model into its sharded state (:func:`reshard`) and then work on
the shards: :func:`full_tensor` all-gathers a parameter (a collective: every rank must call it),
and :func:`add_to_parameter` adds a full, replicated update to the local shard of a parameter.
Without ``torch.distributed`` (or on plain tensors) they reduce to the obvious single-process code.
"""

from __future__ import annotations

import torch
from torch import nn


def _dtensor_type():
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch built without distributed support
        return None
    return DTensor


def is_sharded(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is a ``DTensor`` (a parameter of a sharded model)."""
    dtensor = _dtensor_type()
    return dtensor is not None and isinstance(tensor, dtensor)


def reshard(model: nn.Module) -> None:
    """Put every ``fully_shard`` module of ``model`` into its sharded state (a no-op otherwise)."""
    for module in model.modules():
        if is_fsdp_unit(module):
            module.reshard()


def is_fsdp_unit(module: nn.Module) -> bool:
    """Whether ``fully_shard`` was applied to ``module`` itself."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return False
    return isinstance(module, FSDPModule)


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor: all-gathered from the ranks if it is a ``DTensor``, else ``tensor`` itself."""
    return tensor.full_tensor() if is_sharded(tensor) else tensor


def is_main_process() -> bool:
    """True on rank 0 of an initialised process group, and in a single process."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


@torch.no_grad()
def add_to_parameter(parameter: torch.Tensor, delta: torch.Tensor, require_finite: bool = False) -> None:
    """``parameter += delta`` in the parameter's precision, shard by shard for a ``DTensor``.

    ``delta`` is the full update, identical on every rank; each rank adds the slice that lies in its
    own shard (no communication). The sum is formed in float32 (float64 for float64 parameters).
    With ``require_finite`` the sum is checked first (on every rank's shard) and ``ValueError`` is
    raised, leaving ``parameter`` untouched, if any entry is NaN or infinite.
    """
    compute = torch.promote_types(parameter.dtype, torch.float32)
    sharded = is_sharded(parameter)
    if sharded:
        from torch.distributed.tensor import distribute_tensor

        group = parameter.device_mesh.get_group()
        delta = distribute_tensor(
            delta.to(device=parameter.device, dtype=compute), parameter.device_mesh, parameter.placements,
            src_data_rank=None,
        ).to_local()
        parameter = parameter.to_local()
    total = (parameter.to(compute) + delta.to(device=parameter.device, dtype=compute)).to(parameter.dtype)
    if require_finite:
        finite = torch.isfinite(total).all().to(torch.int32).reshape(1)
        if sharded:
            import torch.distributed as dist

            dist.all_reduce(finite, op=dist.ReduceOp.MIN, group=group)
        if not finite.item():
            raise ValueError("the merged weight W0 + ΔW would contain NaN or inf entries; the weight was left unchanged")
    parameter.copy_(total)
