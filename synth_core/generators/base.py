"""The :class:`Synthesizer` interface, the generator registry, and model bundles.

A synthesizer is fit once under a :class:`~synth_core.privacy.PrivacyBudget` and then sampled
any number of times: sampling (and re-sampling from a saved bundle) is post-processing and spends
no budget.

Randomness: every draw that protects privacy (preprocessing noise, DP-SGD noise, Poisson sampling)
comes from the operating system's entropy, never from the user's ``seed``: a seed written in a DAG
file is public, and noise derived from it could be subtracted. ``seed`` only fixes model
initialisation and sampling, which are not privacy-relevant.

A model bundle is a zip holding ``bundle.json`` (format version, generator name and parameters,
the privacy accounting, the fitted transformer: public metadata and DP outputs only) and
``weights.pt`` (a PyTorch ``state_dict`` of tensors, loaded with ``weights_only=True``). It holds
no row of the training data.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from synth_core.bundle import (
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    check_architecture,
    read_bundle_metadata,
    read_weights,
)
from synth_core.dp_training import ProgressCallback
from synth_core.errors import BundleError, ParameterError
from synth_core.object_store import ObjectStore
from synth_core.privacy import PrivacyAccountant, PrivacyBudget, secret_seed
from synth_core.rules import RuleUnsatisfiableError, evaluate_rules
from synth_core.spec import TableSpec
from synth_core.transformer import DecodedRows, TableTransformer, fit_transformer_under_dp

#: most rows one sampling round draws from the model (bounds a round's memory)
SAMPLE_CHUNK_ROWS = 100_000
#: rows per frame :meth:`Synthesizer.sample_batches` yields unless told otherwise
SAMPLE_BATCH_ROWS = 100_000
#: below this share of sampled rows satisfying the rules, sampling gives up (the model has not learned them)
MIN_RULE_ACCEPTANCE = 0.005

_REGISTRY: dict[str, type[Synthesizer]] = {}


def register_generator(cls: type[Synthesizer]) -> type[Synthesizer]:
    """Class decorator: make ``cls`` selectable by its ``name``."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__name__} needs a class attribute 'name'")
    _REGISTRY[cls.name] = cls
    return cls


def available_generators() -> list[str]:
    return sorted(_REGISTRY)


def get_generator_class(name: str) -> type[Synthesizer]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ParameterError(f"unknown generator {name!r}; available: {available_generators()}") from None


def create_synthesizer(name: str, **params: Any) -> Synthesizer:
    """Instantiate the generator registered as ``name`` with its parameters."""
    return get_generator_class(name)(**params)


def check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    """Raise :class:`ParameterError` naming ``name`` unless ``value`` is an int in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ParameterError(f"{name} must be an integer >= {low}, got {value!r}")
    if high is not None and value > high:
        raise ParameterError(f"{name} must be an integer <= {high}, got {value!r}")


def check_float(
    name: str,
    value: Any,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raise :class:`ParameterError` naming ``name`` unless ``low ≤ value ≤ high`` (open ends optional)."""
    ok = isinstance(value, int | float | np.number) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        v = float(value)
        ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ParameterError(f"{name} must be a finite number in {lo}{low}, {high}{hi}, got {value!r}")


class Synthesizer(ABC):
    """A DP generator of synthetic tables: ``fit`` once, ``sample`` many times.

    Subclasses set ``name``, validate their parameters in ``__init__`` (stored unchanged in
    ``self.params``), and implement the model-specific hooks ``_fit_matrix``, ``_sample_matrix``,
    ``_model_state`` and ``_restore_model``.
    """

    name: ClassVar[str] = ""

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = dict(params)
        self.transformer_: TableTransformer | None = None
        self.privacy_: dict[str, Any] | None = None
        self.training_: dict[str, Any] = {}

    # -- model hooks -----------------------------------------------------------------------------
    @abstractmethod
    def _fit_matrix(
        self,
        matrix: np.ndarray,
        accountant: PrivacyAccountant,
        *,
        seed: int,
        progress: ProgressCallback | None,
    ) -> dict[str, Any]:
        """Train on the transformed rows ``matrix`` ``(n, d)`` float32; return training facts."""

    @abstractmethod
    def _sample_matrix(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, d)`` float32 in the transformer's layout; a softmax span holds a one-hot draw, or
        scores whose argmax is the draw (e.g. Gumbel-perturbed logits)."""

    def _sample_decoded(self, n: int, rng: np.random.Generator) -> DecodedRows:
        """``n`` drawn rows decoded to numpy columns; the default decodes :meth:`_sample_matrix`
        (a generator that draws cells directly overrides it to skip the matrix)."""
        return self._require_fitted().decode(self._sample_matrix(n, rng), rng)

    @abstractmethod
    def _model_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(architecture config as JSON types, torch state_dict)``."""

    @abstractmethod
    def _restore_model(self, config: dict[str, Any], state: dict[str, Any]) -> None:
        """Rebuild the model from :meth:`_model_state` output."""

    # -- public API ------------------------------------------------------------------------------
    def fit(
        self,
        data: pd.DataFrame,
        spec: TableSpec,
        budget: PrivacyBudget,
        *,
        seed: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> Self:
        """Learn a DP model of ``data`` (the source schema) within ``budget``.

        Preprocessing (DP quantiles, ranges, category discovery) and training compose in one
        accountant; after fitting, ``privacy_["epsilon"]`` is the release's ε (≤ ``budget.epsilon``).
        """
        accountant = PrivacyAccountant(budget)
        privacy_rng = np.random.default_rng(secret_seed())
        transformer = fit_transformer_under_dp(data, spec, accountant, privacy_rng)
        return self.fit_preprocessed(data, transformer, accountant, privacy_rng, seed=seed, progress=progress)

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
        """The rest of :meth:`fit` once ``transformer`` was fitted under DP and charged to
        ``accountant`` (``auto`` chooses its generator from the transformer's DP row count, then
        hands both over, so the preprocessing is released and charged once)."""
        budget = accountant.budget
        self.transformer_ = transformer
        matrix = transformer.transform(data, privacy_rng)
        model_seed = int(seed) if seed is not None else secret_seed()
        self.training_ = self._fit_matrix(matrix, accountant, seed=model_seed, progress=progress)
        privacy = accountant.to_dict()
        if privacy["epsilon"] > budget.epsilon * (1 + 1e-9):
            # calibration guarantees this cannot happen; refuse rather than release a model over budget
            raise AssertionError(f"composed epsilon {privacy['epsilon']} exceeds the target {budget.epsilon}")
        self.privacy_ = privacy
        return self

    def diagnostics(self) -> dict[str, bytes]:
        """Generator-specific figures for the release report, ``{caption: PNG bytes}``.

        Must be built from DP outputs only (they go into the shareable report). Default: none.
        """
        return {}

    @property
    def is_fitted(self) -> bool:
        return self.transformer_ is not None

    def _require_fitted(self) -> TableTransformer:
        if self.transformer_ is None:
            raise ParameterError(f"generator {self.name!r} is not fitted: call fit() or load() first")
        return self.transformer_

    def sample(self, n: int, *, seed: int | None = None, max_rounds: int = 40) -> pd.DataFrame:
        """``n`` synthetic rows with the source's columns, order and dtypes. Spends no budget.

        Critical rules of the spec are enforced by rejection: rows that violate one are dropped
        and more are drawn, each round oversampling by the share of rows that has passed so far,
        in at most ``max_rounds`` rounds per :data:`SAMPLE_CHUNK_ROWS` rows asked for
        (post-processing, so no budget). A rule the model cannot satisfy raises
        :class:`RuleUnsatisfiableError` naming it and the share of rows that satisfied the rules.

        The same rows as ``pandas.concat(sample_batches(n, seed=seed))`` for any ``batch_rows``.
        """
        (frame,) = self.sample_batches(n, seed=seed, batch_rows=max(int(n), 1), max_rounds=max_rounds)
        return frame

    def sample_batches(
        self,
        n: int,
        *,
        seed: int | None = None,
        batch_rows: int = SAMPLE_BATCH_ROWS,
        max_rounds: int = 40,
    ) -> Iterator[pd.DataFrame]:
        """:meth:`sample` streamed: ``n`` rows as consecutive frames of ``batch_rows`` rows (the
        last one shorter; one empty frame with the schema when ``n == 0``), in bounded memory
        for any ``n``. Arguments are checked before the first frame is asked for.

        Deterministic for a ``seed``: the rows do not depend on ``batch_rows`` (the rows are
        drawn in rounds that depend only on ``n`` and the seed), and integer surrogate keys
        continue across frames (``1..n`` over the whole stream).
        """
        transformer = self._require_fitted()
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ParameterError(f"num_rows must be an integer >= 0, got {n!r}")
        check_int("batch_rows", batch_rows, 1)
        check_int("max_rounds", max_rounds, 1)
        return self._batches(transformer, int(n), seed, int(batch_rows), int(max_rounds))

    def _batches(
        self, transformer: TableTransformer, n: int, seed: int | None, batch_rows: int, max_rounds: int
    ) -> Iterator[pd.DataFrame]:
        # separate streams: the rows, and the surrogate keys drawn per frame (so that the rows do
        # not depend on how the stream is cut into frames)
        rows_seq, keys_seq = np.random.SeedSequence(seed).spawn(2)
        rows_rng, keys_rng = np.random.default_rng(rows_seq), np.random.default_rng(keys_seq)
        pending: list[pd.DataFrame] = []
        buffered = emitted = 0
        for part in self._accepted_rows(transformer, n, rows_rng, max_rounds):
            pending.append(part)
            buffered += len(part)
            while buffered >= batch_rows:
                batch, pending = _split_rows(pending, batch_rows)
                buffered -= batch_rows
                yield transformer.with_surrogate_keys(batch, keys_rng, start=emitted + 1)
                emitted += batch_rows
        if buffered or n == 0:
            batch, pending = _split_rows(pending, buffered)
            if n == 0:
                batch = transformer.inverse_transform(
                    np.zeros((0, transformer.output_dim), dtype=np.float32), rows_rng
                )
            yield transformer.with_surrogate_keys(batch, keys_rng, start=emitted + 1)

    def _accepted_rows(
        self, transformer: TableTransformer, n: int, rng: np.random.Generator, max_rounds: int
    ) -> Iterator[pd.DataFrame]:
        """Frames of rows satisfying the critical rules, ``n`` rows in all, each from one round."""
        rules = [r for r in transformer.spec.rules if r.severity == "critical"]
        outputs = {c.name for c in transformer.spec.output_columns}
        # a column the table lacks is left out here: evaluating the rule then names it
        rule_columns = [c for c in dict.fromkeys(c for r in rules for c in r.columns) if c in outputs]
        limit = max_rounds * max(1, math.ceil(n / SAMPLE_CHUNK_ROWS))
        have = drawn = kept = rounds = 0
        violations: dict[str, int] = {r.name: 0 for r in rules}
        while have < n:
            if rounds == limit or (drawn >= 20_000 and kept < MIN_RULE_ACCEPTANCE * drawn):
                raise _unsatisfiable(transformer.spec.name, drawn, kept, violations)
            rounds += 1
            want = n - have
            acceptance = kept / drawn if drawn else 1.0
            batch = (
                want if not rules else max(int(want / max(acceptance, MIN_RULE_ACCEPTANCE) * 1.1) + 16, 1_000)
            )
            decoded = self._sample_decoded(min(batch, SAMPLE_CHUNK_ROWS), rng)
            if not rules:
                frame = decoded.frame()
            else:
                # the rules read only their columns; the other columns are built for kept rows only
                ok = np.ones(decoded.n, dtype=bool)
                for name, holds in evaluate_rules(rules, decoded.frame(columns=rule_columns)).items():
                    violations[name] += int(decoded.n - np.count_nonzero(holds))
                    ok &= holds
                drawn += decoded.n
                kept += int(np.count_nonzero(ok))
                if int(np.count_nonzero(ok)) > want:
                    ok[np.flatnonzero(ok)[want:]] = False
                frame = decoded.frame(rows=None if ok.all() else ok)
            frame = frame.iloc[:want]
            have += len(frame)
            if len(frame):
                yield frame

    # -- bundles ---------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Serialize the fitted synthesizer as a model bundle (zip of JSON + tensors)."""
        import torch

        transformer = self._require_fitted()
        config, state = self._model_state()
        meta = {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "generator": self.name,
            "params": self.params,
            "privacy": self.privacy_,
            "training": self.training_,
            "transformer": transformer.to_dict(),
            "model_config": config,
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        weights = io.BytesIO()
        torch.save(state, weights)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("bundle.json", json.dumps(meta, indent=1, default=_json_default))
            zf.writestr("weights.pt", weights.getvalue())
        return buf.getvalue()

    @staticmethod
    def from_bytes(data: bytes) -> Synthesizer:
        """Load any registered generator from bundle bytes."""
        meta = read_bundle_metadata(data)
        state = read_weights(data)

        def restore() -> Synthesizer:
            synth = get_generator_class(meta["generator"])(**meta["params"])
            synth.transformer_ = TableTransformer.from_dict(meta["transformer"])
            synth.privacy_ = meta["privacy"]
            synth.training_ = meta.get("training", {})
            synth._restore_model(meta["model_config"], state)
            return synth

        check_architecture(restore, str(meta["generator"]))  # on the meta device: allocates nothing
        return restore()

    def save(self, uri: str, *, store: ObjectStore | None = None) -> str:
        """Write the bundle to ``uri`` (``file://``, a path, or ``s3://``); returns the URI."""
        from synth_core.object_store import as_uri

        uri = as_uri(uri)
        (store or ObjectStore()).put_bytes(uri, self.to_bytes(), content_type="application/zip")
        return uri

    @staticmethod
    def load(uri: str, *, store: ObjectStore | None = None) -> Synthesizer:
        from synth_core.object_store import as_uri

        try:
            data = (store or ObjectStore()).get_bytes(as_uri(uri))
        except FileNotFoundError:
            raise BundleError(f"model bundle not found: {uri}") from None
        return Synthesizer.from_bytes(data)


def _split_rows(parts: list[pd.DataFrame], rows: int) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """The first ``rows`` rows of the frames ``parts`` as one frame (fresh index), and the rest."""
    taken: list[pd.DataFrame] = []
    count = 0
    rest = list(parts)
    while count < rows and rest:
        head = rest.pop(0)
        need = rows - count
        if len(head) > need:
            rest.insert(0, head.iloc[need:])
            head = head.iloc[:need]
        taken.append(head)
        count += len(head)
    if not taken:
        return pd.DataFrame(), rest
    out = pd.concat(taken, ignore_index=True) if len(taken) > 1 else taken[0].reset_index(drop=True)
    return out, rest


def _unsatisfiable(table: str, drawn: int, kept: int, violations: dict[str, int]) -> RuleUnsatisfiableError:
    worst = max(violations, key=lambda name: violations[name])
    share = kept / drawn if drawn else 0.0
    return RuleUnsatisfiableError(
        f"table {table!r}: the model cannot satisfy its rules: of {drawn} sampled rows {kept} ({share:.2%}) "
        f"satisfied every rule; rule {worst!r} failed most ({violations[worst]} rows). Give the generator more "
        "epochs or budget, or relax the rule"
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
