"""An ensemble of DP-CTGANs on disjoint random subsets of the rows (parallel composition).

**Partition.** Each row is assigned to one of ``k`` members independently and uniformly, with
randomness from the OS CSPRNG (never the user's seed). Adding or removing a row changes exactly
one member's subset and moves no other row (a fixed-size split such as "shuffle and cut in k"
would shift rows between members when one row is added). Each member is a
:func:`~synth_core.generators.dp_ctgan.train_dp_ctgan` run whose critic is the private module of
its own :class:`~synth_core.dp_training.PrivateTrainer`.

**Composition.** The members are accounted with ``accountant.fork(k)`` (each child starts from the
preprocessing spends, so every member's noise is calibrated for the whole release) and
``join_parallel``, which charges the release the pointwise maximum of the members' RDP curves: by
parallel composition, mechanisms on disjoint subsets cost the max, not the sum. All members get the
same sampling rate ``q = 1/ceil((N̂/k) / batch_size)`` from the DP row count ``N̂`` (a member expects
``N̂/k`` rows; the exact subset sizes are never used), the same planned steps and hence the same calibrated noise, so their RDP curves coincide and the
release's ε is exactly a member's ε (with different curves the pointwise max could exceed every
member's own ε).

**Diversity regularization.** Members are trained one after another; member ``m``'s generator
loss gains ``diversity_weight · ‖e_m + ē_{<m}‖²``, where ``e_m`` is the (differentiable) error of
its batch's 1-way marginals against the DP marginals the transformer already released and
``ē_{<m}`` the mean error of the members before it (negative correlation learning, Liu & Yao
1999): a member is pushed to make the errors the others did not, so the mixture's marginal error
shrinks faster than each member's. It reads generated rows and DP outputs only: post-processing,
free. (For the first member it is a plain marginal-matching term.)

**Early stopping.** After every epoch a member's synthetic marginals are scored against the DP
marginals (:func:`~synth_core.generators.dp_ctgan.marginal_distance`, no real row read: free); a
member stops after ``patience`` epochs without improvement (never before ``min_epochs``) and keeps
its best epoch. Because the stopping time depends on the private trajectory, the *planned* steps
are charged even when a member stops early (the release is a post-processing of the full planned
run; charging only the steps taken would be an invalid privacy odometer). Early stopping saves
time and guards against GAN drift, not budget.

**Weighted combination.** When sampling, a row comes from member ``m`` with probability
``∝ exp(−(s_m − min s) / weight_temperature)`` where ``s_m`` is the member's final DP marginal
score (post-processing); rows are shuffled so that no member is favoured by the sampler's
truncation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from synth_core.dp_training import ProgressCallback, poisson_steps_per_epoch
from synth_core.errors import ParameterError
from synth_core.generators.base import Synthesizer, register_generator
from synth_core.generators.dp_ctgan import (
    ConditionSpace,
    CTGANGenerator,
    Diversity,
    EarlyStopping,
    _generate,
    _Layout,
    _marginal_target,
    build_generator,
    generator_config,
    marginal_distance,
    sample_members,
    soft_marginal_error,
    train_dp_ctgan,
    validate_ctgan_params,
)
from synth_core.privacy import PrivacyAccountant, secret_seed

#: synthetic rows used to score a trained member and estimate its marginal error vector
_SCORE_ROWS = 5_000


@register_generator
class DPCTGANEnsembleSynthesizer(Synthesizer):
    """``n_members`` DP-CTGANs on disjoint random subsets; ε of the release = one member's ε.

    Args:
        n_members: number of members ``k`` (each sees about ``1/k`` of the rows).
        diversity_weight: weight of the negative-correlation marginal regularizer (0 disables).
        weight_temperature: temperature of the member weights, in units of the marginal score
            (mean total-variation distance, 0..1); larger is closer to uniform.
        patience: epochs without improvement of a member's DP marginal score before it stops.
        min_epochs: a member never stops before this epoch (default: half of ``epochs``).
        eval_rows: synthetic rows scored per epoch for early stopping.
        **ctgan_params: every parameter of :class:`~synth_core.generators.dp_ctgan.DPCTGANSynthesizer`
            (``epochs``, ``batch_size`` — each member's expected Poisson batch —, learning rates,
            network sizes, ``pac``, ``generator_steps``, ``gp_lambda``, ``max_grad_norm``,
            ``log_frequency``, ``device``), applied to every member.
    """

    name = "dp_ctgan_ensemble"

    def __init__(
        self,
        *,
        n_members: int = 3,
        diversity_weight: float = 0.5,
        weight_temperature: float = 0.02,
        patience: int = 4,
        min_epochs: int | None = None,
        eval_rows: int = 2_000,
        epochs: int = 16,
        batch_size: int = 250,
        generator_lr: float = 1e-3,
        discriminator_lr: float = 1e-3,
        weight_decay: float = 1e-6,
        embedding_dim: int = 64,
        generator_dim: list[int] | tuple[int, ...] = (128, 128),
        discriminator_dim: list[int] | tuple[int, ...] = (128, 128),
        pac: int = 1,
        generator_steps: int = 1,
        gp_lambda: float = 10.0,
        max_grad_norm: float = 1.0,
        log_frequency: bool = True,
        device: str = "auto",
    ) -> None:
        params: dict[str, Any] = {
            "n_members": n_members,
            "diversity_weight": diversity_weight,
            "weight_temperature": weight_temperature,
            "patience": patience,
            "min_epochs": min_epochs,
            "eval_rows": eval_rows,
            "epochs": epochs,
            "batch_size": batch_size,
            "generator_lr": generator_lr,
            "discriminator_lr": discriminator_lr,
            "weight_decay": weight_decay,
            "embedding_dim": embedding_dim,
            "generator_dim": list(generator_dim) if isinstance(generator_dim, tuple) else generator_dim,
            "discriminator_dim": list(discriminator_dim)
            if isinstance(discriminator_dim, tuple)
            else discriminator_dim,
            "pac": pac,
            "generator_steps": generator_steps,
            "gp_lambda": gp_lambda,
            "max_grad_norm": max_grad_norm,
            "log_frequency": log_frequency,
            "device": device,
        }
        validate_ctgan_params(params)
        for name in ("n_members", "patience", "eval_rows"):
            v = params[name]
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise ParameterError(f"{name} must be an integer >= 1, got {v!r}")
        if min_epochs is not None and (
            isinstance(min_epochs, bool) or not isinstance(min_epochs, int | np.integer) or min_epochs < 1
        ):
            raise ParameterError(f"min_epochs must be an integer >= 1 or null, got {min_epochs!r}")
        for name in ("diversity_weight", "weight_temperature"):
            v = params[name]
            ok = (
                isinstance(v, int | float | np.number) and not isinstance(v, bool) and math.isfinite(float(v))
            )
            if not ok or float(v) < 0 or (name == "weight_temperature" and float(v) == 0):
                bound = "> 0" if name == "weight_temperature" else ">= 0"
                raise ParameterError(f"{name} must be a finite number {bound}, got {v!r}")
        super().__init__(**params)
        self.generators_: list[CTGANGenerator] = []
        self.weights_: list[float] = []

    @property
    def _ctgan_params(self) -> dict[str, Any]:
        own = ("n_members", "diversity_weight", "weight_temperature", "patience", "min_epochs", "eval_rows")
        return {k: v for k, v in self.params.items() if k not in own}

    def _fit_matrix(
        self,
        matrix: np.ndarray,
        accountant: PrivacyAccountant,
        *,
        seed: int,
        progress: ProgressCallback | None,
    ) -> dict[str, Any]:
        transformer = self.transformer_
        assert transformer is not None
        k = int(self.params["n_members"])
        # disjoint subsets: each row joins one member, i.i.d. uniform, from OS entropy
        member_of = np.random.default_rng(secret_seed()).integers(0, k, size=matrix.shape[0])
        subsets = [matrix[member_of == m] for m in range(k)]
        # a member's expected rows from the DP row count (never the exact subset sizes): the same
        # for every member, hence the same q, steps and noise
        member_rows = transformer.dp_row_count / k
        if member_rows < 2:
            raise ParameterError(
                f"n_members={k} is too many for this table: a member would expect fewer than 2 rows "
                "(by the DP row count)"
            )
        steps_per_epoch = poisson_steps_per_epoch(member_rows, int(self.params["batch_size"]))
        epochs = int(self.params["epochs"])
        stopping = EarlyStopping(
            patience=int(self.params["patience"]),
            min_epochs=int(self.params["min_epochs"] or max(1, epochs // 2)),
            eval_rows=int(self.params["eval_rows"]),
        )
        conditions = ConditionSpace(transformer)
        layout = _Layout(transformer.spans, torch.device("cpu"))
        target = _marginal_target(conditions, torch.device("cpu"))
        children = accountant.fork(k)
        generators: list[CTGANGenerator] = []
        errors: list[torch.Tensor] = []
        scores: list[float] = []
        members: list[dict[str, Any]] = []
        for m in range(k):
            previous = torch.stack(errors).mean(dim=0) if errors else None
            run = train_dp_ctgan(
                subsets[m], transformer, children[m], self._ctgan_params, seed=seed + m,
                progress=_tagged(progress, m, k), mechanism_name=f"dp-ctgan-critic[{m}]",
                early_stopping=stopping,
                diversity=Diversity(float(self.params["diversity_weight"]), previous),
                row_count=member_rows,
            )  # fmt: skip
            gen = torch.Generator().manual_seed(seed + 1000 + m)
            rows = _generate(run.generator, conditions, layout, _SCORE_ROWS, gen)
            errors.append(soft_marginal_error(torch.from_numpy(rows), conditions, layout, target))
            scores.append(marginal_distance(rows, transformer))
            generators.append(run.generator)
            members.append(
                {**run.facts, "epsilon": children[m].epsilon(), "final_marginal_score": scores[-1]}
            )
        accountant.join_parallel(
            "dp-ctgan-ensemble", children, partition="each row to one member, i.i.d. uniform (OS entropy)"
        )
        self.generators_ = generators
        self.weights_ = member_weights(scores, float(self.params["weight_temperature"]))
        return {
            "members": members,
            "member_weights": self.weights_,
            "steps_per_epoch": steps_per_epoch,
            "member_epsilons": [mem["epsilon"] for mem in members],
        }

    def _sample_matrix(self, n: int, rng: np.random.Generator) -> np.ndarray:
        assert self.transformer_ is not None and self.generators_
        return sample_members(self.generators_, self.weights_, self.transformer_, n, rng)

    def _model_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        assert self.generators_
        state: dict[str, Any] = {}
        for m, generator in enumerate(self.generators_):
            state.update({f"member{m}.{k}": v.detach().cpu() for k, v in generator.state_dict().items()})
        config = {"members": [generator_config(g) for g in self.generators_], "weights": self.weights_}
        return config, state

    def _restore_model(self, config: dict[str, Any], state: dict[str, Any]) -> None:
        generators = []
        for m, member in enumerate(config["members"]):
            prefix = f"member{m}."
            own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            generators.append(build_generator(member, own))
        self.generators_ = generators
        self.weights_ = [float(w) for w in config["weights"]]


def member_weights(scores: list[float], temperature: float) -> list[float]:
    """Mixture weights ``∝ exp(−(s − min s) / temperature)`` from DP marginal scores (lower is better)."""
    s = np.asarray(scores, dtype=np.float64)
    w = np.exp(-(s - s.min()) / temperature)
    return (w / w.sum()).tolist()


def _tagged(progress: ProgressCallback | None, member: int, members: int) -> ProgressCallback | None:
    if progress is None:
        return None

    def report(info: dict[str, Any]) -> None:
        progress({**info, "member": member, "members": members})

    return report
