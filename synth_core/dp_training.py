"""DP-SGD training loop shared by the PyTorch generators.

One function, :func:`train_with_dp_sgd`, owns what makes training private:

* Poisson sampling (each row joins each step independently with probability ``q``), which the
  accountant's sampled-Gaussian analysis assumes;
* per-sample gradient clipping and Gaussian noise by Opacus on *every* parameter gradient that a
  private row touches (the whole model goes through ``PrivacyEngine.make_private``);
* the noise multiplier calibrated so that the release's composed ε (preprocessing + this
  training) meets the target, and the spend recorded in the release's accountant.

**No exact row count.** The sampling rate, the steps per epoch and Opacus's mean reduction come
from ``row_count``: the transformer's DP row count (``TableTransformer.dp_row_count``, released and
charged by preprocessing before training) or a public bound, never ``len(data)``. With
``q = 1 / ceil(row_count / batch_size)`` every row joins every step independently with probability
``q``, and each step releases ``(Σ_{i ∈ batch} clip(g_i) + N(0, σ²C²)) / (row_count · q)``. For any
fixed ``q``, ``σ`` and divisor, neighbouring tables (one row added or removed) give exactly the
sampled Gaussian mechanism that :func:`~synth_core.privacy.sgm_rdp` accounts, whatever their sizes:
the analysis never uses ``n``. ``q`` and the divisor are functions of the DP count (and public
configuration), so computing them is post-processing of a release already charged, and dividing by
a constant does not change the mechanism's privacy. Were they computed from the exact ``n``, the
step size and ``expected_batch_size`` would publish ``n`` itself (the bundle and the shareable report
record both). The DP count's noise only shifts the effective learning rate a little
(``E|batch| = n·q`` against the divisor ``row_count·q``).

``grad_sample_mode="ghost"`` (fast gradient clipping) is the default: Opacus returns a wrapped
criterion that must be used, with per-sample losses (``reduction="none"`` inside, "mean" outside).
Models must not use BatchNorm (it mixes samples); LayerNorm is fine.

Inside :func:`synth_core.distributed.distributed_training` (N processes under ``torchrun``, one per
GPU), :class:`PrivateTrainer` trains with Opacus's DPDDP: same sampling rate, noise multiplier and
steps as one process, so the same ε (see :mod:`synth_core.distributed`). On CUDA the private rows
are copied to the GPU once when they fit in a quarter of its free memory, and batches are gathered
there; larger tables stay on the host and each batch is pinned for an asynchronous copy.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from synth_core.errors import ParameterError
from synth_core.privacy import PrivacyAccountant, local_secret_seed, secret_seed, sgm_rdp

log = logging.getLogger("synth_core.training")


@dataclass(frozen=True)
class DPSGDConfig:
    """DP-SGD hyper-parameters.

    Attributes:
        epochs: passes over the data (in expectation: steps = epochs / sample_rate).
        batch_size: expected (Poisson) batch size in rows.
        learning_rate: Adam learning rate.
        max_grad_norm: per-sample gradient L2 clipping bound.
        grad_sample_mode: Opacus mode: ``ghost`` (fast gradient clipping) or ``hooks``.
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when available).
        log_every_seconds: minimum seconds between progress log lines (an epoch's end always logs
            when this has elapsed; the first and last epoch always log).
        max_physical_batch_size: rows per forward/backward pass (``None``: the whole Poisson
            batch at once). A larger logical batch is split into physical batches whose clipped
            per-sample gradients are summed before the one noisy step (Opacus's
            ``BatchMemoryManager``), so the privacy accounting and the update are those of the
            logical batch while memory is bounded by the physical one: how a GPU trains with the
            large batches DP-SGD wants.
    """

    epochs: int = 20
    batch_size: int = 500
    learning_rate: float = 5e-3
    max_grad_norm: float = 1.0
    grad_sample_mode: str = "ghost"
    device: str = "auto"
    log_every_seconds: float = 10.0
    max_physical_batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ParameterError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ParameterError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (self.learning_rate > 0):
            raise ParameterError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not (self.max_grad_norm > 0):
            raise ParameterError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        if self.grad_sample_mode not in ("ghost", "hooks", "functorch", "ew"):
            raise ParameterError(
                f"grad_sample_mode must be ghost, hooks, functorch or ew, got {self.grad_sample_mode!r}"
            )
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ParameterError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        size = self.max_physical_batch_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ParameterError(f"max_physical_batch_size must be an integer >= 1 or null, got {size!r}")


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else CPU. Under a multi-GPU process group, a plain ``cuda``
    (or ``auto``) is this worker's GPU (``LOCAL_RANK``), never everyone's ``cuda:0``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError(f"device {name!r} was requested but CUDA is not available")
    if name == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(name)


def poisson_steps_per_epoch(row_count: float, batch_size: int) -> int:
    """Steps per epoch ``S = max(1, ceil(row_count / batch_size))``; the sampling rate is ``q = 1/S``.

    ``row_count`` is the DP row count (or a public bound), never the exact number of rows.
    """
    return max(1, math.ceil(float(row_count) / batch_size))


class _Rows(torch.utils.data.Dataset[tuple[torch.Tensor]]):
    """The private rows, fetched a whole batch at a time (one tensor index per step)."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    def __len__(self) -> int:
        return int(self.tensor.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor]:
        return (self.tensor[index],)

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        return self.tensor[torch.as_tensor(indices, dtype=torch.long, device=self.tensor.device)]


#: private rows up to this share of the GPU's free memory are copied to it once and batches are
#: gathered there (no host-to-device copy per step); larger tables stay in host memory and each
#: batch is pinned for an asynchronous copy
GPU_RESIDENT_SHARE = 0.25


def _rows_on(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The rows where batches are gathered: on the GPU when they fit comfortably, else the host."""
    if device.type != "cuda":
        return tensor
    free, _ = torch.cuda.mem_get_info(device)
    if tensor.numel() * tensor.element_size() <= GPU_RESIDENT_SHARE * free:
        return tensor.to(device)
    return tensor


def _as_batch(rows: Any) -> tuple[torch.Tensor]:
    """Collate of :meth:`_Rows.__getitems__`'s tensor (the DataLoader passes it through as is)."""
    return (rows,)


class _PoissonBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Poisson sampling at a given rate ``q`` (one process, or one worker's share of the rows).

    Row ``i`` belongs to worker ``i mod N`` (a data-independent split; one process: every row);
    each step, every row of the share joins the batch independently with the **global** rate ``q``,
    drawn from a generator seeded with ``seed`` (OS entropy: :func:`secret_seed`, or a worker's own
    :func:`local_secret_seed`). Exactly ``steps`` batches per epoch, empty ones included (Opacus's
    distributed sampler drops those, which would put the workers' collectives out of step). ``q``
    and ``steps`` are given, not derived from the number of rows (Opacus's own Poisson loader
    would set ``q = 1/ceil(n/B)`` from the exact ``n``).
    """

    def __init__(self, n: int, sample_rate: float, steps: int, rank: int, world_size: int, seed: int) -> None:
        self.indices = torch.arange(rank, n, world_size)
        self.sample_rate = sample_rate
        self.steps = steps
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            mask = torch.rand(len(self.indices), generator=self.generator) < self.sample_rate
            yield self.indices[mask].tolist()


@dataclass(frozen=True)
class TrainingResult:
    """What a DP-SGD training may record: its privacy parameters, the composed ε and timings."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    epsilon: float
    seconds: float
    device: str


ProgressCallback = Callable[[dict[str, Any]], None]


class PrivateTrainer:
    """Opacus around one module trained on private rows, accounted in the release's accountant.

    The building block of every DP-SGD generator. It owns the Poisson-sampled loader, the noise
    calibration against what the accountant already holds, ``make_private`` (so every gradient of
    ``module`` computed from a batch it yields is clipped per sample and noised), progress logs with
    ε spent so far, and the final spend record. Custom loops (GANs, two-phase models) use it as::

        trainer = PrivateTrainer(disc, criterion, rows, accountant, config, epsilon_target=...)
        for epoch, batch in trainer.batches():   # real rows, Poisson sampled; empty batches handled
            out = trainer.module(torch.cat([batch, fake]))     # one forward through the private module
            loss = trainer.criterion(out, labels)              # per-sample losses (reduction handled)
            trainer.step(loss)                                 # backward + clip + noise + optimizer step
        trainer.finish()                                       # records the spend actually incurred

    Args:
        module: the model whose gradients touch private rows (no BatchNorm).
        criterion: per-sample loss module honouring ``reduction`` (``none``/``mean``).
        data: private rows ``(n, d)`` float32.
        row_count: rows the sampling rate ``q = 1/ceil(row_count / batch_size)``, the steps per epoch
            and the mean reduction's divisor ``row_count · q`` are computed from: the transformer's
            DP row count (``transformer_.dp_row_count``) or a public bound, never ``len(data)``.
        accountant: the release's accountant.
        config: hyper-parameters (epochs, expected batch size, lr, clip, mode, device).
        epsilon_target: composed ε the accountant may reach after this trainer (default: the
            budget's target). Two private phases split the budget by giving the first a lower one.
        planned_steps: optimizer steps the noise is calibrated for (default ``epochs × steps per
            epoch``); ``finish()`` records the steps actually taken.
        optimizer_factory: builds the optimizer from parameters (default Adam at ``learning_rate``).
        mechanism_name: name of the spend in the accountant.
    """

    def __init__(
        self,
        module: nn.Module,
        criterion: nn.Module,
        data: NDArray[np.float32],
        accountant: PrivacyAccountant,
        config: DPSGDConfig,
        *,
        row_count: float,
        epsilon_target: float | None = None,
        planned_steps: int | None = None,
        optimizer_factory: Callable[[Any], torch.optim.Optimizer] | None = None,
        mechanism_name: str = "dp-sgd",
    ) -> None:
        from opacus import PrivacyEngine

        from synth_core.distributed import broadcast_float, current_worker

        n = int(data.shape[0])
        if not (math.isfinite(row_count) and row_count >= 1):
            raise ParameterError(f"row_count must be a finite number >= 1, got {row_count!r}")
        self.accountant = accountant
        self.config = config
        self.mechanism_name = mechanism_name
        self.device = resolve_device(config.device)
        self.worker = current_worker()
        # whole batches are gathered with one tensor index (a per-row Dataset capped the loader at
        # ~200k rows/s on one core, slower than the models it feeds)
        tensor = _rows_on(torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)), self.device)
        pin = self.device.type == "cuda" and tensor.device.type == "cpu"
        # q, the steps per epoch and the mean reduction's divisor from the DP (or public) row count,
        # never from n (see the module docstring); the same on every worker
        self.row_count = float(row_count)
        self.steps_per_epoch = poisson_steps_per_epoch(self.row_count, config.batch_size)
        self.sample_rate = 1.0 / self.steps_per_epoch
        self.expected_batch_size = self.row_count * self.sample_rate
        loader: torch.utils.data.DataLoader[Any] = torch.utils.data.DataLoader(
            _Rows(tensor),
            batch_sampler=_PoissonBatchSampler(
                n, self.sample_rate, self.steps_per_epoch, self.worker.rank, self.worker.world_size,
                # a worker samples its own share from its own entropy; one process: the run's secret stream
                local_secret_seed() if self.worker.distributed else secret_seed(),
            ),
            collate_fn=_as_batch,
            pin_memory=pin,
        )  # fmt: skip
        self.planned_steps = planned_steps or config.epochs * self.steps_per_epoch
        # deterministic given the budget and the plan, so equal on every worker; worker 0's value
        # is broadcast all the same, so that the workers cannot disagree on the noise
        self.noise_multiplier = broadcast_float(
            accountant.calibrate_noise_multiplier(
                self.sample_rate, self.planned_steps, epsilon=epsilon_target
            )
        )
        log.info(
            "DP-SGD (%s): ~%.0f rows (DP count), expected batch ~%.0f (q=%.5f), %d steps, noise multiplier %.3f, clip %.2f, device %s%s",
            mechanism_name, self.row_count, self.expected_batch_size, self.sample_rate, self.planned_steps,
            self.noise_multiplier, config.max_grad_norm, self.device,
            f", worker {self.worker.rank} of {self.worker.world_size} (DPDDP)" if self.worker.distributed else "",
        )  # fmt: skip
        module = module.to(self.device)
        params = [p for p in module.parameters() if p.requires_grad]
        optimizer = (
            optimizer_factory(params)
            if optimizer_factory
            else torch.optim.Adam(params, lr=config.learning_rate)
        )
        criterion.reduction = "mean"  # type: ignore[assignment]
        with warnings.catch_warnings():
            # Opacus warns that secure_mode (torchcsprng) is off. The noise and Poisson-sampling
            # generators are seeded from the OS CSPRNG per run (secret_seed), so they cannot be
            # replayed from anything public; the residual floating-point caveat is in the README.
            warnings.filterwarnings("ignore", message="Secure RNG turned off")
            engine = PrivacyEngine(accountant="rdp", secure_mode=False)
        private: nn.Module = module
        if self.worker.distributed:
            from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP

            private = DPDDP(module)  # broadcasts worker 0's initial weights
        made = engine.make_private(
            module=private,
            optimizer=optimizer,
            criterion=criterion,
            data_loader=loader,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=config.max_grad_norm,
            # the loader already Poisson-samples at q (Opacus's own would take q = 1/ceil(n/B))
            poisson_sampling=False,
            grad_sample_mode=config.grad_sample_mode,
            # only worker 0 adds noise (Opacus's distributed optimizers); its seed is its own
            noise_generator=torch.Generator(device=self.device).manual_seed(
                local_secret_seed() if self.worker.distributed else secret_seed()
            ),
        )
        if config.grad_sample_mode == "ghost":
            self.module, self.optimizer, self.criterion, self.loader = made
        else:
            self.module, self.optimizer, self.loader = made
            self.criterion = criterion
        if len(self.loader) != self.steps_per_epoch:
            raise AssertionError(f"Opacus sampler steps/epoch {len(self.loader)} != {self.steps_per_epoch}")
        # Opacus set the mean reduction's divisor to int(n·q) (per worker: / world size): replace it by
        # the DP one. A worker divides by its share, then the workers' sums are averaged (DPDDP).
        self.optimizer.expected_batch_size = self.expected_batch_size / self.worker.world_size
        self.max_physical_batch_size = config.max_physical_batch_size
        if self.max_physical_batch_size is not None:
            from opacus.utils.batch_memory_manager import wrap_data_loader

            # the loader now yields physical batches; the optimizer is told which one ends a
            # logical batch and only then adds noise and steps (the others accumulate)
            self.loader = wrap_data_loader(
                data_loader=self.loader, max_batch_size=self.max_physical_batch_size, optimizer=self.optimizer
            )
        self.raw_module = module
        self.steps = 0
        self.started = time.monotonic()
        self._last_log = -math.inf
        self._finished = False

    @property
    def epsilon_so_far(self) -> float:
        """Composed ε of the release if training stopped now (an upper bound, cheap every epoch):
        the RDP bound of the steps taken, or the PLD bound of the planned steps, which calibration
        computed already and which bounds every prefix of them (ε grows with the steps)."""
        q, sigma, acc = self.sample_rate, self.noise_multiplier, self.accountant
        rdp = acc.epsilon(sgm_rdp(q, sigma, self.steps))
        return min(rdp, acc.epsilon_with_sgd(q, sigma, max(self.steps, self.planned_steps)))

    def batches(self, epochs: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """``(epoch, batch)`` over the Poisson-sampled private rows (batch on the device).

        Stops at ``planned_steps``. An empty Poisson batch still takes a pure-noise step here
        (skipping it would make the number of noisy releases depend on the sample, and would put
        the workers of a multi-process run out of step).
        """
        epochs = epochs or math.ceil(self.planned_steps / self.steps_per_epoch)
        self.module.train()
        with warnings.catch_warnings():
            # ghost clipping's backward hooks fire on module outputs because the inputs (data) need
            # no gradient: expected, and otherwise repeated in every task log
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            for epoch in range(1, epochs + 1):
                for (batch,) in self.loader:
                    if self.steps >= self.planned_steps:
                        return
                    if batch.shape[0] == 0:
                        self._empty_step()
                        continue
                    yield epoch, batch.to(self.device, non_blocking=True)

    def _empty_step(self) -> None:
        """The step of an empty batch: a zero clipped-gradient sum, then noise and the update."""
        self.optimizer.zero_grad(set_to_none=True)
        for p in self.optimizer.params:
            if self.config.grad_sample_mode == "ghost":
                p.grad = torch.zeros_like(p)
            else:
                p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1

    def step(self, loss: Any) -> None:
        """Backward through the private module, then the DP optimizer step (clip, noise, update).

        With ``max_physical_batch_size``, a physical batch that does not end its logical batch
        only adds its clipped gradients to the sum; the step (and ``steps``) happens at the last.
        """
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if not self.optimizer._is_last_step_skipped:
            self.steps += 1

    def log_epoch(self, epoch: int, epochs: int, progress: ProgressCallback | None = None) -> None:
        """Log epoch, ε spent so far and time left (first, last, and every few seconds).

        No training loss: it is a mean over real rows without noise, and task logs and progress
        output leave the sensitive zone.
        """
        now = time.monotonic()
        if epoch not in (1, epochs) and now - self._last_log < self.config.log_every_seconds:
            return
        self._last_log = now
        eps_so_far = self.epsilon_so_far
        elapsed = now - self.started
        eta = elapsed / epoch * (epochs - epoch)
        log.info(
            "%s epoch %d/%d  ε spent so far %.3f of %.3f  elapsed %.0fs  time left ~%.0fs",
            self.mechanism_name, epoch, epochs, eps_so_far, self.accountant.budget.epsilon, elapsed, eta,
        )  # fmt: skip
        if progress is not None:
            progress(
                {"epoch": epoch, "epochs": epochs, "epsilon_spent": eps_so_far,
                 "elapsed_s": elapsed, "eta_s": eta, "mechanism": self.mechanism_name}
            )  # fmt: skip

    def finish(self) -> TrainingResult:
        """Record the spend of the steps actually taken and unhook Opacus from the module."""
        if self._finished:
            raise AssertionError("PrivateTrainer.finish() called twice")
        self._finished = True
        self.accountant.spend_sgd(
            self.mechanism_name, self.sample_rate, self.noise_multiplier, self.steps,
            max_grad_norm=self.config.max_grad_norm, expected_batch_size=self.expected_batch_size,
        )  # fmt: skip
        if hasattr(self.module, "_close"):
            self.module._close()
        self.raw_module.eval()
        return TrainingResult(
            self.noise_multiplier, self.sample_rate, self.steps, self.accountant.epsilon(),
            time.monotonic() - self.started, str(self.device),
        )  # fmt: skip


def reseed_after_initialisation() -> None:
    """Re-seed torch's global generator (CPU and CUDA) from the run's secret seed.

    Call it once the model is initialised from the user's seed and before the first draw made per
    private row (reparameterisation noise, dropout, per-row orders): those draws must not be
    replayable from a seed written in a DAG file (see :func:`~synth_core.privacy.secret_seed`).
    """
    torch.manual_seed(secret_seed())


def train_with_dp_sgd(
    model: nn.Module,
    criterion: nn.Module,
    data: NDArray[np.float32],
    accountant: PrivacyAccountant,
    config: DPSGDConfig,
    *,
    row_count: float,
    mechanism_name: str = "dp-sgd",
    progress: ProgressCallback | None = None,
    epsilon_target: float | None = None,
) -> TrainingResult:
    """Train ``model`` on the rows of ``data`` with DP-SGD; record the spend in ``accountant``.

    The plain loop over :class:`PrivateTrainer`: ``loss = criterion(model(batch), batch)``.

    Args:
        model: maps a batch ``(B, d)`` float32 to whatever ``criterion`` takes as first argument.
        criterion: ``criterion(model_output, batch) -> loss``; must honour a ``reduction``
            attribute (``"none"`` → per-sample losses of shape ``(B,)``, ``"mean"`` → scalar).
        data: private rows, shape ``(n, d)``, float32 (already transformed).
        accountant: the release's accountant; the noise is calibrated against what it already holds.
        config: hyper-parameters.
        row_count: the DP (or public) row count ``q`` and the mean reduction come from (see
            :class:`PrivateTrainer`).
        epsilon_target: composed ε to reach after this training (default: the budget's target).

    The caller initialises ``model`` (from the user's seed, if it likes: initialisation is
    data-independent). Everything drawn during training through torch's global generator (a VAE's
    reparameterisation noise, dropout) is drawn per private row, so the global generator is
    re-seeded here from the run's secret seed (:func:`secret_seed`), never from the user's seed:
    with a public seed, those draws could be replayed and subtracted from what the model learned.
    Poisson sampling and the DP noise use their own secret generators.

    Returns:
        :class:`TrainingResult` with the calibrated noise multiplier and the composed ε (no
        training loss: a loss on real rows without noise is nothing to release).
    """
    trainer = PrivateTrainer(
        model,
        criterion,
        data,
        accountant,
        config,
        row_count=row_count,
        epsilon_target=epsilon_target,
        mechanism_name=mechanism_name,
    )
    reseed_after_initialisation()
    current = 1
    for epoch, batch in trainer.batches(config.epochs):
        if epoch != current:
            trainer.log_epoch(current, config.epochs, progress)
            current = epoch
        trainer.step(trainer.criterion(trainer.module(batch), batch))
    trainer.log_epoch(current, config.epochs, progress)
    result = trainer.finish()
    model.to("cpu")
    return result
