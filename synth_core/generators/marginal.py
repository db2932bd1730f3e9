"""Shared machinery of the marginal-based generators (AIM, MST), built on ``mbi`` (Private-PGM).

Pipeline, after :class:`~synth_core.generators.base.Synthesizer` has fit the DP transformer:

1. **Discretize** the transformer's matrix into one small integer domain per column, using only
   DP outputs: a numeric/integer/datetime column's DP quantile bins (atoms such as
   ``capital_gain == 0`` stay their own cell) are merged into at most ``max_bins`` consecutive
   groups of about equal DP mass, plus a NULL cell when nullable; a categorical/boolean column
   keeps its softmax slots (domain, "other", NULL). This is a per-row transform fixed by DP
   outputs, so every marginal still has L2 sensitivity 1.
2. **Measure and select** (AIM or MST, in the subclass) under ρ-zCDP: Gaussian noise on
   marginals, exponential-mechanism selection (ε-DP, recorded as ε²/8-zCDP, its bounded-range
   bound). The ρ left after preprocessing is found from the release accountant, so the
   mechanism's spend composes with preprocessing into one ε ≤ the target.
3. **Estimate** a graphical model from the noisy marginals (``mbi``'s mirror descent) and turn it
   into a chain of conditional probability tables along the junction tree's elimination order.
4. **Sample** ancestrally from those tables, each row independently (numpy only: loading a bundle
   and sampling do not need ``mbi``), map every group back to a uniform position inside its DP
   quantile mass, and let the transformer decode values.

Low-count cells are merged after the 1-way measurements (MST's domain compression): cells whose
noisy count is below 3σ share one cell, sampled back in proportion to their clipped noisy counts.

Randomness: measurement noise and the exponential mechanism draw from the OS CSPRNG
(:func:`~synth_core.privacy.secret_seed`); ``seed`` only fixes the sampling.
"""

from __future__ import annotations

import itertools
import math
import time
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.special import logsumexp, ndtr, ndtri

from synth_core.count_source import CategoryCells, Coding, CountSource, FrameCounts, QuantileCells
from synth_core.dp_training import ProgressCallback
from synth_core.errors import MissingExtraError, ParameterError, SourceTableError
from synth_core.generators.base import Synthesizer
from synth_core.privacy import RDP_ORDERS, PrivacyAccountant, PrivacyBudget, secret_seed
from synth_core.spec import TableSpec
from synth_core.transformer import (
    ColumnTransform,
    DecodedRows,
    TableTransformer,
    check_frame_against_spec,
    fit_transformer_from_counts,
)

INSTALL_HINT = "pip install 'airflow-provider-dpsynth[marginal]'"
#: cells whose noisy 1-way count is below this many noise standard deviations are merged
COMPRESS_SIGMAS = 3.0
_U_MARGIN = 1e-3


def import_mbi() -> Any:
    """Import ``mbi`` (and JAX, in float64 mode); raise :class:`MissingExtraError` with the install hint."""
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        # mbi compiles many small programs: a persistent cache only costs disk and time
        jax.config.update("jax_enable_compilation_cache", False)
        import mbi
    except ImportError as exc:
        raise MissingExtraError(
            "the marginal-based generators (aim, mst) need the optional 'mbi' package (Private-PGM, "
            f"with JAX): {INSTALL_HINT}"
        ) from exc
    return mbi


# ------------------------------------------------------------------------------------------------
# discretization of the transformer's layout (DP outputs only)


@dataclass
class DiscreteColumn:
    """How one modelled column maps to an attribute of the discrete domain.

    ``kind`` is ``continuous`` (groups of DP quantile bins; ``group_start[g]`` is the first bin of
    group ``g``, ``cdf_lo``/``cdf_hi`` its DP CDF range; the NULL cell comes last when nullable) or
    ``softmax`` (the transformer's one-hot slots, as they are). ``size`` counts the cells.
    """

    name: str
    kind: str
    size: int
    value_start: int
    missing_start: int = -1
    group_start: list[int] | None = None
    cdf_lo: list[float] | None = None
    cdf_hi: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "size": self.size,
            "value_start": self.value_start,
            "missing_start": self.missing_start,
            "group_start": self.group_start,
            "cdf_lo": self.cdf_lo,
            "cdf_hi": self.cdf_hi,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DiscreteColumn:
        return cls(**raw)

    @property
    def n_groups(self) -> int:
        return len(self.group_start or [])


def group_bins(mass: NDArray[np.float64], max_bins: int) -> list[int]:
    """Start indices of at most ``max_bins`` runs of consecutive bins of about equal ``mass``.

    A bin's group is ``floor(k · (CDF at the bin's middle))``: a heavy atom keeps one group of
    its own, light neighbours merge. Zero-mass bins join their neighbours' group.
    """
    cdf_hi = np.cumsum(mass)
    total = cdf_hi[-1] if cdf_hi.size and cdf_hi[-1] > 0 else 1.0
    mid = (cdf_hi - mass / 2.0) / total
    key = np.minimum(np.floor(mid * max_bins), max_bins - 1).astype(np.int64)
    starts = [0] + [i for i in range(1, key.size) if key[i] != key[i - 1]]
    return starts


def discretize_layout(transformer: TableTransformer, max_bins: int) -> list[DiscreteColumn]:
    """The discrete domain of the transformer's columns (see :class:`DiscreteColumn`)."""
    out: list[DiscreteColumn] = []
    for col in transformer.columns:
        if col.is_continuous:
            assert col.bins is not None
            value_span = col.spans[-1]
            missing_start = col.spans[0].start if col.nullable else -1
            starts = group_bins(col.bins.mass, max_bins)
            cdf_hi_bins = np.cumsum(col.bins.mass)
            ends = [*starts[1:], col.bins.mass.size]
            lo = [float(cdf_hi_bins[s] - col.bins.mass[s]) for s in starts]
            hi = [float(cdf_hi_bins[e - 1]) for e in ends]
            out.append(
                DiscreteColumn(
                    col.name,
                    "continuous",
                    len(starts) + int(col.nullable),
                    value_span.start,
                    missing_start,
                    starts,
                    lo,
                    hi,
                )
            )
        else:
            (span,) = col.spans
            out.append(DiscreteColumn(col.name, "softmax", span.width, span.start))
    return out


def encode_matrix(
    matrix: NDArray[np.float32], columns: list[DiscreteColumn], transformer: TableTransformer
) -> NDArray[np.int64]:
    """Cell codes ``(rows, columns)`` of the transformer's matrix."""
    n = matrix.shape[0]
    codes = np.empty((n, len(columns)), dtype=np.int64)
    by_name: dict[str, ColumnTransform] = {c.name: c for c in transformer.columns}
    for j, dc in enumerate(columns):
        if dc.kind == "softmax":
            codes[:, j] = np.argmax(matrix[:, dc.value_start : dc.value_start + dc.size], axis=1)
            continue
        bins = by_name[dc.name].bins
        assert bins is not None and dc.group_start is not None
        u = ndtr(matrix[:, dc.value_start].astype(np.float64))
        bin_idx = np.clip(np.searchsorted(np.cumsum(bins.mass), u, side="left"), 0, bins.mass.size - 1)
        group = np.searchsorted(np.asarray(dc.group_start), bin_idx, side="right") - 1
        if dc.missing_start >= 0:
            missing = matrix[:, dc.missing_start + 1] > matrix[:, dc.missing_start]
            group = np.where(missing, dc.n_groups, group)
        codes[:, j] = group
    return codes


def discrete_codings(transformer: TableTransformer, columns: list[DiscreteColumn]) -> list[Coding]:
    """The rule giving each row its cell of each discrete column, straight from the source values
    (:mod:`synth_core.count_source`): a continuous column's group of DP quantile bins (NULL after
    the groups), a categorical column's softmax slot (domain, "other", NULL). Fixed by DP outputs
    only, so a marginal of these codes has L2 sensitivity 1."""
    by_name: dict[str, ColumnTransform] = {c.name: c for c in transformer.columns}
    out: list[Coding] = []
    for dc in columns:
        col = by_name[dc.name]
        if dc.kind == "continuous":
            assert col.bins is not None and dc.group_start is not None
            out.append(
                QuantileCells(
                    dc.name, col.kind, col.bins.left, col.bins.right, col.integer, col.datetime_unit,
                    group_start=tuple(dc.group_start), null_code=dc.n_groups if col.nullable else None,
                )
            )  # fmt: skip
            continue
        assert col.categories is not None
        k = len(col.categories)
        out.append(
            CategoryCells(
                dc.name, tuple(col.categories), other_code=k if col.has_other else None,
                null_code=k + int(col.has_other) if col.nullable else None,
            )
        )  # fmt: skip
    return out


def decode_codes(
    codes: NDArray[np.int64], columns: list[DiscreteColumn], width: int, rng: np.random.Generator
) -> NDArray[np.float32]:
    """The transformer's matrix for cell codes: one-hot slots; a continuous group becomes a
    uniform position inside its DP CDF range (mapped to the normal scale the transformer decodes)."""
    n = codes.shape[0]
    out = np.zeros((n, width), dtype=np.float32)
    rows = np.arange(n)
    slots, positions, missing = cells_of_codes(codes, columns, rng)
    for dc in columns:
        if dc.kind == "softmax":
            out[rows, dc.value_start + slots[dc.name]] = 1.0
            continue
        null = missing[dc.name]
        out[:, dc.value_start] = np.where(null, 0.0, ndtri(positions[dc.name])).astype(np.float32)
        if dc.missing_start >= 0:
            out[:, dc.missing_start] = (~null).astype(np.float32)
            out[:, dc.missing_start + 1] = null.astype(np.float32)
    return out


def cells_of_codes(
    codes: NDArray[np.int64], columns: list[DiscreteColumn], rng: np.random.Generator
) -> tuple[dict[str, NDArray[np.int64]], dict[str, NDArray[np.float64]], dict[str, NDArray[np.bool_]]]:
    """Cell codes ``(rows, columns)`` → the transformer's cells (``TableTransformer.decode_cells``):
    softmax slots; for a continuous column a uniform position inside its group's DP CDF range and
    its NULL mask (the NULL cell comes after the groups)."""
    n = codes.shape[0]
    slots: dict[str, NDArray[np.int64]] = {}
    positions: dict[str, NDArray[np.float64]] = {}
    missing: dict[str, NDArray[np.bool_]] = {}
    for j, dc in enumerate(columns):
        c = codes[:, j]
        if dc.kind == "softmax":
            slots[dc.name] = c
            continue
        assert dc.cdf_lo is not None and dc.cdf_hi is not None
        null = c >= dc.n_groups
        g = np.minimum(c, dc.n_groups - 1)
        lo, hi = np.asarray(dc.cdf_lo)[g], np.asarray(dc.cdf_hi)[g]
        u = lo + (_U_MARGIN + (1 - 2 * _U_MARGIN) * rng.random(n)) * (hi - lo)
        positions[dc.name] = np.clip(u, 1e-7, 1 - 1e-7)
        missing[dc.name] = null
    return slots, positions, missing


# ------------------------------------------------------------------------------------------------
# budget


def remaining_rho(accountant: PrivacyAccountant, *, safety: float = 1e-9) -> float:
    """Largest ρ such that one more ρ-zCDP spend keeps the composed ε ≤ the target.

    Raises:
        ParameterError: preprocessing already spent the whole target.
    """
    target = accountant.budget.epsilon
    if accountant.epsilon() >= target:
        raise ParameterError(
            f"preprocessing already spent ε={accountant.epsilon():.4f} of the target epsilon={target}: "
            "declare more bounds/domains public or lower preprocessing_fraction"
        )
    lo, hi = 0.0, 1.0
    while accountant.epsilon(hi * RDP_ORDERS) <= target:
        lo, hi = hi, hi * 2.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if accountant.epsilon(mid * RDP_ORDERS) <= target:
            lo = mid
        else:
            hi = mid
    return lo * (1.0 - safety)


# ------------------------------------------------------------------------------------------------
# the model's measurements, domain compression and the sampling chain


class Marginals:
    """True marginal counts of the (compressed) cell codes, computed once per clique."""

    def __init__(self, codes: NDArray[np.int64], names: list[str], sizes: list[int]) -> None:
        self.codes = codes
        self.index = {n: i for i, n in enumerate(names)}
        self.sizes = sizes
        self._cache: dict[tuple[str, ...], NDArray[np.float64]] = {}

    def size(self, clique: tuple[str, ...]) -> int:
        return math.prod(self.sizes[self.index[a]] for a in clique)

    def counts(self, clique: tuple[str, ...]) -> NDArray[np.float64]:
        """Flat counts of ``clique`` in C order of its attributes (mbi's datavector layout)."""
        got = self._cache.get(clique)
        if got is None:
            idx = [self.index[a] for a in clique]
            dims = tuple(self.sizes[i] for i in idx)
            flat = np.ravel_multi_index(tuple(self.codes[:, i] for i in idx), dims)
            got = np.bincount(flat, minlength=math.prod(dims)).astype(np.float64)
            self._cache[clique] = got
        return got

    def compressed(self, maps: dict[str, NDArray[np.int64]]) -> Marginals:
        """The same rows over the compressed domain (``maps``: original cell → compressed cell)."""
        names = list(self.index)
        codes = np.stack([maps[n][self.codes[:, i]] for i, n in enumerate(names)], axis=1)
        return Marginals(codes, names, [int(maps[n].max()) + 1 for n in names])


class SourceMarginals:
    """:class:`Marginals` asked of a :class:`~synth_core.count_source.CountSource` (a frame, or
    ``GROUP BY`` queries inside the warehouse): each clique's counts are fetched once, over the
    original cells, and summed into the compressed cells by ``maps`` when compressed."""

    def __init__(
        self,
        source: CountSource,
        codings: list[Coding],
        names: list[str],
        maps: dict[str, NDArray[np.int64]] | None = None,
    ) -> None:
        self.source = source
        self.codings = dict(zip(names, codings, strict=True))
        self.index = {n: i for i, n in enumerate(names)}
        self.maps = maps
        self.sizes = [int(maps[n].max()) + 1 if maps else c.size for n, c in zip(names, codings, strict=True)]
        self._cache: dict[tuple[str, ...], NDArray[np.float64]] = {}

    def size(self, clique: tuple[str, ...]) -> int:
        return math.prod(self.sizes[self.index[a]] for a in clique)

    def counts(self, clique: tuple[str, ...]) -> NDArray[np.float64]:
        """Flat counts of ``clique`` in C order of its attributes (mbi's datavector layout)."""
        got = self._cache.get(clique)
        if got is None:
            raw = self.source.joint_counts([self.codings[a] for a in clique]).astype(np.float64)
            if self.maps is not None:
                grids = np.meshgrid(*[self.maps[a] for a in clique], indexing="ij")
                target = np.ravel_multi_index(
                    tuple(g.ravel() for g in grids), tuple(self.sizes[self.index[a]] for a in clique)
                )
                raw = np.bincount(target, weights=raw, minlength=self.size(clique)).astype(np.float64)
            got = raw
            self._cache[clique] = got
        return got

    def compressed(self, maps: dict[str, NDArray[np.int64]]) -> SourceMarginals:
        names = list(self.index)
        return SourceMarginals(self.source, [self.codings[n] for n in names], names, maps)


def compression_maps(
    oneway: dict[str, NDArray[np.float64]], sigma: dict[str, float]
) -> tuple[dict[str, NDArray[np.int64]], dict[str, list[float]]]:
    """Per attribute: original cell → compressed cell, and the weights of the merged cells.

    Cells whose noisy count is ≥ ``COMPRESS_SIGMAS·σ`` keep a cell each (in order); the rest share
    one last cell (only when at least two are merged). Post-processing of the 1-way measurements.
    """
    maps: dict[str, NDArray[np.int64]] = {}
    merged_weights: dict[str, list[float]] = {}
    for name, y in oneway.items():
        keep = y >= COMPRESS_SIGMAS * sigma[name]
        if not keep.any():
            keep[int(np.argmax(y))] = True
        if int((~keep).sum()) < 2:
            maps[name] = np.arange(y.size, dtype=np.int64)
            merged_weights[name] = []
            continue
        mapping = np.full(y.size, int(keep.sum()), dtype=np.int64)
        mapping[keep] = np.arange(int(keep.sum()))
        maps[name] = mapping
        w = np.clip(y[~keep], 0.0, None)
        merged_weights[name] = (w / w.sum() if w.sum() > 0 else np.full(w.size, 1.0 / w.size)).tolist()
    return maps, merged_weights


@dataclass
class SamplingChain:
    """Ancestral sampler of a fitted graphical model: columns in ``order``, each drawn from
    ``cpts[i]`` of shape ``(*parent sizes, size)`` given its already-drawn ``parents[i]``."""

    order: list[int]
    parents: list[list[int]]
    cpts: list[NDArray[np.float32]]
    oneway: list[NDArray[np.float32]]

    def sample(self, n: int, n_columns: int, rng: np.random.Generator) -> NDArray[np.int64]:
        out = np.zeros((n, n_columns), dtype=np.int64)
        for col, parents, cpt, marginal in zip(self.order, self.parents, self.cpts, self.oneway, strict=True):
            k = cpt.shape[-1]
            if not parents:
                table = cpt.reshape(1, k).astype(np.float64)
                row = np.zeros(n, dtype=np.int64)
            else:
                table = cpt.reshape(-1, k).astype(np.float64)
                row = np.ravel_multi_index(tuple(out[:, p] for p in parents), cpt.shape[:-1])
            sums = table.sum(axis=1, keepdims=True)
            fallback = marginal.astype(np.float64) / max(float(marginal.sum()), 1e-300)
            table = np.where(sums > 0, table / np.where(sums > 0, sums, 1.0), fallback)
            out[:, col] = _inverse_cdf_draws(np.cumsum(table, axis=1), row, rng.random(n))
        return out


def _inverse_cdf_draws(
    cdf: NDArray[np.float64], row: NDArray[np.int64], uniforms: NDArray[np.float64]
) -> NDArray[np.int64]:
    """Per draw ``i``, the number of entries of ``cdf[row[i]]`` at or below
    ``uniforms[i] · cdf[row[i], -1]`` (at most ``k - 1``): an inverse-CDF draw from row ``row[i]``
    of the ``(rows, k)`` cumulative table, by one binary search over all rows at once.

    Row ``r`` is normalised to end at 1 and shifted by ``r``, so the flattened table increases
    across rows and ``r + u`` falls inside row ``r``; a row of total 0 draws ``k - 1``.
    """
    rows, k = cdf.shape
    total = cdf[:, -1:]
    normalised = np.where(total > 0, cdf / np.where(total > 0, total, 1.0), 0.0)
    normalised[:, -1] = 1.0
    flat = (normalised + np.arange(rows, dtype=np.float64)[:, None]).ravel()
    picks = np.searchsorted(flat, row + uniforms, side="right") - row * k
    return np.minimum(picks, k - 1)


def sampling_chain(mbi: Any, model: Any, names: list[str]) -> SamplingChain:
    """Conditional tables of ``model`` (an ``mbi`` MarkovRandomField) along its junction tree."""
    from mbi import junction_tree, marginal_oracles

    domain = model.domain
    jtree, elimination_order = junction_tree.make_junction_tree(domain, [tuple(c) for c in model.cliques])
    cliques = [set(c) for c in jtree.nodes]
    potentials = model.potentials.expand(list(jtree.nodes))
    marginals = marginal_oracles.message_passing_stable(potentials, model.total)
    index = {n: i for i, n in enumerate(names)}
    order: list[int] = []
    parents: list[list[int]] = []
    cpts: list[NDArray[np.float32]] = []
    oneway: list[NDArray[np.float32]] = []
    used: list[str] = []
    for col in list(elimination_order)[::-1]:
        related = set().union(*[c for c in cliques if col in c])
        proj = tuple(a for a in used if a in related)
        marg = np.asarray(marginals.project((*proj, col)).datavector(flatten=False), dtype=np.float64)
        order.append(index[col])
        parents.append([index[a] for a in proj])
        cpts.append(np.clip(marg, 0.0, None).astype(np.float32))
        oneway.append(
            np.clip(np.asarray(marginals.project((col,)).datavector(), dtype=np.float64), 0.0, None).astype(
                np.float32
            )
        )
        used.append(col)
    return SamplingChain(order, parents, cpts, oneway)


class NumpyModel:
    """Marginals of an ``mbi`` model computed in numpy (no per-query JAX compilation).

    Cliques inside a measured clique are summed from the model's marginals; any other clique by
    variable elimination over the log-potentials (greedy order from ``mbi.junction_tree``).
    ``project`` returns flat counts in C order of the clique's attributes, summing to the
    model's total.
    """

    def __init__(self, model: Any, sizes: dict[str, int]) -> None:
        self.total = float(model.total)
        self.sizes = sizes
        self.domain = model.domain
        self.potentials = [
            (tuple(f.domain.attributes), np.asarray(f.values, dtype=np.float64))
            for f in model.potentials.tables.values()
        ]
        self.marginals = [
            (tuple(f.domain.attributes), np.asarray(f.values, dtype=np.float64))
            for f in model.marginals.tables.values()
        ]

    def _expand(self, attrs: tuple[str, ...], arr: NDArray[np.float64], target: tuple[str, ...]) -> Any:
        perm = sorted(range(len(attrs)), key=lambda i: target.index(attrs[i]))
        arr = np.transpose(arr, perm)
        return arr.reshape([self.sizes[a] if a in attrs else 1 for a in target])

    def project(self, clique: tuple[str, ...]) -> NDArray[np.float64]:
        for attrs, values in self.marginals:
            if set(clique) <= set(attrs):
                axes = tuple(i for i, a in enumerate(attrs) if a not in clique)
                kept = tuple(a for a in attrs if a in clique)
                out = values.sum(axis=axes) if axes else values
                return np.asarray(self._expand(kept, out, clique), dtype=np.float64).ravel()
        return self._eliminate(clique)

    def _eliminate(self, clique: tuple[str, ...]) -> NDArray[np.float64]:
        from mbi import junction_tree

        elim = [a for a in self.domain.attributes if a not in clique]
        order, _ = junction_tree.greedy_order(
            self.domain, [a for a, _ in self.potentials] + [clique], elim=list(elim)
        )
        psi = list(self.potentials)
        for z in order:
            involved = [f for f in psi if z in f[0]]
            if not involved:
                continue
            psi = [f for f in psi if z not in f[0]]
            attrs = tuple(dict.fromkeys(a for f in involved for a in f[0]))
            acc = np.zeros([self.sizes[a] for a in attrs])
            for f_attrs, f_values in involved:
                acc = acc + self._expand(f_attrs, f_values, attrs)
            psi.append((tuple(a for a in attrs if a != z), logsumexp(acc, axis=attrs.index(z))))
        acc = np.zeros([self.sizes[a] for a in clique])
        for f_attrs, f_values in psi:
            acc = acc + self._expand(f_attrs, f_values, clique)
        return np.asarray(np.exp(acc - logsumexp(acc)) * self.total, dtype=np.float64).ravel()


#: what a mechanism reads marginal counts from: cell codes in memory, or a count source
MarginalData = Marginals | SourceMarginals


# ------------------------------------------------------------------------------------------------
# the generator base


class MarginalSynthesizer(Synthesizer):
    """Base of AIM and MST: discretize, run the mechanism (subclass), estimate, sample.

    Subclasses implement :meth:`_run_mechanism`.
    """

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        max_bins = params.get("max_bins", 32)
        if isinstance(max_bins, bool) or not isinstance(max_bins, int) or max_bins < 2:
            raise ParameterError(f"max_bins must be an integer >= 2, got {max_bins!r}")
        iters = params.get("iters", 1000)
        if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
            raise ParameterError(f"iters must be an integer >= 1, got {iters!r}")
        self.columns_: list[DiscreteColumn] = []
        self.maps_: list[NDArray[np.int64]] = []
        self.merged_: list[list[float]] = []
        self.chain_: SamplingChain | None = None

    def fit(
        self,
        data: pd.DataFrame,
        spec: TableSpec,
        budget: PrivacyBudget,
        *,
        seed: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> Self:
        """As :meth:`Synthesizer.fit`; fails before touching the data when ``mbi`` is missing."""
        import_mbi()
        return super().fit(data, spec, budget, seed=seed, progress=progress)

    def fit_from_source(
        self,
        source: CountSource,
        budget: PrivacyBudget,
        *,
        seed: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> Self:
        """:meth:`fit` reading only counts from ``source`` (e.g.
        :class:`~synth_core.warehouse_counts.WarehouseCounts`: ``GROUP BY`` inside the warehouse,
        no row leaves it): the same releases, sensitivities and charges as :meth:`fit` on a frame."""
        import_mbi()
        accountant = PrivacyAccountant(budget)
        privacy_rng = np.random.default_rng(secret_seed())
        transformer = fit_transformer_from_counts(source, accountant, privacy_rng)
        return self.fit_counts(source, transformer, accountant, seed=seed, progress=progress)

    def fit_preprocessed(
        self,
        data: pd.DataFrame,
        transformer: TableTransformer,
        accountant: PrivacyAccountant,
        privacy_rng: np.random.Generator,
        *,
        seed: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> Self:
        """As :meth:`Synthesizer.fit_preprocessed`, counting the cells straight from ``data``
        (:class:`~synth_core.count_source.FrameCounts`): no model matrix is built."""
        check_frame_against_spec(data, transformer.spec)
        return self.fit_counts(
            FrameCounts(data, transformer.spec), transformer, accountant, seed=seed, progress=progress
        )

    def fit_counts(
        self,
        source: CountSource,
        transformer: TableTransformer,
        accountant: PrivacyAccountant,
        *,
        seed: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> Self:
        """Measure, select and estimate from ``source``'s counts once ``transformer`` was fitted
        under DP and charged to ``accountant`` (the path both :meth:`fit` and
        :meth:`fit_from_source` take)."""
        self.transformer_ = transformer
        self.columns_ = discretize_layout(transformer, int(self.params.get("max_bins", 32)))
        names = [c.name for c in self.columns_]
        data = SourceMarginals(source, discrete_codings(transformer, self.columns_), names)
        _check_every_row_counted(source, data, names)
        self.training_ = self._fit_marginals(data, accountant, progress)
        privacy = accountant.to_dict()
        if privacy["epsilon"] > accountant.budget.epsilon * (1 + 1e-9):
            raise AssertionError(
                f"composed epsilon {privacy['epsilon']} exceeds the target {accountant.budget.epsilon}"
            )
        self.privacy_ = privacy
        return self

    @abstractmethod
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
        """Measure, select and estimate within ``rho``; record every spend in ``accountant``.

        ``data`` holds the *uncompressed* codes; the mechanism calls :meth:`_compress` after its
        1-way measurements. Returns ``(mbi model over the compressed domain, training facts)``.
        """

    # -- helpers for subclasses ------------------------------------------------------------------
    def _measure(
        self,
        mbi: Any,
        data: MarginalData,
        cliques: list[tuple[str, ...]],
        sigma: float,
        accountant: PrivacyAccountant,
        rng: np.random.Generator,
        name: str,
    ) -> list[Any]:
        """One Gaussian release (σ per cell) of the marginals of ``cliques``, together: a row is in
        one cell of each, so the vector's L2 sensitivity is ``sqrt(len(cliques))``, charged as
        ``name``. Returns one ``mbi`` measurement per clique."""
        counts = [data.counts(cl) for cl in cliques]
        y = accountant.release_gaussian(
            name, np.concatenate(counts), l2_sensitivity=math.sqrt(len(cliques)), sigma=sigma, rng=rng,
            marginals=len(cliques),
        )  # fmt: skip
        parts = np.split(y, np.cumsum([c.size for c in counts])[:-1])
        return [
            mbi.LinearMeasurement(part, cl, stddev=sigma) for part, cl in zip(parts, cliques, strict=True)
        ]

    def _compress(
        self,
        mbi: Any,
        data: MarginalData,
        names: list[str],
        oneway: dict[str, Any],
        sigma: dict[str, float],
    ) -> tuple[MarginalData, list[Any]]:
        """Merge low-count cells (see :func:`compression_maps`); returns the compressed data and
        the 1-way measurements re-expressed over the compressed domain."""
        ys = {name: np.asarray(m.noisy_measurement, dtype=np.float64) for name, m in oneway.items()}
        maps, merged = compression_maps(ys, sigma)
        self.maps_ = [maps[n] for n in names]
        self.merged_ = [merged[n] for n in names]
        full_domain = mbi.Domain(names, data.sizes)
        measurements = []
        for name in names:
            m = oneway[name]
            if merged[name]:
                m = m.compress({name: maps[name]}, full_domain)
            measurements.append(m)
        return data.compressed(maps), measurements

    def _estimate(
        self,
        mbi: Any,
        domain: Any,
        measurements: list[Any],
        iters: int,
        warm: Any = None,
        tol: float | None = None,
    ) -> Any:
        """Mirror descent for at most ``iters`` iterations; with ``tol``, stop once the relative loss
        improvement over a 50-iteration block stays ≤ ``tol`` for two blocks in a row."""
        from mbi.estimation import MirrorDescent

        return MirrorDescent().estimate(domain, measurements, iters=iters, warm_start=warm, tol=tol)

    # -- Synthesizer hooks -----------------------------------------------------------------------
    def _fit_matrix(
        self,
        matrix: NDArray[np.float32],
        accountant: PrivacyAccountant,
        *,
        seed: int,
        progress: ProgressCallback | None,
    ) -> dict[str, Any]:
        assert self.transformer_ is not None
        self.columns_ = discretize_layout(self.transformer_, int(self.params.get("max_bins", 32)))
        names = [c.name for c in self.columns_]
        codes = encode_matrix(matrix, self.columns_, self.transformer_)
        return self._fit_marginals(
            Marginals(codes, names, [c.size for c in self.columns_]), accountant, progress
        )

    def _fit_marginals(
        self, data: MarginalData, accountant: PrivacyAccountant, progress: ProgressCallback | None
    ) -> dict[str, Any]:
        """Run the mechanism on ``data`` (over :attr:`columns_`) and build the sampling chain."""
        mbi = import_mbi()
        started = time.perf_counter()
        names = [c.name for c in self.columns_]
        rho = remaining_rho(accountant)
        noise_rng = np.random.default_rng(secret_seed())
        model, facts = self._run_mechanism(mbi, data, names, rho, accountant, noise_rng, progress)
        self.chain_ = sampling_chain(mbi, model, names)
        return {
            **facts,
            "rho": rho,
            "domain": {c.name: c.size for c in self.columns_},
            "compressed_domain": {n: int(m.max()) + 1 for n, m in zip(names, self.maps_, strict=True)},
            "seconds": time.perf_counter() - started,
        }

    def _sample_matrix(self, n: int, rng: np.random.Generator) -> NDArray[np.float32]:
        assert self.transformer_ is not None
        return decode_codes(self._sample_codes(n, rng), self.columns_, self.transformer_.output_dim, rng)

    def _sample_decoded(self, n: int, rng: np.random.Generator) -> DecodedRows:
        # cells straight to the transformer: no one-hot matrix to build and take the argmax of
        assert self.transformer_ is not None
        slots, positions, missing = cells_of_codes(self._sample_codes(n, rng), self.columns_, rng)
        return self.transformer_.decode_cells(n, slots, positions, missing, rng)

    def _sample_codes(self, n: int, rng: np.random.Generator) -> NDArray[np.int64]:
        """``(n, columns)`` cell codes of the discrete domain drawn from the fitted model."""
        assert self.chain_ is not None
        compressed = self.chain_.sample(n, len(self.columns_), rng)
        codes = np.empty_like(compressed)
        for j, (mapping, merged) in enumerate(zip(self.maps_, self.merged_, strict=True)):
            kept = np.flatnonzero(np.bincount(mapping, minlength=mapping.size)[mapping] == 1)
            # compressed cell → original cell: kept cells one to one; the merged cell by weight
            back = np.full(int(mapping.max()) + 1, -1, dtype=np.int64)
            back[mapping[kept]] = kept
            c = compressed[:, j]
            out = back[c]
            if merged:
                rest = np.flatnonzero(mapping == mapping.max())
                hit = out < 0
                out[hit] = rest[rng.choice(rest.size, size=int(hit.sum()), p=np.asarray(merged))]
            codes[:, j] = out
        return codes

    def _model_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        import torch

        assert self.chain_ is not None
        config = {
            "columns": [c.to_dict() for c in self.columns_],
            "maps": [m.tolist() for m in self.maps_],
            "merged": self.merged_,
            "order": self.chain_.order,
            "parents": self.chain_.parents,
        }
        state: dict[str, Any] = {}
        for i, (cpt, marginal) in enumerate(zip(self.chain_.cpts, self.chain_.oneway, strict=True)):
            state[f"cpt.{i}"] = torch.from_numpy(np.ascontiguousarray(cpt, dtype=np.float32))
            state[f"oneway.{i}"] = torch.from_numpy(np.ascontiguousarray(marginal, dtype=np.float32))
        return config, state

    def _restore_model(self, config: dict[str, Any], state: dict[str, Any]) -> None:
        self.columns_ = [DiscreteColumn.from_dict(c) for c in config["columns"]]
        self.maps_ = [np.asarray(m, dtype=np.int64) for m in config["maps"]]
        self.merged_ = [list(w) for w in config["merged"]]
        k = len(config["order"])
        self.chain_ = SamplingChain(
            order=[int(i) for i in config["order"]],
            parents=[[int(p) for p in ps] for ps in config["parents"]],
            cpts=[state[f"cpt.{i}"].numpy().astype(np.float32) for i in range(k)],
            oneway=[state[f"oneway.{i}"].numpy().astype(np.float32) for i in range(k)],
        )


def all_pairs(names: list[str]) -> list[tuple[str, str]]:
    return list(itertools.combinations(names, 2))


def _check_every_row_counted(source: CountSource, data: SourceMarginals, names: list[str]) -> None:
    """Every row has a cell in every column (the matrix path's transform refuses the same rows):
    otherwise a public domain misses values, or a NOT NULL column holds NULLs. Names the column,
    never a value or how many rows."""
    n = source.row_count()
    for name in names:
        if int(data.counts((name,)).sum()) != n:
            raise SourceTableError(
                f"table {source.spec.name!r}, column {name!r}: rows hold values outside the declared public "
                "category domain, or NULLs in a column declared NOT NULL (neither the values nor how many "
                "rows are shown: both are exact facts of the private table)"
            )
