"""Typed records the steps hand each other: the model bundle's metadata and the trained model.

Read a bundle's facts through :class:`ModelBundle` (never by indexing ``bundle.json`` dicts), and
a training run's through :class:`TrainedModel` (the train step's XCom / manifest)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from synth_core.errors import BundleError

if TYPE_CHECKING:
    from synth_core.object_store import ObjectStore
    from synth_core.spec import TableSpec
    from synth_core.transformer import TableTransformer


def dp_source_rows(dp_row_count: float, holdout_fraction: float) -> int:
    """The default size of the synthetic table: the DP count of the training rows scaled by the
    (public) holdout fraction — a function of a DP release only."""
    return max(1, round(float(dp_row_count) / (1.0 - float(holdout_fraction))))


@dataclass(frozen=True)
class ModelBundle:
    """A model bundle's metadata, read without torch (spec, transformer, privacy, generator)."""

    uri: str
    sha256: str
    generator: str
    params: dict[str, Any]
    privacy: dict[str, Any]
    training: dict[str, Any]
    transformer: TableTransformer
    raw: bytes = field(repr=False)

    @classmethod
    def read(cls, store: ObjectStore, uri: str) -> ModelBundle:
        """The bundle at ``uri``.

        Raises:
            FileNotFoundError: no object at ``uri``.
            BundleError: not a readable dpsynth bundle, or one missing its privacy facts.
        """
        from synth_core.bundle import read_bundle_metadata
        from synth_core.transformer import TableTransformer

        data = store.get_bytes(uri)
        try:
            meta = read_bundle_metadata(data)
        except BundleError as exc:
            raise BundleError(f"{uri}: {exc}") from None
        try:
            transformer = TableTransformer.from_dict(meta["transformer"])
            privacy = dict(meta["privacy"] or {})
            float(privacy["epsilon"]), float(privacy["delta"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{uri}: the model bundle is incomplete ({exc.__class__.__name__})") from None
        return cls(
            uri=uri,
            sha256=hashlib.sha256(data).hexdigest(),
            generator=str(meta.get("generator")),
            params=dict(meta.get("params") or {}),
            privacy=privacy,
            training=dict(meta.get("training") or {}),
            transformer=transformer,
            raw=data,
        )

    @property
    def spec(self) -> TableSpec:
        return self.transformer.spec

    @property
    def table(self) -> str:
        return self.transformer.spec.name

    @property
    def epsilon(self) -> float:
        return float(self.privacy["epsilon"])

    @property
    def delta(self) -> float:
        return float(self.privacy["delta"])

    @property
    def target_epsilon(self) -> float:
        return float(self.privacy.get("target_epsilon") or self.privacy["epsilon"])

    @property
    def dp_row_count(self) -> int:
        return int(self.transformer.dp_row_count)

    def release_facts(self) -> dict[str, Any]:
        """What publish needs of the model: ``model_uri``, ``generator``, ε, δ, target ε."""
        return {
            "model_uri": self.uri, "generator": self.generator, "epsilon": self.epsilon,
            "delta": self.delta, "target_epsilon": self.target_epsilon,
        }  # fmt: skip


@dataclass(frozen=True)
class TrainedModel:
    """What a training run produced (the train step's XCom; the pod's ``return.json``): public
    configuration and DP outputs only — no exact row count (``dp_source_rows`` is the DP one)."""

    source_table: str
    model_uri: str
    generator: str
    generator_params: dict[str, Any]
    epsilon: float
    delta: float
    target_epsilon: float
    target_delta: float
    dp_source_rows: int
    generator_choice: str | None = None
    training: dict[str, Any] = field(default_factory=dict)

    #: keys a manifest must hold to be read back (the pod operator checks the pod's return.json)
    REQUIRED = ("source_table", "model_uri", "generator", "epsilon", "delta")

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainedModel:
        """A trained-model manifest read back (e.g. a pod's ``return.json``).

        Raises:
            BundleError: a required key is missing or not of its type.
        """
        missing = [k for k in cls.REQUIRED if k not in values]
        if missing:
            raise BundleError(f"the train manifest lacks {missing}")
        try:
            epsilon, delta = float(values["epsilon"]), float(values["delta"])
            return cls(
                source_table=str(values["source_table"]),
                model_uri=str(values["model_uri"]),
                generator=str(values["generator"]),
                generator_params=dict(values.get("generator_params") or {}),
                epsilon=epsilon,
                delta=delta,
                target_epsilon=float(values.get("target_epsilon") or epsilon),
                target_delta=float(values.get("target_delta") or delta),
                dp_source_rows=int(values.get("dp_source_rows") or 0),
                generator_choice=values.get("generator_choice"),
                training=dict(values.get("training") or {}),
            )
        except (TypeError, ValueError) as exc:
            raise BundleError(f"the train manifest is malformed ({type(exc).__name__})") from None
