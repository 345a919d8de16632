"""Where a run executes: device, seeds, and torchrun processes (how it computes is its
`libs.runtime.plan.RunPlan`).

`setup_runtime` is called once per process by the scripts. Under `torchrun` (WORLD_SIZE > 1
in the environment) it joins the process group (NCCL on CUDA, gloo on CPU) and gives each
process its own GPU (`cuda:LOCAL_RANK`). Every run has a seed: the one given with `--seed`
(then PyTorch is also asked for deterministic algorithms) or a random one that is printed
and stored in the resume file, so any run can be repeated.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .errors import UserError


@dataclass
class Runtime:
    """The device, seed and process group of this process."""

    device: torch.device
    seed: int = 0
    deterministic: bool = False
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process logs and writes checkpoints (rank 0)."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def print(self, *args: Any, **kwargs: Any) -> None:
        """`print` on rank 0 only, flushed."""
        if self.is_main:
            print(*args, **kwargs, flush=True)

    def describe(self) -> str:
        where = str(self.device)
        if self.device.type == "cuda":
            where += f" ({torch.cuda.get_device_name(self.device)})"
        text = f"device {where}, seed {self.seed}"
        if self.deterministic:
            text += " (deterministic)"
        if self.distributed:
            text += f", {self.world_size} processes ({dist.get_backend()})"
        return text


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name}={value!r} is not an integer") from None


def resolve_device(name: str, local_rank: int = 0, distributed: bool = False) -> torch.device:
    """`auto` (CUDA when available, else CPU), `cpu`, `cuda` or `cuda:N` as a torch.device."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available here; use --device cpu")
        index = local_rank if (distributed and device.index is None) else (device.index or 0)
        if index >= torch.cuda.device_count():
            raise UserError(
                f"--device {name}: GPU {index} requested but only {torch.cuda.device_count()} visible"
            )
        device = torch.device("cuda", index)
    elif device.type != "cpu":
        raise UserError(f"--device {name}: only cpu and cuda devices are supported")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker init: PyTorch seeds `random` and torch per worker; seed NumPy alike."""
    np.random.seed(torch.initial_seed() % 2**32)


def setup_runtime(device: str = "auto", seed: int | None = None) -> Runtime:
    """Set up this process: process group under torchrun, device, seeds, determinism."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    distributed = world_size > 1
    resolved = resolve_device(device, local_rank, distributed)
    if distributed and not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(backend=backend)
    elif resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    deterministic = seed is not None
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
        if distributed:
            shared = [seed]
            dist.broadcast_object_list(shared, src=0)
            seed = int(shared[0])
    runtime = Runtime(device=resolved, seed=int(seed), deterministic=deterministic,
                      rank=rank, world_size=world_size, local_rank=local_rank)
    seed_everything(runtime.seed + rank)
    if resolved.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    return runtime


def teardown_runtime() -> None:
    """Leave the process group, if any (safe to call more than once)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _numpy_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def rng_state() -> dict[str, Any]:
    """This process's random generator states, in a form `torch.load(weights_only=True)` reads."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def gather_objects(runtime: Runtime, obj: Any) -> list[Any]:
    """`obj` of every process, in rank order (a list of one when not distributed)."""
    if not runtime.distributed:
        return [obj]
    out: list[Any] = [None] * runtime.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(runtime: Runtime, obj: Any) -> Any:
    """Rank 0's `obj` on every process."""
    if not runtime.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(runtime: Runtime, values: list[float]) -> list[float]:
    """Element-wise sums of `values` over all processes."""
    if not runtime.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64,
                          device=runtime.device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()
