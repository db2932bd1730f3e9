"""``auto``: pick a generator for a table by a documented rule, and say which and why.

The rule (from the generator benchmark, ``benchmarks/results/generators.jsonl``, recorded
2026-12-06 on 2 CPU cores: Adult, Bank Marketing, Credit Default, California Housing at
ε ∈ {1, 3, 10}): AIM (alone or as ``auto``'s pick) had the best 3-way k-marginal score in all 12
cells and the best or near-best train-synthetic-test-real AUC on three of the datasets; MST came
4–37 points below it at 7–30 s a fit; the best DP-SGD generator of each cell 17–63 points below):

1. **Marginal methods first**, when the ``[marginal]`` extra (``mbi``) is installed: under DP
   they keep low-order marginals far better than DP-SGD at the same ε (also in the published
   NIST CRC and AIM comparisons).

   * ``aim`` for tables of at most :data:`AIM_MAX_COLUMNS` modelled columns: it adapts its
     measurements to the data and is the most accurate, but each of its rounds re-fits the
     graphical model, so its run time grows with the column count;
   * ``mst`` for wider tables (up to :data:`MARGINAL_MAX_COLUMNS`): one fit, minutes at most.

2. **DP-SGD with a GPU at high ε**: with a GPU and ε ≥ :data:`DPSGD_MIN_EPSILON`, tables too
   wide for marginal methods (more than :data:`MARGINAL_MAX_COLUMNS` columns) or very large
   (a DP row count above :data:`DPSGD_MIN_ROWS`, where DP-SGD's noise is small and a GPU trains fast)
   go to ``dp_tabsyn`` (3-way marginals within 23 points of the DP-SGD family's best, DP-GReaT,
   at 1/7 to 1/2 of its fit time; a 2-step latent sampler).

3. **Without the extra**: ``dp_tabsyn`` with a GPU, else ``dp_maf`` (the best DP-SGD TSTR AUC at
   ε=3 on three of the four datasets, 0.75–0.91, in under a minute on a CPU core).

:func:`choose_generator` applies the rule; the ``auto`` generator calls it at fit time, fits the
chosen generator and records ``{"generator", "reason"}`` under ``training_["auto"]``. Its saved
bundle is the chosen generator's own (loading it gives that generator back).

**Privacy of the choice.** The rule reads public facts (the spec's columns, ε, whether a GPU and
the extra are there) and the table's *DP* row count, never the exact one: ``auto`` first runs the
DP preprocessing (which releases the row count and charges it to the release's accountant), then
chooses, then hands the fitted transformer and the accountant to the chosen generator
(:meth:`~synth_core.generators.base.Synthesizer.fit_preprocessed`), so nothing is released twice.
The choice and its reason (which quotes the DP count) are post-processing of that release; they go
into the bundle and the task's XCom.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any, Self

import numpy as np
import pandas as pd

from synth_core.dp_training import ProgressCallback
from synth_core.errors import ParameterError
from synth_core.generators.base import (
    SAMPLE_BATCH_ROWS,
    Synthesizer,
    create_synthesizer,
    register_generator,
)
from synth_core.privacy import PrivacyAccountant, PrivacyBudget, secret_seed
from synth_core.spec import TableSpec
from synth_core.transformer import fit_transformer_under_dp

#: widest table (modelled columns) AIM is chosen for: its rounds and candidates grow with it
AIM_MAX_COLUMNS = 24
#: widest table the marginal methods are chosen for at all
MARGINAL_MAX_COLUMNS = 100
#: ε from which DP-SGD generators are considered when a GPU is available
DPSGD_MIN_EPSILON = 5.0
#: rows from which a GPU DP-SGD generator is preferred at high ε
DPSGD_MIN_ROWS = 1_000_000


def marginal_extra_installed() -> bool:
    """Whether ``mbi`` and JAX (the ``[marginal]`` extra) can be imported."""
    return importlib.util.find_spec("mbi") is not None and importlib.util.find_spec("jax") is not None


def gpu_is_available() -> bool:
    """Whether PyTorch sees a CUDA device."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return False
    return bool(torch.cuda.is_available())


def choose_generator(
    spec: TableSpec,
    dp_rows: int | None,
    epsilon: float,
    gpu_available: bool,
    *,
    marginal_installed: bool | None = None,
) -> tuple[str, str]:
    """The generator the module's rule picks, and a one-sentence reason.

    Args:
        spec: the table spec (its modelled columns count).
        dp_rows: the table's DP row count (``TableTransformer.dp_row_count``, already charged) or a
            public bound; never the exact count, which this function quotes in its reason
            (``None``: unknown, treated as small).
        epsilon: the release's target ε.
        gpu_available: whether training can use a CUDA GPU.
        marginal_installed: override the detection of the ``[marginal]`` extra (tests).
    """
    d = len(spec.modelled_columns)
    rows = int(dp_rows or 0)
    has_mbi = marginal_extra_installed() if marginal_installed is None else marginal_installed
    size = f"about {rows} rows (DP count)" if rows else "rows unknown"
    shape = f"{d} modelled columns, {size}, ε={epsilon:g}"
    if has_mbi:
        if (
            gpu_available
            and epsilon >= DPSGD_MIN_EPSILON
            and (d > MARGINAL_MAX_COLUMNS or rows > DPSGD_MIN_ROWS)
        ):
            return "dp_tabsyn", (
                f"{shape}: a GPU is available and ε ≥ {DPSGD_MIN_EPSILON:g}, and the table is too wide or large "
                "for marginal methods to be fast; DP-TabSyn trains fast and keeps 3-way marginals near the DP-SGD best"
            )
        if d <= AIM_MAX_COLUMNS:
            return "aim", (
                f"{shape}: at most {AIM_MAX_COLUMNS} columns, so AIM (adaptive marginal measurements on a "
                "graphical model, the most accurate under DP) runs in minutes"
            )
        if d <= MARGINAL_MAX_COLUMNS:
            return "mst", (
                f"{shape}: more than {AIM_MAX_COLUMNS} columns would make AIM slow; MST (a maximum spanning "
                "tree of 2-way marginals, one model fit) keeps the strongest dependencies quickly"
            )
        reason = f"{shape}: more than {MARGINAL_MAX_COLUMNS} columns is too wide for marginal methods"
    else:
        reason = (
            f"{shape}: the marginal generators need the [marginal] extra "
            "(pip install 'airflow-provider-dpsynth[marginal]')"
        )
    if gpu_available:
        return (
            "dp_tabsyn",
            f"{reason}; with a GPU, DP-TabSyn trains fast and keeps 3-way marginals near the DP-SGD best",
        )
    return "dp_maf", f"{reason}; on CPU, DP-MAF gives the best downstream AUC of the DP-SGD family quickly"


@register_generator
class AutoSynthesizer(Synthesizer):
    """Chooses a generator with :func:`choose_generator` at fit time and delegates to it.

    Args:
        gpu: whether a GPU may be used (``None``: detect with PyTorch).
        generator_params: parameters per generator name, passed to the one chosen
            (e.g. ``{"aim": {"max_rounds": 20}, "dp_maf": {"epochs": 10}}``).
    """

    name = "auto"

    def __init__(
        self, *, gpu: bool | None = None, generator_params: dict[str, dict[str, Any]] | None = None
    ) -> None:
        super().__init__(gpu=gpu, generator_params=dict(generator_params or {}))
        if gpu is not None and not isinstance(gpu, bool):
            raise ParameterError(f"gpu must be true, false or null, got {gpu!r}")
        for key, value in (generator_params or {}).items():
            if not isinstance(value, dict):
                raise ParameterError(f"generator_params[{key!r}] must be a mapping of parameters")
        self.delegate_: Synthesizer | None = None

    def fit(
        self,
        data: pd.DataFrame,
        spec: TableSpec,
        budget: PrivacyBudget,
        *,
        seed: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> Self:
        import synth_core.generators  # noqa: F401  (registers every generator)

        gpu = self.params["gpu"]
        gpu = gpu_is_available() if gpu is None else bool(gpu)
        # the DP preprocessing first: it releases (and charges) the row count the rule reads
        accountant = PrivacyAccountant(budget)
        privacy_rng = np.random.default_rng(secret_seed())
        transformer = fit_transformer_under_dp(data, spec, accountant, privacy_rng)
        name, reason = choose_generator(spec, transformer.dp_row_count, budget.epsilon, gpu)
        params = dict(self.params["generator_params"].get(name, {}))
        if name.startswith("dp_") and not gpu and "device" not in params:
            params["device"] = "cpu"
        delegate = create_synthesizer(name, **params)
        delegate.fit_preprocessed(data, transformer, accountant, privacy_rng, seed=seed, progress=progress)
        delegate.training_ = {**delegate.training_, "auto": {"generator": name, "reason": reason}}
        self.delegate_ = delegate
        self.transformer_ = delegate.transformer_
        self.privacy_ = delegate.privacy_
        self.training_ = delegate.training_
        return self

    def _delegate(self) -> Synthesizer:
        if self.delegate_ is None:
            raise ParameterError("generator 'auto' is not fitted: call fit() first")
        return self.delegate_

    @property
    def chosen(self) -> str | None:
        """Name of the generator picked at fit time (``None`` before fitting)."""
        return self.delegate_.name if self.delegate_ is not None else None

    def _fit_matrix(
        self,
        matrix: np.ndarray,
        accountant: PrivacyAccountant,
        *,
        seed: int,
        progress: ProgressCallback | None,
    ) -> dict[str, Any]:  # pragma: no cover - fit() delegates before the base fit would call this
        raise AssertionError("AutoSynthesizer.fit delegates to the chosen generator")

    def _sample_matrix(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self._delegate()._sample_matrix(n, rng)

    def _model_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return self._delegate()._model_state()

    def _restore_model(self, config: dict[str, Any], state: dict[str, Any]) -> None:
        raise ParameterError("an 'auto' bundle is saved as the chosen generator's bundle; load that")

    def sample(self, n: int, *, seed: int | None = None, max_rounds: int = 40) -> pd.DataFrame:
        return self._delegate().sample(n, seed=seed, max_rounds=max_rounds)

    def sample_batches(
        self, n: int, *, seed: int | None = None, batch_rows: int = SAMPLE_BATCH_ROWS, max_rounds: int = 40
    ) -> Iterator[pd.DataFrame]:
        return self._delegate().sample_batches(n, seed=seed, batch_rows=batch_rows, max_rounds=max_rounds)

    def to_bytes(self) -> bytes:
        """The chosen generator's bundle (its name and parameters; ``training["auto"]`` says why)."""
        return self._delegate().to_bytes()

    def diagnostics(self) -> dict[str, bytes]:
        return self._delegate().diagnostics() if self.delegate_ is not None else {}
