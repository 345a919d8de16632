"""One all-reduce and one DistributedDataParallel step across the processes torchrun started: NCCL on
CUDA (one process per GPU), gloo on the CPU. Rank 0 writes what it found as JSON to the path given.

    python -m torch.distributed.run --standalone --nproc_per_node=N tests/ddp_probe.py OUT.json cuda

Run by tests/test_cuda.py; on the CPU (gloo) by the same file's probe test, in CI.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def nccl_version() -> str | None:
    """NCCL's version as a.b.c, None without NCCL."""
    if not dist.is_available() or not dist.is_nccl_available():
        return None
    version = torch.cuda.nccl.version()
    if isinstance(version, int):  # older torch: major * 1000 + minor * 100 + patch
        version = (version // 1000, version // 100 % 10, version % 100)
    return ".".join(map(str, version))


def probe(out: Path, device_type: str) -> dict:
    """The all-reduce and a DDP step's gradients against the mean of every process's own, computed
    without DDP; every rank's gradient must be the same."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if device_type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    try:
        total = torch.full((8,), float(rank + 1), device=device)
        dist.all_reduce(total)

        def layer() -> torch.nn.Module:
            torch.manual_seed(0)
            return torch.nn.Conv2d(3, 4, 3).to(device)

        def batch(seed: int) -> torch.Tensor:
            return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed)).to(device)

        module = layer()
        ddp = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
        ddp(batch(rank)).square().mean().backward()
        grad = module.weight.grad.detach().flatten()
        grads = [torch.empty_like(grad) for _ in range(world)]
        dist.all_gather(grads, grad)
        alone = layer()
        for seed in range(world):
            (alone(batch(seed)).square().mean() / world).backward()
        found = {
            "backend": dist.get_backend(), "world_size": world,
            "all_reduce": bool(torch.all(total == world * (world + 1) / 2)),
            "ddp_gradients_averaged": torch.allclose(grad, alone.weight.grad.flatten(), rtol=1e-5, atol=1e-7),
            "same_on_every_rank": all(torch.equal(grads[0], g) for g in grads),
            "nccl": nccl_version() if device.type == "cuda" else None,
        }
        if rank == 0:
            out.write_text(json.dumps(found))
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return found


if __name__ == "__main__":
    probe(Path(sys.argv[1]), sys.argv[2])
