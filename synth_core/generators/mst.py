"""MST (McKenna, Miklau & Sheldon 2021): the maximum-spanning-tree mechanism, on ``mbi``.

The winner of the 2018 NIST DP synthetic data challenge, generalised to any discrete table
(``mechanisms/mst.py`` of Private-PGM). The ρ left after the DP preprocessing is split in thirds:

1. every 1-way marginal, Gaussian noise (together ρ/3: each with σ·√d);
2. a spanning tree over the columns, grown by ``d − 1`` exponential-mechanism picks (ρ/3) among
   the pairs not yet connected, scored by the L1 error of the pair's marginal under the
   independence model of the noisy 1-way marginals (sensitivity 1);
3. the tree's ``d − 1`` 2-way marginals, Gaussian noise (together ρ/3);

then a graphical model is estimated from all measurements (mirror descent) and sampled. Cells
with low noisy 1-way counts are merged after step 1 (MST's domain compression).

MST is fast (one estimation) and captures every column's strongest pairwise dependence; AIM
adapts to the data and is usually better at the same ε but slower.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synth_core.dp_training import ProgressCallback
from synth_core.errors import ParameterError
from synth_core.generators.base import register_generator
from synth_core.generators.marginal import MarginalData, MarginalSynthesizer, all_pairs
from synth_core.privacy import PrivacyAccountant


@register_generator
class MSTSynthesizer(MarginalSynthesizer):
    """MST.

    Args:
        max_bins: at most this many cells per numeric/integer/datetime column (groups of its DP
            quantile bins; + a NULL cell when nullable).
        iters: mirror-descent iterations of the final estimation.
    """

    name = "mst"

    def __init__(self, *, max_bins: int = 32, iters: int = 1000) -> None:
        super().__init__(max_bins=max_bins, iters=iters)

    def _run_mechanism(
        self,
        mbi: Any,
        data: MarginalData,
        names: list[str],
        rho: float,
        accountant: PrivacyAccountant,
        noise_rng: np.random.Generator,
        progress: ProgressCallback | None,
    ) -> tuple[Any, dict[str, Any]]:
        d = len(names)
        if d < 1:
            raise ParameterError("mst needs at least one modelled column")
        parts = 3 if d > 1 else 1
        rho_part = rho / parts
        # d measurements of σ_1 = sqrt(d / (2ρ_part)) cost d / (2σ_1²) = ρ_part together
        sigma1 = float(np.sqrt(d / (2.0 * rho_part)))
        measured = self._measure(
            mbi, data, [(n,) for n in names], sigma1, accountant, noise_rng, "mst:oneway"
        )
        oneway = dict(zip(names, measured, strict=True))
        data, measurements = self._compress(mbi, data, names, oneway, dict.fromkeys(names, sigma1))
        domain = mbi.Domain(names, data.sizes)
        tree: list[tuple[str, str]] = []
        if d > 1:
            tree = self._select_tree(data, names, measurements, rho_part, accountant, noise_rng)
            # the tree's d − 1 pairs in one release (L2 sensitivity √(d − 1)): ρ_part
            sigma2 = float(np.sqrt((d - 1) / (2.0 * rho_part)))
            measurements.extend(
                self._measure(mbi, data, list(tree), sigma2, accountant, noise_rng, "mst:twoway")
            )
        if progress is not None:
            progress({"phase": "estimate", "cliques": len(measurements)})
        model = self._estimate(mbi, domain, measurements, int(self.params["iters"]))
        return model, {"tree": [list(p) for p in tree], "sigma_oneway": sigma1}

    @staticmethod
    def _select_tree(
        data: MarginalData,
        names: list[str],
        oneway: list[Any],
        rho: float,
        accountant: PrivacyAccountant,
        rng: np.random.Generator,
    ) -> list[tuple[str, str]]:
        """Grow a spanning tree by ``d − 1`` exponential-mechanism picks (ε = sqrt(8ρ/(d−1)) each,
        charged ε²/8 each: ρ together; one row moves a pair's L1 score by at most 1)."""
        total = float(np.mean([max(np.asarray(m.noisy_measurement).sum(), 1.0) for m in oneway]))
        probs = {}
        for name, m in zip(names, oneway, strict=True):
            # the compressed measurement of a merged cell is scaled by 1/sqrt(k): undo for the estimate
            p = np.clip(_unscale(m, np.asarray(m.noisy_measurement, dtype=np.float64)), 0.0, None)
            probs[name] = p / p.sum() if p.sum() > 0 else np.full(p.size, 1.0 / p.size)
        weights: dict[tuple[str, str], float] = {}
        for a, b in all_pairs(names):
            xhat = total * np.outer(probs[a], probs[b]).ravel()
            weights[a, b] = float(np.abs(data.counts((a, b)) - xhat).sum())
        d = len(names)
        epsilon = float(np.sqrt(8.0 * rho / (d - 1)))
        component = {n: n for n in names}

        def find(x: str) -> str:
            while component[x] != x:
                component[x] = component[component[x]]
                x = component[x]
            return x

        tree: list[tuple[str, str]] = []
        for pick in range(d - 1):
            candidates = [e for e in weights if find(e[0]) != find(e[1])]
            scores = np.array([weights[e] for e in candidates])
            index = accountant.release_exponential(
                f"mst:select:{pick + 1}", scores, epsilon=epsilon, sensitivity=1.0, rng=rng
            )
            a, b = candidates[index]
            component[find(a)] = find(b)
            tree.append((a, b))
        return tree


def _unscale(measurement: Any, y: np.ndarray) -> np.ndarray:
    """Noisy counts per compressed cell (a merged cell's measurement is its sum over sqrt(k))."""
    weights = getattr(measurement.query, "weights", None)
    if weights is None:
        return y
    return y / np.asarray(weights, dtype=np.float64)
