"""DP-TabSyn on real Adult rows: two DP-SGD phases in one budget, a 1–2-evaluation consistency
sampler, bundles that round-trip and hold no raw value. Tiny models and epochs: this checks the
mechanics and the privacy plumbing; utility is measured by benchmarks/dp_tabsyn_sampler.py."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import synth_core.generators.dp_tabsyn as dp_tabsyn  # registers "dp_tabsyn"
from synth_core.errors import ParameterError
from synth_core.generators import Synthesizer, available_generators, create_synthesizer
from synth_core.privacy import PrivacyAccountant, PrivacyBudget

pytestmark = pytest.mark.slow

#: a tiny but complete configuration: every phase runs, in seconds
TINY: dict[str, Any] = {
    "vae_epochs": 1,
    "vae_batch_size": 500,
    "latent_dim": 8,
    "hidden": [32],
    "diffusion_epochs": 1,
    "diffusion_batch_size": 500,
    "denoiser_width": 32,
    "denoiser_depth": 1,
    "noise_multiplicity": 2,
    "diffusion_steps": 6,
    "distill_steps": 30,
    "distill_batch_size": 128,
    "distill_pool_rows": 512,
    "distill_grid": 8,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def fitted(adult_split, adult_spec) -> dp_tabsyn.DPTabSynSynthesizer:  # type: ignore[no-untyped-def]
    train, _ = adult_split
    synth = create_synthesizer("dp_tabsyn", **TINY)
    synth.fit(train.head(6000), adult_spec, PrivacyBudget(3.0, 1e-5), seed=5)
    assert isinstance(synth, dp_tabsyn.DPTabSynSynthesizer)
    return synth


def test_registered_and_parameters_validated_by_name() -> None:
    assert "dp_tabsyn" in available_generators()
    synth = create_synthesizer("dp_tabsyn", hidden=(64, 32), vae_budget_fraction=0.3)
    assert synth.params["hidden"] == [64, 32] and synth.params["vae_budget_fraction"] == 0.3
    bad = {
        "vae_epochs": 0,
        "diffusion_batch_size": -5,
        "latent_dim": 1.5,
        "hidden": [],
        "noise_multiplicity": True,
        "vae_budget_fraction": 1.0,
        "diffusion_learning_rate": 0.0,
        "sampler": "ddim",
        "consistency_steps": 3,
        "consistency_mid_sigma": 50.0,
        "distill_ema": 1.0,
        "grad_sample_mode": "magic",
        "device": "tpu",
    }
    for name, value in bad.items():
        with pytest.raises(ParameterError, match=name):
            create_synthesizer("dp_tabsyn", **{name: value})


def test_two_private_phases_compose_within_the_target(fitted) -> None:  # type: ignore[no-untyped-def]
    privacy = fitted.privacy_
    assert privacy["epsilon"] <= 3.0 and privacy["epsilon"] > 2.97  # calibrated, not wasted
    names = [m["name"] for m in privacy["mechanisms"]]
    assert names[-2:] == [dp_tabsyn.VAE_MECHANISM, dp_tabsyn.DIFFUSION_MECHANISM]
    assert "quantiles:fnlwgt" in names  # preprocessing composes in the same accountant
    vae, diffusion = privacy["mechanisms"][-2:]
    assert vae["noise_multiplier"] > 0.3 and diffusion["noise_multiplier"] > 0.3
    assert vae["steps"] == fitted.training_["vae"]["steps"] > 0
    assert diffusion["steps"] == fitted.training_["diffusion"]["steps"] > 0
    # phase 1 stopped at its share of the budget, phase 2 took the rest
    eps1 = fitted.training_["vae"]["epsilon_after"]
    assert eps1 <= fitted.training_["vae"]["epsilon_target"] * (1 + 1e-9)
    assert 0.5 < eps1 < 2.9


def test_budget_split_follows_vae_budget_fraction(adult_split, adult_spec) -> None:  # type: ignore[no-untyped-def]
    from synth_core.transformer import fit_transformer_under_dp

    train, _ = adult_split
    accountant = PrivacyAccountant(PrivacyBudget(3.0, 1e-5))
    fit_transformer_under_dp(train.head(2000), adult_spec, accountant, np.random.default_rng(0))
    low = dp_tabsyn.DPTabSynSynthesizer(vae_budget_fraction=0.2).vae_epsilon_target(accountant)
    high = dp_tabsyn.DPTabSynSynthesizer(vae_budget_fraction=0.8).vae_epsilon_target(accountant)
    assert accountant.epsilon() < low < high < 3.0


def test_private_gradients_clipped_and_noised_in_both_phases(adult_split, adult_spec) -> None:  # type: ignore[no-untyped-def]
    from dp_checks import assert_clipped_and_noised

    from synth_core.transformer import fit_transformer_under_dp

    train, _ = adult_split
    rows = train.head(3000)
    accountant = PrivacyAccountant(PrivacyBudget(3.0, 1e-5))
    rng = np.random.default_rng(0)
    transformer = fit_transformer_under_dp(rows, adult_spec, accountant, rng)
    matrix = transformer.transform(rows, rng)
    n_cont = sum(1 for s in transformer.spans if s.kind == "continuous")
    for mode in ("ghost", "hooks"):
        synth = dp_tabsyn.DPTabSynSynthesizer(
            **{**TINY, "grad_sample_mode": mode, "vae_max_grad_norm": 0.5, "diffusion_max_grad_norm": 0.7}
        )
        vae = synth._build_vae(matrix.shape[1], n_cont)
        trainer, loss_fn = synth.vae_trainer(
            vae, transformer.spans, matrix, accountant, 2.0, row_count=transformer.dp_row_count
        )
        row = torch.from_numpy(matrix[:1])
        assert_clipped_and_noised(trainer, lambda row=row, loss_fn=loss_fn: loss_fn(row))

        latents = np.random.default_rng(1).standard_normal((len(rows), 8)).astype(np.float32)
        trainer, loss_fn = synth.diffusion_trainer(
            synth._build_denoiser(), latents, accountant, row_count=transformer.dp_row_count
        )
        one = torch.from_numpy(latents[:1])
        assert_clipped_and_noised(trainer, lambda one=one, loss_fn=loss_fn: loss_fn(one))
        # the K noise draws of a row ride in one example: Opacus sees a single per-sample gradient
        assert trainer.module(one)[0].shape == (1, TINY["noise_multiplicity"], 8)


def _count_rows(module: torch.nn.Module, counter: list[int]) -> Any:
    def hook(_m: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        counter[0] += int(args[0].shape[0])

    return module.register_forward_pre_hook(hook)


def test_consistency_sampler_uses_at_most_two_evaluations_per_row(fitted, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    drawn = [0]
    inner = fitted._sample_matrix

    def counting(n: int, rng: np.random.Generator) -> np.ndarray:
        drawn[0] += n
        return inner(n, rng)

    monkeypatch.setattr(fitted, "_sample_matrix", counting)
    cm_rows, dm_rows = [0], [0]
    handles = [_count_rows(fitted.consistency_, cm_rows), _count_rows(fitted.denoiser_, dm_rows)]
    try:
        out = fitted.sample(3000, seed=2)  # the default sampler
        assert len(out) == 3000 and drawn[0] >= 3000
        assert dm_rows[0] == 0 and 0 < cm_rows[0] <= 2 * drawn[0]
        assert cm_rows[0] == fitted.params["consistency_steps"] * drawn[0]

        drawn[0] = cm_rows[0] = 0
        fitted.sample(500, seed=2, sampler="diffusion")
        assert cm_rows[0] == 0 and dm_rows[0] == (2 * TINY["diffusion_steps"] - 1) * drawn[0]
    finally:
        for h in handles:
            h.remove()
    with pytest.raises(ParameterError, match="sampler"):
        fitted.sample(10, sampler="ancestral")


def test_samples_match_the_schema_and_rules(fitted, adult_split, adult_spec) -> None:  # type: ignore[no-untyped-def]
    train, _ = adult_split
    for sampler in ("consistency", "diffusion"):
        out = fitted.sample(800, seed=1, sampler=sampler)
        assert list(out.columns) == list(train.columns)
        assert out.dtypes.astype(str).to_dict() == train.dtypes.astype(str).to_dict()
        assert out["age"].between(17, 90).all()
        for rule in adult_spec.rules:
            assert rule.evaluate(out).all(), rule.name


def test_bundle_round_trip(fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    loaded = Synthesizer.load(fitted.save(tmp_path / "tabsyn.zip"))
    assert isinstance(loaded, dp_tabsyn.DPTabSynSynthesizer)
    assert loaded.params == fitted.params and loaded.privacy_ == fitted.privacy_
    for sampler in ("consistency", "diffusion"):
        pd.testing.assert_frame_equal(
            loaded.sample(400, seed=9, sampler=sampler), fitted.sample(400, seed=9, sampler=sampler)
        )


def test_bundle_holds_no_planted_value(adult_split, adult_spec) -> None:  # type: ignore[no-untyped-def]
    train, _ = adult_split
    train = train.head(3000).copy()
    marker = "ZZ-PLANTED-MARKER-7c2a"
    train.loc[17, "native_country"] = marker  # not a public category: discovered under DP
    train.loc[18, "fnlwgt"] = 8_765_432  # a unique outlier in a column without public bounds
    synth = create_synthesizer("dp_tabsyn", **TINY).fit(train, adult_spec, PrivacyBudget(1.0, 1e-5), seed=0)
    with zipfile.ZipFile(io.BytesIO(synth.to_bytes())) as zf:
        contents = b"".join(zf.read(name) for name in zf.namelist())
    for needle in (marker, "8765432", "8765432.0"):
        assert needle.encode() not in contents
    assert marker not in set(synth.sample(2000, seed=0)["native_country"].dropna())
