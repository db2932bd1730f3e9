"""Privacy thresholds of the release gate, and the release metrics they are compared with.

The metrics are release-level aggregates (a DCR share, a mean NNDR, a membership-inference AUC and
the release's ε), never cell values: they may appear in results, messages and Data Docs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from synth_core.errors import ParameterError
from synth_core.pipeline.jobs import DEFAULT_MAX_ATTACK_AUC, DEFAULT_MAX_DCR_SHARE, DEFAULT_MIN_NNDR

#: Keys of ``release_metrics`` the gate reads (other keys are ignored).
RELEASE_METRIC_KEYS: tuple[str, ...] = ("dcr_share", "nndr_mean", "attack_auc", "epsilon", "target_epsilon")

#: The metrics checked, in suite order: metric → (label, bound, threshold field of
#: :class:`PrivacyThresholds`). ``"max"``: the metric must be at most the threshold; ``"min"``: at
#: least. ε's threshold is ``max_epsilon`` when set, else the release's ``target_epsilon``.
PRIVACY_METRICS: dict[str, tuple[str, str, str]] = {
    "dcr_share": ("DCR share (95% lower bound)", "max", "max_dcr_share"),
    "nndr_mean": ("mean NNDR", "min", "min_nndr"),
    "attack_auc": ("membership-inference attack AUC", "max", "max_attack_auc"),
    "epsilon": ("ε", "max", "max_epsilon"),
}

#: The expectation parameter (``$PARAMETER``) ε is compared with when ``max_epsilon`` is unset.
TARGET_EPSILON_PARAMETER = "target_epsilon"


@dataclass(frozen=True)
class PrivacyThresholds:
    """Limits a release's privacy metrics must respect (all inclusive).

    Attributes:
        max_dcr_share: the largest share of synthetic rows closer to a training row than to a
            holdout row (0.5 is ideal; towards 1, the generator memorises). Compared with the
            share's one-sided 95% lower confidence bound (:func:`gate_metrics`), so sampling
            noise in an ideal generator's 0.5 does not fail the gate.
        min_nndr: the smallest mean nearest-neighbour distance ratio (near 0 flags copies).
        max_attack_auc: the largest membership-inference attack AUC (0.5 is chance).
        max_epsilon: the largest ε the release may have spent; ``None``: the release's own target
            ε (``release_metrics["target_epsilon"]``).
    """

    # the defaults are the release gate's, defined once with its job (synth_core.pipeline.jobs)
    max_dcr_share: float = DEFAULT_MAX_DCR_SHARE
    min_nndr: float = DEFAULT_MIN_NNDR
    max_attack_auc: float = DEFAULT_MAX_ATTACK_AUC
    max_epsilon: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_dcr_share", "min_nndr", "max_attack_auc"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ParameterError(f"PrivacyThresholds.{name} must be a number in [0, 1], got {value!r}")
            object.__setattr__(self, name, float(value))
        eps = self.max_epsilon
        if eps is not None:
            if isinstance(eps, bool) or not isinstance(eps, int | float) or not eps > 0 or math.isnan(eps):
                raise ParameterError(f"PrivacyThresholds.max_epsilon must be a positive number, got {eps!r}")
            object.__setattr__(self, "max_epsilon", float(eps))

    def to_dict(self) -> dict[str, float | None]:
        return {
            "max_dcr_share": self.max_dcr_share,
            "min_nndr": self.min_nndr,
            "max_attack_auc": self.max_attack_auc,
            "max_epsilon": self.max_epsilon,
        }


def gate_metrics(
    evaluation: Mapping[str, Any], *, epsilon: float, target_epsilon: float | None
) -> dict[str, float | None]:
    """The release metrics the gate compares, from :func:`synth_core.metrics.evaluate_release`.

    ``dcr_share`` is the share's one-sided 95% lower confidence bound (``dcr_share_lower95``;
    the point estimate when the bound is absent): a fixed threshold such as 0.52 on the point
    estimate of 2,000 rows would fail a generator that memorises nothing about 4% of the time.
    ``nndr_mean`` and ``attack_auc`` are taken as they are; ``epsilon`` is the release's spent ε
    and ``target_epsilon`` its target (``epsilon`` when ``None``).
    """
    dcr = evaluation.get("dcr_share_lower95")
    return {
        "dcr_share": evaluation.get("dcr_share") if dcr is None else dcr,
        "nndr_mean": evaluation.get("nndr_mean"),
        "attack_auc": evaluation.get("attack_auc"),
        "epsilon": float(epsilon),
        "target_epsilon": float(target_epsilon if target_epsilon else epsilon),
    }


def normalize_release_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float | None]:
    """The known metrics as floats (``None`` when absent, ``None`` or NaN).

    Raises:
        ParameterError: ``metrics`` is not a mapping, a known metric is not a number, or
            ``target_epsilon`` is not positive.
    """
    if metrics is None:
        return dict.fromkeys(RELEASE_METRIC_KEYS)
    if not isinstance(metrics, Mapping):
        raise ParameterError(f"release_metrics must be a mapping, got {type(metrics).__name__}")
    out: dict[str, float | None] = {}
    for key in RELEASE_METRIC_KEYS:
        value = metrics.get(key)
        if value is None:
            out[key] = None
            continue
        if hasattr(value, "item") and not isinstance(value, str | bytes):
            value = value.item()  # numpy scalars
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParameterError(
                f"release_metrics[{key!r}] must be a number or None, got {type(value).__name__}"
            )
        number = float(value)
        out[key] = None if math.isnan(number) else number
    target = out["target_epsilon"]
    if target is not None and not target > 0:
        raise ParameterError(f"release_metrics['target_epsilon'] must be positive, got {target!r}")
    return out


__all__ = [
    "PRIVACY_METRICS",
    "RELEASE_METRIC_KEYS",
    "TARGET_EPSILON_PARAMETER",
    "PrivacyThresholds",
    "gate_metrics",
    "normalize_release_metrics",
]
