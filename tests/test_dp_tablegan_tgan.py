"""DP-table-GAN and DP-TGAN on real Adult rows: in budget, every private phase accounted, private
gradients clipped and noised, generator steps never touch them, bundles round-trip without values."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from dp_checks import assert_clipped_and_noised
from torch import nn

import synth_core.generators.dp_tablegan as tablegan
import synth_core.generators.dp_tgan as tgan
from synth_core.dp_training import DPSGDConfig, PrivateTrainer
from synth_core.errors import ParameterError
from synth_core.generators import Synthesizer, available_generators, create_synthesizer
from synth_core.privacy import PrivacyAccountant, PrivacyBudget

pytestmark = pytest.mark.slow

MARKER = "ZZ-PLANTED-MARKER-7c2a"
OUTLIER = 7_654_321
#: small networks and one epoch: these tests check privacy plumbing, not quality
SMALL: dict[str, dict[str, Any]] = {
    "dp_tablegan": {
        "epochs": 1, "classifier_epochs": 1, "batch_size": 400, "channels": 4, "feature_dim": 8,
        "noise_dim": 8, "grad_sample_mode": "hooks", "device": "cpu",
    },
    "dp_tgan": {
        "epochs": 1, "batch_size": 400, "lstm_hidden": 12, "feature_dim": 8, "noise_dim": 8,
        "discriminator_hidden": [16], "device": "cpu",
    },
}  # fmt: skip
PRIVATE_PHASES = {
    "dp_tablegan": [
        "dp_tablegan:classifier",
        "dp_tablegan:information-statistics",
        "dp_tablegan:discriminator",
    ],
    "dp_tgan": ["dp_tgan:discriminator"],
}


@pytest.fixture(scope="module")
def planted(adult_split) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    train = adult_split[0].head(3000).copy()
    train.loc[17, "native_country"] = MARKER  # not a public category: discovered under DP
    train.loc[18, "fnlwgt"] = OUTLIER  # a unique outlier of a column without public bounds
    return train


@pytest.fixture(scope="module", params=sorted(SMALL))
def fitted(request, planted, adult_spec) -> Synthesizer:  # type: ignore[no-untyped-def]
    synth = create_synthesizer(request.param, **SMALL[request.param])
    return synth.fit(planted, adult_spec, PrivacyBudget(3.0, 1e-5), seed=5)


def test_registered_and_parameters_stored_unchanged() -> None:
    assert {"dp_tablegan", "dp_tgan"} <= set(available_generators())
    for name, params in SMALL.items():
        assert create_synthesizer(name, **params).params == {
            **create_synthesizer(name).params,
            **params,
        }


@pytest.mark.parametrize(
    ("name", "params", "named"),
    [
        ("dp_tablegan", {"epochs": 0}, "epochs"),
        ("dp_tablegan", {"info_decay": 1.0}, "info_decay"),
        ("dp_tablegan", {"classifier_budget_share": -0.1}, "classifier_budget_share"),
        ("dp_tablegan", {"classifier_budget_share": 0.6, "info_budget_share": 0.4}, "info_budget_share"),
        ("dp_tablegan", {"generator_lr": float("nan")}, "generator_lr"),
        ("dp_tablegan", {"label_column": ""}, "label_column"),
        ("dp_tablegan", {"grad_sample_mode": "functorch"}, "grad_sample_mode"),
        ("dp_tgan", {"batch_size": 1}, "batch_size"),
        ("dp_tgan", {"discriminator_hidden": []}, "discriminator_hidden"),
        ("dp_tgan", {"kl_weight": -1}, "kl_weight"),
        ("dp_tgan", {"device": "tpu"}, "device"),
    ],
)
def test_bad_parameters_are_named(name: str, params: dict[str, Any], named: str) -> None:
    with pytest.raises(ParameterError, match=named):
        create_synthesizer(name, **params)


def test_label_column_must_be_categorical(fitted: Synthesizer) -> None:
    assert fitted.transformer_ is not None
    with pytest.raises(ParameterError, match="label_column 'age'"):
        tablegan.DPTableGANSynthesizer(label_column="age").label_span(fitted.transformer_)


def test_epsilon_within_target_and_every_private_phase_accounted(fitted: Synthesizer) -> None:
    privacy = fitted.privacy_
    assert privacy is not None
    assert 2.9 < privacy["epsilon"] <= 3.0
    mechanisms = {m["name"]: m for m in privacy["mechanisms"]}
    assert "quantiles:fnlwgt" in mechanisms and "categories:native_country" in mechanisms
    phases = PRIVATE_PHASES[fitted.name]
    assert [m["name"] for m in privacy["mechanisms"]][-len(phases) :] == phases
    for phase in phases:
        assert mechanisms[phase]["noise_multiplier"] > 0.3 and mechanisms[phase]["steps"] >= 1
    training = fitted.training_
    assert training["discriminator"]["steps"] == mechanisms[phases[-1]]["steps"]
    if fitted.name == "dp_tablegan":  # the statistics were released exactly as often as recorded
        stats = training["information_statistics"]
        assert stats["releases"] == stats["planned_releases"] == mechanisms[phases[1]]["steps"]


def test_bundle_round_trip_and_schema(fitted: Synthesizer, planted: pd.DataFrame, tmp_path: Path) -> None:
    loaded = Synthesizer.load(fitted.save(tmp_path / "model.zip"))
    assert loaded.name == fitted.name and loaded.privacy_ == fitted.privacy_
    pd.testing.assert_frame_equal(loaded.sample(300, seed=4), fitted.sample(300, seed=4))
    out = loaded.sample(300, seed=9)
    assert list(out.columns) == list(planted.columns)
    assert out.dtypes.astype(str).to_dict() == planted.dtypes.astype(str).to_dict()
    assert ((out["relationship"] != "Husband") | (out["sex"] == "Male")).all()  # rules enforced


def test_bundle_holds_no_planted_value(fitted: Synthesizer) -> None:
    with zipfile.ZipFile(io.BytesIO(fitted.to_bytes())) as zf:
        contents = b"".join(zf.read(name) for name in zf.namelist())
    for needle in (MARKER, str(OUTLIER), f"{OUTLIER}.0"):
        assert needle.encode() not in contents
    assert MARKER not in set(fitted.sample(2000, seed=0)["native_country"].dropna())


# -- private modules: clipped and noised, and untouched by generator steps ----------------------


def _private_trainers(
    synth: Synthesizer, rows: pd.DataFrame, mode: str
) -> dict[str, tuple[PrivateTrainer, Any]]:
    """Each private module of ``synth``'s family, with its real per-step loss on one private row."""
    transformer = synth.transformer_
    assert transformer is not None
    matrix = transformer.transform(rows, np.random.default_rng(0))
    row = torch.from_numpy(matrix[:1])
    no_fakes = row[:0]
    d = matrix.shape[1]
    accountant = PrivacyAccountant(PrivacyBudget(3.0, 1e-5))
    config = DPSGDConfig(epochs=1, batch_size=300, max_grad_norm=0.5, grad_sample_mode=mode, device="cpu")
    out: dict[str, tuple[PrivateTrainer, Any]] = {}
    if synth.name == "dp_tablegan":
        label = tablegan.DPTableGANSynthesizer().label_span(transformer)
        assert label is not None
        disc = PrivateTrainer(
            tablegan.ConvDiscriminator(d, 4, 8), nn.BCEWithLogitsLoss(), matrix, accountant, config,
            row_count=transformer.dp_row_count,
        )  # fmt: skip
        clf = PrivateTrainer(
            tablegan.ConvDiscriminator(d, 4, 8, label.width), nn.CrossEntropyLoss(), matrix, accountant, config,
            row_count=transformer.dp_row_count,
        )  # fmt: skip
        out["discriminator"] = (disc, lambda: tablegan.discriminator_loss(disc, row, no_fakes))
        out["classifier"] = (clf, lambda: tablegan.classifier_loss(clf, row, label))
    else:
        disc = PrivateTrainer(
            tgan.mlp_discriminator(d, [16]), nn.BCEWithLogitsLoss(), matrix, accountant, config,
            row_count=transformer.dp_row_count,
        )  # fmt: skip
        out["discriminator"] = (disc, lambda: tablegan.discriminator_loss(disc, row, no_fakes))
    return out


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_private_gradients_are_clipped_and_noised(
    fitted: Synthesizer, planted: pd.DataFrame, mode: str
) -> None:
    for _, (trainer, loss_fn) in _private_trainers(fitted, planted.head(600), mode).items():
        assert_clipped_and_noised(trainer, loss_fn)


def test_generator_steps_leave_private_gradients_untouched(
    fitted: Synthesizer, planted: pd.DataFrame
) -> None:
    trainer, _ = _private_trainers(fitted, planted.head(600), "ghost")["discriminator"]
    d = fitted.transformer_.output_dim  # type: ignore[union-attr]
    fake = torch.randn(7, d, requires_grad=True)
    with tablegan.frozen_private_module(trainer) as disc:
        disc(fake).sum().backward()
    assert fake.grad is not None and float(fake.grad.abs().sum()) > 0  # the generator does get a signal
    for p in trainer.raw_module.parameters():
        assert p.requires_grad  # restored
        assert p.grad is None and getattr(p, "grad_sample", None) is None
        assert getattr(p, "_norm_sample", None) is None
    assert getattr(trainer.module, "hooks_enabled", True)
    # and a private step right after still clips one row's gradient to the bound
    row = torch.from_numpy(fitted.transformer_.transform(planted.head(1), np.random.default_rng(0)))  # type: ignore[union-attr]
    assert_clipped_and_noised(trainer, lambda: tablegan.discriminator_loss(trainer, row, row[:0]))


def test_information_statistics_are_bounded_and_noised() -> None:
    k, sigma = 256, 2.0
    data = np.zeros((1000, k), dtype=np.float32)
    data[0] = 1e6  # one extreme row
    half = tablegan.PrivateFeatureStatistics(data, 1.0, 0.0, 1.0, torch.device("cpu"))
    without = tablegan.PrivateFeatureStatistics(data[1:], 1.0, 0.0, 1.0, torch.device("cpu"))
    mean_with, _ = half.release(lambda x: x)
    mean_without, _ = without.release(lambda x: x)
    # the noiseless feature sums of neighbouring tables differ by at most the sensitivity (1)
    assert float(torch.linalg.vector_norm(mean_with - mean_without)) / np.sqrt(2 * k) <= 1.0 + 1e-5
    noisy = tablegan.PrivateFeatureStatistics(
        np.zeros((1000, k), np.float32), 0.5, sigma, 1.0, torch.device("cpu")
    )
    m1, _ = noisy.release(lambda x: x)
    m2, _ = noisy.release(lambda x: x)
    assert noisy.releases == 2
    std = float(m1.std()) / np.sqrt(2 * k)
    assert 0.8 * sigma < std < 1.2 * sigma and not torch.equal(m1, m2)
