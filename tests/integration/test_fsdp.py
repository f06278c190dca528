"""FSDP2 (``fully_shard``): save_adapters and merge_and_unload on a sharded model, 2 real gloo processes on CPU."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from tests.adapter_cases import randomize_coefficients
from spectral_peft import SpectralConfig, adapters, inject, load_adapters, merge_and_unload, save_adapters

WORLD = 2


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.up, self.down = nn.Linear(16, 24), nn.Linear(24, 16)  # 24 rows: uneven shards are covered too

    def forward(self, x):
        return x + self.down(torch.nn.functional.gelu(self.up(x)))


class Stack(nn.Module):
    """Two blocks and a head: the shape of a transformer, where fully_shard goes on each block."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


CONFIG = SpectralConfig(basis="dht", selector="mixed", delta=0.5, n=30, alpha=2.0, target_modules=["up", "down"],
                        modules_to_save=["head"])


def _worker(rank: int, folder: str) -> None:
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=WORLD)
    try:
        model = inject(Stack(), CONFIG)
        randomize_coefficients(model)
        reference = copy.deepcopy(model)  # the same model, never sharded
        x = torch.randn(4, 5, 16, generator=torch.Generator().manual_seed(1))
        expected = reference(x)
        merged_weights = {name: a.base_weight() + a.delta_weight() for name, a in adapters(reference).items()}
        for block in model.blocks:
            fully_shard(block)
        fully_shard(model)
        assert isinstance(model.blocks[0].up.coefficients, DTensor)
        torch.testing.assert_close(model(x), expected)

        # save_adapters on every rank: the shards are gathered, rank 0 writes
        save_adapters(model, f"{folder}/adapter")
        dist.barrier()
        restored = load_adapters(Stack(), f"{folder}/adapter")
        torch.testing.assert_close(restored(x), expected, atol=0, rtol=0)

        # merge_and_unload: each rank adds its slice of ΔW to its own shard of W0
        merge_and_unload(model, safe_merge=True)
        assert not adapters(model)
        for name, weight in merged_weights.items():
            merged = model.get_submodule(name).weight
            assert isinstance(merged, DTensor)
            torch.testing.assert_close(merged.full_tensor(), weight, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)

        # an adapter that is itself a fully_shard unit cannot be unloaded: a clear error, nothing changed
        unit = inject(Stack(), CONFIG)
        fully_shard(unit.blocks[0].up)
        fully_shard(unit)
        with pytest.raises(ValueError, match=r"adapter 'blocks.0.up' is itself a fully_shard unit"):
            merge_and_unload(unit)
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_save_and_merge_work_on_a_model_sharded_with_fully_shard(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path),), nprocs=WORLD, join=True)
