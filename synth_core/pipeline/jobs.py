"""Typed inputs of the release steps, and the defaults — each defined here and nowhere else.

A job is a frozen dataclass with :meth:`from_mapping` (an operator's arguments, a pod's JSON job,
command-line options: values are coerced and range-checked, errors name the field) and
:meth:`to_dict` (JSON-safe; the pod's ``--job-json`` is ``TrainJob.to_dict()``). Adapters derive
their arguments from the fields, so a new train parameter is one field here (plus docs).

Field metadata: ``help`` (one line for command lines and docs); ``cli=False`` for a field the
command lines do not expose as an option.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from synth_core.errors import ParameterError

DEFAULT_GENERATOR = "dp_tvae"
DEFAULT_DELTA = 1e-6
DEFAULT_PREPROCESSING_FRACTION = 0.1
DEFAULT_HOLDOUT_FRACTION = 0.2
DEFAULT_CHUNK_ROWS = 50_000
#: a lifetime grant made on first sight of a table without an explicit lifetime δ: this many runs' δ
LIFETIME_DELTA_RUNS = 10
#: the release gate's privacy thresholds on real-data metrics (see the README)
DEFAULT_MAX_DCR_SHARE = 0.52
DEFAULT_MIN_NNDR = 0.5
DEFAULT_MAX_ATTACK_AUC = 0.60
DEFAULT_NULL_RATE_TOLERANCE = 0.05

_MISSING = object()


class Job:
    """``from_mapping``/``to_dict`` for the job dataclasses (fields coerced by their annotation)."""

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], **overrides: Any) -> Self:
        """The job from a mapping (unknown keys ignored; ``None``/``""`` mean "not given")."""
        merged = {**dict(values), **{k: v for k, v in overrides.items() if v is not None}}
        kwargs: dict[str, Any] = {}
        missing: list[str] = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            raw = merged.get(f.name, _MISSING)
            if raw is _MISSING or raw is None or (isinstance(raw, str) and raw in ("", "None")):
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    missing.append(f.name)
                continue
            kwargs[f.name] = _coerce(raw, str(f.type), f.name)
        if missing:
            raise ParameterError(f"the job lacks {', '.join(missing)}")
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


def _coerce(value: Any, annotation: str, name: str) -> Any:
    kind = annotation.replace(" | None", "").strip()
    try:
        if kind == "float":
            if isinstance(value, bool):
                raise TypeError
            out = float(value)
            if math.isnan(out):
                raise ValueError
            return out
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if kind == "str":
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise TypeError
            return str(value)
        if kind == "bool":
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind.startswith("dict"):
            if not isinstance(value, Mapping):
                raise TypeError
            return dict(value)
    except (TypeError, ValueError):
        raise ParameterError(
            f"{name} must be {_KIND_WORDS.get(kind, kind)}, got {type(value).__name__}"
        ) from None
    return value


_KIND_WORDS = {"float": "a number", "int": "an integer", "str": "a string", "bool": "true or false"}


def _fraction_open(value: float, name: str, low: float, high: float) -> None:
    if not (low < value < high):
        raise ParameterError(f"{name} must be in ({low:g}, {high:g}), got {value!r}")


@dataclass(frozen=True, kw_only=True)
class TrainParams(Job):
    """What a user chooses for one training run (an operator's or the CLI's train arguments)."""

    epsilon: float = field(metadata={"help": "target ε of this release"})
    delta: float = field(default=DEFAULT_DELTA, metadata={"help": "target δ (keep it well below 1/rows)"})
    generator: str = field(default=DEFAULT_GENERATOR, metadata={"help": "generator name, or auto"})
    generator_params: dict[str, Any] = field(default_factory=dict, metadata={"help": "generator parameters"})
    preprocessing_fraction: float = field(
        default=DEFAULT_PREPROCESSING_FRACTION,
        metadata={"help": "budget share for DP bounds/quantiles/domains"},
    )
    lifetime_epsilon: float | None = field(
        default=None,
        metadata={"help": "grant this lifetime ε if the table has no budget yet (never changes a grant)"},
    )
    lifetime_delta: float | None = field(
        default=None, metadata={"help": f"lifetime δ of that grant (default {LIFETIME_DELTA_RUNS}·δ)"}
    )
    seed: int | None = field(
        default=None, metadata={"help": "seeds model initialisation only (DP noise uses OS entropy)"}
    )

    def __post_init__(self) -> None:
        self.budget()  # ε, δ and the preprocessing share are checked before anything is touched
        if self.lifetime_epsilon is not None and not (
            math.isfinite(self.lifetime_epsilon) and self.lifetime_epsilon > 0
        ):
            raise ParameterError(
                f"lifetime_epsilon must be a finite number > 0, got {self.lifetime_epsilon!r}"
            )
        if self.lifetime_delta is not None:
            _fraction_open(self.lifetime_delta, "lifetime_delta", 0.0, 1.0)
        if not self.generator:
            raise ParameterError("generator must be a generator name")

    def budget(self) -> Any:
        """The :class:`~synth_core.privacy.PrivacyBudget` of the run."""
        from synth_core.privacy import PrivacyBudget

        return PrivacyBudget(self.epsilon, self.delta, preprocessing_fraction=self.preprocessing_fraction)

    def lifetime_grant(self) -> tuple[float, float] | None:
        """``(lifetime ε, lifetime δ)`` to grant a table seen for the first time, or ``None``."""
        if self.lifetime_epsilon is None:
            return None
        return self.lifetime_epsilon, self.lifetime_delta or self.delta * LIFETIME_DELTA_RUNS


@dataclass(frozen=True, kw_only=True)
class TrainJob(TrainParams):
    """One training run on staged rows: the parameters plus where the rows and the model are.

    The pod's JSON job is ``TrainJob.to_dict()``; the in-process operator and the CLI build the
    same object."""

    source_table: str = field(metadata={"help": "the dataset's name (ledger, paths)", "cli": False})
    train_uri: str = field(metadata={"help": "staged train Parquet"})
    spec_uri: str = field(metadata={"help": "the TableSpec YAML (object store URI)"})
    model_uri: str = field(metadata={"help": "where the model bundle goes"})
    holdout_fraction: float = field(
        default=0.0, metadata={"help": "share of the staged split held out (scales the DP row count)"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.holdout_fraction < 0.9:
            raise ParameterError(f"holdout_fraction must be in [0, 0.9), got {self.holdout_fraction!r}")

    @classmethod
    def for_staged(cls, params: TrainParams, staged: Mapping[str, Any], model_uri: str) -> TrainJob:
        """The job training ``params`` on a staged manifest (the extract step's XCom)."""
        missing = [k for k in ("source_table", "train_uri", "spec_uri") if not staged.get(k)]
        if missing:
            raise ParameterError(f"the staged manifest lacks {missing}: pass the extract task's output")
        return cls.from_mapping(
            {**params.to_dict(), **{k: staged.get(k) for k in ("source_table", "train_uri", "spec_uri")}},
            holdout_fraction=staged.get("holdout_fraction"),
            model_uri=model_uri,
        )


@dataclass(frozen=True, kw_only=True)
class StageJob(Job):
    """Reading the source into a staged train/holdout split."""

    holdout_fraction: float = field(
        default=DEFAULT_HOLDOUT_FRACTION, metadata={"help": "share of real rows kept out of training"}
    )
    chunk_rows: int = field(default=DEFAULT_CHUNK_ROWS, metadata={"help": "rows per read chunk"})

    def __post_init__(self) -> None:
        _fraction_open(self.holdout_fraction, "holdout_fraction", 0.0, 0.9)
        if self.chunk_rows < 1:
            raise ParameterError(f"chunk_rows must be >= 1, got {self.chunk_rows!r}")


@dataclass(frozen=True, kw_only=True)
class GateJob(Job):
    """The release gate's options (the validate step)."""

    max_dcr_share: float = DEFAULT_MAX_DCR_SHARE
    min_nndr: float = DEFAULT_MIN_NNDR
    max_attack_auc: float = DEFAULT_MAX_ATTACK_AUC
    null_rate_tolerance: float = DEFAULT_NULL_RATE_TOLERANCE
    compute_metrics: bool = True
    enforce_privacy_thresholds: bool = True

    def __post_init__(self) -> None:
        for name in ("max_dcr_share", "min_nndr", "max_attack_auc", "null_rate_tolerance"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ParameterError(f"{name} must be in [0, 1], got {value!r}")

    def thresholds(self) -> dict[str, float]:
        return {
            "max_dcr_share": self.max_dcr_share,
            "min_nndr": self.min_nndr,
            "max_attack_auc": self.max_attack_auc,
        }
