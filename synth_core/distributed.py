"""Multi-process DP-SGD: N workers (one per GPU, or CPU processes) train one DP model together.

Launch any dpsynth training under ``torchrun`` (``torchrun --nproc-per-node 4 -m
synth_core.pod_entrypoint train ...``, or the ``dpsynth-train`` console script with
``--nproc-per-node``) and wrap the work in :func:`distributed_training`. Inside it:

* every worker reads the same staged rows and runs the same DP preprocessing with the same
  privacy seeds (:func:`synth_core.privacy.shared_secret_seeds`, keyed by a 256-bit secret worker 0
  draws from the OS CSPRNG and broadcasts): the preprocessing is released **once**, and every
  worker holds the same transformer and matrix;
* :class:`~synth_core.dp_training.PrivateTrainer` wraps the module in Opacus's
  ``DifferentiallyPrivateDistributedDataParallel`` (DPDDP): the rows are split into ``N``
  data-independent shares (row ``i`` goes to worker ``i mod N``); each worker Poisson-samples its
  share with the **global** rate ``q`` (its own OS entropy), clips per sample, and worker 0 alone
  adds the Gaussian noise before the all-reduce. The union of the workers' batches is a Poisson
  sample of all rows with rate ``q``, and one noise draw of scale ``σ·C`` covers their summed
  clipped gradients: the same sampled Gaussian mechanism as one process with the same ``q``,
  ``σ`` and steps, so the accounting does not change with ``N``;
* every worker takes exactly the same number of steps (an empty local batch still joins the step
  with a zero gradient), so the collectives never go out of step.

Worker 0 writes the results (model bundle, manifest); the others only train.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger("synth_core.distributed")


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    """Where this process stands: ``rank`` of ``world_size`` (``0`` of ``1`` when alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def current_worker() -> WorkerInfo:
    """This process's place in an initialised process group (``WorkerInfo()`` when there is none)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return WorkerInfo()
    return WorkerInfo(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        backend=str(dist.get_backend()),
    )


def env_world_size() -> int:
    """``WORLD_SIZE`` set by ``torchrun`` (1 when not launched by it)."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


@contextlib.contextmanager
def distributed_training(backend: str | None = None) -> Iterator[WorkerInfo]:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...)
    for the block, with shared privacy seeds; a no-op yielding ``WorkerInfo()`` for one process.

    Args:
        backend: ``nccl`` (default with CUDA) or ``gloo`` (default without; also for CPU tests).
    """
    import torch
    import torch.distributed as dist

    from synth_core.privacy import shared_secret_seeds

    if env_world_size() <= 1 or (dist.is_available() and dist.is_initialized()):
        yield current_worker()
        return
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this torch build")
    cuda = torch.cuda.is_available()
    backend = backend or ("nccl" if cuda else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda and backend == "nccl":
        torch.cuda.set_device(local_rank)  # "cuda" now means this worker's GPU
    dist.init_process_group(backend=backend)
    try:
        info = current_worker()
        key = _broadcast_key(torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu"))
        log.info(
            "DP-SGD worker %d of %d (local rank %d, backend %s)",
            info.rank,
            info.world_size,
            info.local_rank,
            backend,
        )
        with shared_secret_seeds(key):
            yield info
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _broadcast_key(device: torch.device) -> bytes:
    """A 256-bit secret drawn by worker 0 from the OS CSPRNG, sent to every worker."""
    import torch
    import torch.distributed as dist

    if dist.get_rank() == 0:
        tensor = torch.tensor(list(secrets.token_bytes(32)), dtype=torch.uint8, device=device)
    else:
        tensor = torch.zeros(32, dtype=torch.uint8, device=device)
    dist.broadcast(tensor, src=0)
    return bytes(tensor.cpu().tolist())


def broadcast_float(value: float) -> float:
    """Worker 0's ``value`` on every worker (identity without a process group)."""
    import torch
    import torch.distributed as dist

    info = current_worker()
    if not info.distributed:
        return value
    device = (
        torch.device("cuda", torch.cuda.current_device()) if info.backend == "nccl" else torch.device("cpu")
    )
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def gather_strings(value: str) -> list[str]:
    """Every worker's ``value``, in rank order (``[value]`` without a process group)."""
    import torch.distributed as dist

    if not current_worker().distributed:
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return [str(v) for v in out]
