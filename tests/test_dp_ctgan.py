"""DP-CTGAN and its ensemble on real Adult rows: in budget, private gradients, bundles, parallel ε."""

from __future__ import annotations

import copy
import io
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

import synth_core.generators.dp_ctgan as dp_ctgan
from synth_core.accounting import SampledGaussian
from synth_core.errors import ParameterError
from synth_core.generators import Synthesizer, available_generators, create_synthesizer
from synth_core.generators.dp_ctgan import (
    DPCTGANSynthesizer,
    DPCTGANTraining,
    EarlyStopping,
    PackCritic,
    critic_unit_gradients,
)
from synth_core.generators.dp_ctgan_ensemble import DPCTGANEnsembleSynthesizer
from synth_core.privacy import RDP_ORDERS, MechanismSpend, PrivacyAccountant, PrivacyBudget, sgm_rdp
from synth_core.transformer import fit_transformer_under_dp

pytestmark = pytest.mark.slow

MARKER = "ZZ-PLANTED-MARKER-c7a1"
OUTLIER = 7_654_321
#: small, fast settings; many steps per epoch keep the sampling rate low (fast noise calibration)
FAST = {"batch_size": 100, "generator_dim": [32], "discriminator_dim": [32, 32], "embedding_dim": 16}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    # two shared cores: intra-op threads fighting other jobs make small matmuls 10-50x slower
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def planted(adult_split):  # type: ignore[no-untyped-def]
    """6000 real training rows with a marker category and a unique numeric outlier planted."""
    train, _ = adult_split
    rows = train.head(6000).copy()
    rows.loc[17, "native_country"] = MARKER  # not public: discovered under DP (and must not be)
    rows.loc[18, "fnlwgt"] = OUTLIER  # no public bounds
    return rows


@pytest.fixture(scope="module")
def progress_log() -> list[dict[str, Any]]:
    return []


@pytest.fixture(scope="module")
def ctgan(planted, adult_spec, progress_log):  # type: ignore[no-untyped-def]
    synth = create_synthesizer("dp_ctgan", epochs=2, **FAST)
    return synth.fit(planted, adult_spec, PrivacyBudget(3.0, 1e-5), seed=11, progress=progress_log.append)


@pytest.fixture(scope="module")
def ensemble(planted, adult_spec):  # type: ignore[no-untyped-def]
    synth = create_synthesizer(
        "dp_ctgan_ensemble", n_members=2, epochs=2, patience=1, eval_rows=500, **{**FAST, "batch_size": 50}
    )
    return synth.fit(planted, adult_spec, PrivacyBudget(3.0, 1e-5), seed=5)


@pytest.fixture(scope="module")
def prepared(adult_split, adult_spec):  # type: ignore[no-untyped-def]
    """A transformer, the transformed rows and the accountant after DP preprocessing."""
    train, _ = adult_split
    accountant = PrivacyAccountant(PrivacyBudget(3.0, 1e-5))
    rng = np.random.default_rng(0)
    transformer = fit_transformer_under_dp(train.head(3000), adult_spec, accountant, rng)
    return transformer, transformer.transform(train.head(3000), rng), accountant


def _params(cls: type[Synthesizer], **overrides: Any) -> dict[str, Any]:
    return cls(**{**FAST, **overrides}).params


# -- parameters and registry --------------------------------------------------------------------


def test_both_generators_are_registered_and_validate_their_parameters() -> None:
    assert {"dp_ctgan", "dp_ctgan_ensemble"} <= set(available_generators())
    synth = create_synthesizer("dp_ctgan", pac=1, epochs=3)
    assert synth.params["epochs"] == 3 and synth.params["pac"] == 1
    bad: list[tuple[str, dict[str, Any]]] = [
        ("epochs", {"epochs": 0}),
        ("pac", {"pac": 0}),
        ("pac", {"pac": 600, "batch_size": 500}),
        ("generator_lr", {"generator_lr": -1.0}),
        ("gp_lambda", {"gp_lambda": float("nan")}),
        ("discriminator_dim", {"discriminator_dim": []}),
        ("log_frequency", {"log_frequency": "yes"}),
        ("device", {"device": "tpu"}),
    ]
    for name, kwargs in bad:
        with pytest.raises(ParameterError, match=name):
            create_synthesizer("dp_ctgan", **kwargs)
    for name, kwargs in [
        ("n_members", {"n_members": 0}),
        ("weight_temperature", {"weight_temperature": 0}),
        ("diversity_weight", {"diversity_weight": -1}),
        ("batch_size", {"batch_size": True}),
    ]:
        with pytest.raises(ParameterError, match=name):
            create_synthesizer("dp_ctgan_ensemble", **kwargs)


# -- the critic's private gradients -------------------------------------------------------------


@pytest.mark.parametrize(("hidden", "pack"), [([9, 7], 1), ([9, 7, 5], 3)])
def test_closed_form_per_unit_gradients_equal_autograd_double_backward(hidden: list[int], pack: int) -> None:
    torch.manual_seed(0)
    critic = PackCritic(6, hidden).double()
    real, fake = torch.randn(2, 4, pack, 6, dtype=torch.float64)
    alpha = torch.rand(4, dtype=torch.float64)
    mask = torch.ones(4, pack, dtype=torch.float64)
    mask[0, 1:] = 0.0  # packs of different sizes
    losses, grads = critic_unit_gradients(critic, real, fake, alpha, mask, 10.0)
    for u in range(4):
        m = mask[u : u + 1]
        x_hat = (alpha[u] * real[u] + (1 - alpha[u]) * fake[u]).unsqueeze(0).requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x_hat, m).sum(), x_hat, create_graph=True)
        loss = -critic(real[u : u + 1], m).sum() + critic(fake[u : u + 1], m).sum()
        loss = loss + 10.0 * (g.pow(2).sum().sqrt() - 1) ** 2
        expected = torch.autograd.grad(loss, list(critic.parameters()))
        assert float(losses[u]) == pytest.approx(float(loss.detach()), abs=1e-8)
        for want, got in zip(expected, grads, strict=True):
            torch.testing.assert_close(got[u], want, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("pac", [1, 2])
def test_critic_gradients_are_clipped_and_noised(prepared, pac: int) -> None:  # type: ignore[no-untyped-def]
    from dp_checks import assert_clipped_and_noised, private_gradient_norm

    transformer, matrix, accountant = prepared
    params = _params(DPCTGANSynthesizer, epochs=1, batch_size=50, pac=pac, max_grad_norm=0.5, device="cpu")
    training = DPCTGANTraining(matrix, transformer, copy.deepcopy(accountant), params, seed=0)
    row = torch.from_numpy(matrix[:1])  # one real row: real term, its fake row and the penalty
    assert_clipped_and_noised(training.trainer, lambda: training.critic_loss(row))
    if pac > 1:  # a pack is a replacement unit: clipped to half the bound (see the module docstring)
        clean = private_gradient_norm(training.trainer, lambda: training.critic_loss(row), noise=False)
        assert clean <= 0.25 * (1 + 1e-4)


def test_early_stopping_charges_the_planned_steps(prepared, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    transformer, matrix, accountant = prepared
    monkeypatch.setattr(dp_ctgan, "marginal_distance", lambda rows, transformer: 0.5)  # never improves
    accountant = copy.deepcopy(accountant)
    params = _params(DPCTGANSynthesizer, epochs=4, batch_size=50, device="cpu")
    training = DPCTGANTraining(matrix, transformer, accountant, params, seed=0)
    run = training.run(None, early_stopping=EarlyStopping(patience=1, min_epochs=1, eval_rows=100))
    assert run.facts["epochs_run"] == 2 < 4
    assert (
        run.facts["steps_charged"] == training.trainer.planned_steps == 4 * training.trainer.steps_per_epoch
    )
    assert accountant.epsilon() == pytest.approx(3.0, abs=0.01)


# -- DP-CTGAN end to end ----------------------------------------------------------------------


def test_ctgan_fits_within_budget_and_logs_progress(ctgan, progress_log) -> None:  # type: ignore[no-untyped-def]
    privacy = ctgan.privacy_
    assert 2.97 < privacy["epsilon"] <= 3.0
    sgd = privacy["mechanisms"][-1]
    assert sgd["name"] == "dp-ctgan-critic" and sgd["steps"] == 2 * round(1 / sgd["sample_rate"])
    assert sgd["noise_multiplier"] > 0.3
    assert [p["epoch"] for p in progress_log] == [1, 2]
    assert progress_log[-1]["epsilon_spent"] == pytest.approx(privacy["epsilon"], abs=1e-6)


def test_ctgan_bundle_round_trip_holds_no_planted_value(ctgan, planted, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _check_bundle(ctgan, planted, tmp_path)


# -- the ensemble ---------------------------------------------------------------------------------


def test_ensemble_epsilon_is_the_max_member_not_the_sum(ensemble) -> None:  # type: ignore[no-untyped-def]
    privacy = ensemble.privacy_
    assert privacy["epsilon"] <= 3.0
    joined = privacy["mechanisms"][-1]
    assert joined["name"] == "dp-ctgan-ensemble" and joined["parallel"] == 2
    # rebuild the preprocessing spends, then compose the members both ways
    pre = PrivacyAccountant(PrivacyBudget(3.0, 1e-5))
    for mech in privacy["mechanisms"][:-1]:  # Gaussian preprocessing: zCDP curve and PLD part
        gaussian = (SampledGaussian.at_rho(mech["rho"]),)
        pre.spends.append(
            MechanismSpend(mech["name"], mech["rho"] * RDP_ORDERS, mech["additive_delta"], pld=gaussian)
        )
    curves = [
        sgm_rdp(m[0]["sample_rate"], m[0]["noise_multiplier"], m[0]["steps"]) for m in joined["members"]
    ]
    # each member composed after the preprocessing (the accountant's min of PLD and RDP)
    eps_members = [
        pre.epsilon_with_sgd(m[0]["sample_rate"], m[0]["noise_multiplier"], m[0]["steps"])
        for m in joined["members"]
    ]
    assert privacy["epsilon"] == pytest.approx(max(eps_members), rel=1e-6)
    assert ensemble.training_["member_epsilons"] == pytest.approx(eps_members, rel=1e-6)
    # sequential composition of the same members would overrun the budget
    assert pre.epsilon(curves[0] + curves[1]) > 1.1 * 3.0
    facts = ensemble.training_
    assert len(facts["member_weights"]) == 2 and sum(facts["member_weights"]) == pytest.approx(1.0)
    for member in facts["members"]:  # early stopping never lowers the charge below the plan
        assert member["steps_charged"] == 2 * facts["steps_per_epoch"]


def test_ensemble_bundle_round_trip_holds_no_planted_value(ensemble, planted, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _check_bundle(ensemble, planted, tmp_path)


def _check_bundle(synth: Synthesizer, planted: Any, tmp_path: Any) -> None:
    loaded = Synthesizer.load(synth.save(tmp_path / "model.zip"))
    assert type(loaded) is type(synth) and loaded.privacy_ == synth.privacy_
    first = synth.sample(400, seed=5)
    assert list(first.columns) == list(planted.columns)
    assert first.dtypes.astype(str).to_dict() == planted.dtypes.astype(str).to_dict()
    assert first.equals(loaded.sample(400, seed=5))
    with zipfile.ZipFile(io.BytesIO(synth.to_bytes())) as zf:
        contents = b"".join(zf.read(name) for name in zf.namelist())
    for needle in (MARKER, str(OUTLIER), f"{OUTLIER}.0"):
        assert needle.encode() not in contents
    assert MARKER not in set(synth.sample(3000, seed=0)["native_country"].dropna())


def test_ensemble_class_is_the_registered_one() -> None:
    assert type(create_synthesizer("dp_ctgan_ensemble")) is DPCTGANEnsembleSynthesizer
