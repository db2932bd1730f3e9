"""DP-MAF (masked autoregressive flow, DP-SGD) on real Adult rows: masked-layer per-sample
gradients, privacy accounting, clipped and noised private gradients, bundles without raw values,
and private base-space diagnostics."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from synth_core.errors import ParameterError
from synth_core.generators import Synthesizer, available_generators, create_synthesizer
from synth_core.generators.dp_maf import (
    MAF,
    DPMAFSynthesizer,
    FlowLayout,
    MAFLoss,
    MAFModule,
    MaskedLinear,
    block_orders,
    plot_base_residuals,
    slot_masses,
)
from synth_core.privacy import PrivacyAccountant, PrivacyBudget
from synth_core.spec import TableSpec
from synth_core.transformer import fit_transformer_under_dp

SMALL = {"epochs": 1, "batch_size": 1000, "n_blocks": 2, "hidden": [32]}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():  # type: ignore[no-untyped-def]
    # small models on a shared 2-core machine: a second intra-op thread spin-waits for a core
    # (measured ~10x slower per DP-SGD step under load) and buys nothing at these sizes
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fitted_at_eps3(adult_split, adult_spec) -> DPMAFSynthesizer:  # type: ignore[no-untyped-def]
    train, _ = adult_split
    synth = create_synthesizer("dp_maf", epochs=1, batch_size=1000, hidden=[64, 64])
    assert isinstance(synth, DPMAFSynthesizer)
    return synth.fit(train, adult_spec, PrivacyBudget(3.0, 1e-5), seed=11)


def _random_flow(dim: int, n_blocks: int, hidden: list[int], permutation: str) -> MAF:
    torch.manual_seed(0)
    flow = MAF(block_orders(dim, n_blocks, permutation, seed=3), hidden)
    with torch.no_grad():  # away from the identity initialisation, so every mask matters
        for p in flow.parameters():
            p.normal_(0.0, 0.3)
    return flow


# -- parameters ----------------------------------------------------------------------------------


def test_registered_and_parameters_validated_by_name() -> None:
    assert "dp_maf" in available_generators()
    synth = create_synthesizer("dp_maf", epochs=3, hidden=(16, 8), permutation="random")
    assert synth.params["epochs"] == 3 and synth.params["hidden"] == [16, 8]
    assert synth.params["permutation"] == "random" and synth.params["diagnostics_fraction"] == 0.02
    bad = {
        "epochs": 0,
        "batch_size": 2.5,
        "n_blocks": 0,
        "hidden": [],
        "permutation": "shuffle",
        "diagnostics_fraction": 0.7,
        "learning_rate": -1.0,
        "max_grad_norm": 0,
        "grad_sample_mode": "magic",
        "device": "tpu",
    }
    for name, value in bad.items():
        with pytest.raises(ParameterError, match=name):
            create_synthesizer("dp_maf", **{name: value})
    with pytest.raises(ParameterError, match="hidden"):
        create_synthesizer("dp_maf", hidden=[16, 0])


# -- the flow and its masked layers --------------------------------------------------------------


def test_flow_is_autoregressive_invertible_with_exact_log_determinant() -> None:
    flow = _random_flow(5, 3, [12, 12], "random")
    x = torch.randn(4, 5)
    for block in flow.blocks:
        jac = torch.autograd.functional.jacobian(lambda v, b=block: b(v)[0], x[:1])[0, :, 0, :]
        order = torch.tensor(block.order)
        # ∂μ_i/∂x_j may be non-zero only when j comes before i in the block's order
        allowed = order[None, :] < order[:, None]
        assert (jac[~allowed] == 0).all()
        assert (jac[allowed] != 0).any()
    u, logdet = flow(x)
    assert torch.allclose(flow.inverse(u), x, atol=1e-4)
    for row in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v)[0], x[row : row + 1])[0, :, 0, :]
        assert torch.allclose(logdet[row], torch.linalg.slogdet(jac)[1], atol=1e-4)


@pytest.mark.parametrize("mode", ["hooks", "ghost"])
def test_masked_layer_per_sample_gradients_match_per_row_backward(mode: str) -> None:
    from opacus.grad_sample import GradSampleModule, GradSampleModuleFastGradientClipping
    from opacus.grad_sample.utils import wrap_model

    assert MaskedLinear in GradSampleModule.GRAD_SAMPLERS
    assert MaskedLinear in GradSampleModuleFastGradientClipping.NORM_SAMPLERS
    flow = _random_flow(6, 2, [16, 8], "reverse")
    x = torch.randn(9, 6)
    loss = MAFLoss(reduction="none")
    expected = []
    for i in range(x.shape[0]):
        flow.zero_grad()
        loss(flow(x[i : i + 1]), x[i : i + 1]).sum().backward()
        expected.append(torch.cat([p.grad.flatten() for p in flow.parameters()]))
    per_row = torch.stack(expected)
    assert (per_row.abs() > 0).any(dim=0).sum() > 100
    kwargs = {"max_grad_norm": 1.0} if mode == "ghost" else {}
    wrapped = wrap_model(flow, grad_sample_mode=mode, loss_reduction="sum", **kwargs)
    masked = [m for m in flow.modules() if isinstance(m, MaskedLinear)]
    assert masked and not any(hasattr(m, "ft_compute_grad_sample") for m in masked)  # no functorch
    out = wrapped(x)
    if mode == "hooks":
        loss(out, x).sum().backward()
        got = torch.cat([p.grad_sample.flatten(start_dim=1) for p in flow.parameters()], dim=1)
        torch.testing.assert_close(got, per_row, rtol=1e-4, atol=1e-5)
        # masked-out weights get exactly zero per-sample gradient
        for layer in masked:
            assert (layer.weight.grad_sample[:, layer.mask == 0] == 0).all()
    else:
        loss(out, x).sum().backward(retain_graph=True)
        torch.testing.assert_close(wrapped.get_norm_sample(), per_row.norm(dim=1), rtol=1e-4, atol=1e-5)
    wrapped._close()


@pytest.fixture(scope="module")
def small_private_setup(adult_split, adult_spec):  # type: ignore[no-untyped-def]
    train, _ = adult_split
    rows = train.head(4000)
    accountant = PrivacyAccountant(PrivacyBudget(3.0, 1e-5))
    rng = np.random.default_rng(0)
    transformer = fit_transformer_under_dp(rows, adult_spec, accountant, rng)
    return transformer, transformer.transform(rows, rng), accountant


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_private_gradients_are_clipped_and_noised(small_private_setup, mode: str) -> None:  # type: ignore[no-untyped-def]
    from dp_checks import assert_clipped_and_noised

    from synth_core.dp_training import DPSGDConfig, PrivateTrainer

    transformer, matrix, accountant = small_private_setup
    layout = FlowLayout(transformer.spans, slot_masses(transformer))
    compact = layout.compact(matrix)
    assert compact.shape == (matrix.shape[0], len(transformer.spans))
    flow = MAF(block_orders(layout.dim, 2, "reverse", seed=0), [32])
    with torch.no_grad():  # leave the identity start, so every layer has a gradient
        for p in flow.parameters():
            p.normal_(0.0, 0.1)
    trainer = PrivateTrainer(
        MAFModule(layout, flow), MAFLoss(), compact, accountant,
        DPSGDConfig(epochs=1, batch_size=500, max_grad_norm=0.5, grad_sample_mode=mode, device="cpu"),
        row_count=transformer.dp_row_count,
    )  # fmt: skip
    row = torch.from_numpy(compact[:1])
    assert_clipped_and_noised(trainer, lambda: trainer.criterion(trainer.module(row), row))


def test_categorical_dequantisation_round_trips(small_private_setup) -> None:  # type: ignore[no-untyped-def]
    transformer, matrix, _ = small_private_setup
    layout = FlowLayout(transformer.spans, slot_masses(transformer))
    compact = layout.compact(matrix)
    x = layout.dequantize(torch.from_numpy(compact)).numpy()
    assert np.isfinite(x).all() and np.abs(x).max() < 5
    cont = [i for i, s in enumerate(transformer.spans) if s.kind == "continuous"]
    np.testing.assert_array_equal(x[:, cont], compact[:, cont])
    # decoding the dequantised rows gives back exactly the transformer's matrix (slot = argmax)
    np.testing.assert_array_equal(layout.decode(x, transformer.output_dim), matrix)


# -- fitting on Adult ----------------------------------------------------------------------------


@pytest.mark.slow
def test_fit_stays_in_budget_and_samples_the_schema(fitted_at_eps3, adult_split) -> None:  # type: ignore[no-untyped-def]
    privacy = fitted_at_eps3.privacy_
    assert 2.97 < privacy["epsilon"] <= 3.0
    names = [m["name"] for m in privacy["mechanisms"]]
    assert names[-2:] == ["diagnostics:maf-base-residuals", "dp-sgd"]
    assert "quantiles:fnlwgt" in names and "categories:native_country" in names
    sgd = privacy["mechanisms"][-1]
    assert sgd["noise_multiplier"] > 0.5 and sgd["steps"] == round(1 / sgd["sample_rate"])
    assert "final_loss" not in fitted_at_eps3.training_  # an un-noised statistic: not in the bundle
    train, _ = adult_split
    out = fitted_at_eps3.sample(1500, seed=1)
    assert len(out) == 1500 and list(out.columns) == list(train.columns)
    assert out.dtypes.astype(str).to_dict() == train.dtypes.astype(str).to_dict()
    assert out["age"].between(17, 90).all() and out["sex"].isin(["Male", "Female"]).all()
    assert not (out["relationship"].eq("Husband") & out["sex"].eq("Female")).any()  # rules enforced
    assert out["income"].nunique() == 2


@pytest.mark.slow
def test_bundle_round_trip_resamples_without_spending(fitted_at_eps3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    uri = fitted_at_eps3.save(tmp_path / "maf.zip")
    loaded = Synthesizer.load(uri)
    assert isinstance(loaded, DPMAFSynthesizer)
    assert loaded.privacy_ == fitted_at_eps3.privacy_ and loaded.params == fitted_at_eps3.params
    assert loaded.diagnostics_ == fitted_at_eps3.diagnostics_
    pd.testing.assert_frame_equal(loaded.sample(400, seed=5), fitted_at_eps3.sample(400, seed=5))


@pytest.mark.slow
def test_bundle_holds_no_value_that_appears_only_in_the_real_table(
    adult_split, adult_spec: TableSpec
) -> None:
    train, _ = adult_split
    train = train.head(6000).copy()
    marker = "ZZ-PLANTED-MARKER-9c3a"
    train.loc[17, "native_country"] = marker  # not a public category: discovered under DP
    train.loc[18, "fnlwgt"] = 7_654_321  # a unique outlier without public bounds
    synth = create_synthesizer("dp_maf", **SMALL).fit(train, adult_spec, PrivacyBudget(1.0, 1e-5))
    with zipfile.ZipFile(io.BytesIO(synth.to_bytes())) as zf:
        contents = b"".join(zf.read(name) for name in zf.namelist())
    for needle in (marker, "7654321", "7654321.0"):
        assert needle.encode() not in contents
    assert marker not in set(synth.sample(2000, seed=0)["native_country"].dropna())


# -- diagnostics ---------------------------------------------------------------------------------


def _no_spending(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("plotting touched the privacy accountant")

    for method in ("spend_gaussian", "spend_thresholded", "spend_sgd", "calibrate_noise_multiplier"):
        monkeypatch.setattr(PrivacyAccountant, method, refuse)


@pytest.mark.slow
def test_diagnostic_plots_render_from_dp_histograms_without_spending(
    fitted_at_eps3, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    diag = fitted_at_eps3.diagnostics_
    assert diag is not None
    spend = next(m for m in fitted_at_eps3.privacy_["mechanisms"] if m["name"].startswith("diagnostics:"))
    assert spend["rho"] == pytest.approx(diag["rho"]) and spend["dims"] == len(diag["counts_1d"])
    # noisy counts: not integers, and roughly the row count per base dimension
    counts = np.asarray(diag["counts_1d"])
    assert not np.allclose(counts, counts.round())
    assert np.all(np.abs(counts.sum(axis=1) / fitted_at_eps3.transformer_.dp_row_count - 1) < 0.2)
    before = dict(fitted_at_eps3.privacy_)
    _no_spending(monkeypatch)
    png = plot_base_residuals(fitted_at_eps3, fmt="png", n_synthetic=500)
    assert isinstance(png, bytes) and png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    html = plot_base_residuals(fitted_at_eps3, fmt="html", n_synthetic=500)
    assert isinstance(html, str) and html.startswith("<figure") and "data:image/png;base64," in html
    assert "charged to the release budget" in html
    # the release report's hook: the same figure, as PNG bytes
    (report_png,) = fitted_at_eps3.diagnostics().values()
    assert report_png.startswith(b"\x89PNG\r\n\x1a\n") and len(report_png) > 10_000
    assert fitted_at_eps3.privacy_ == before
    with pytest.raises(ParameterError, match="fmt"):
        plot_base_residuals(fitted_at_eps3, fmt="svg")


@pytest.mark.slow
def test_diagnostics_can_be_switched_off_and_then_spend_nothing(adult_split, adult_spec) -> None:  # type: ignore[no-untyped-def]
    train, _ = adult_split
    synth = create_synthesizer("dp_maf", diagnostics_fraction=0, **SMALL).fit(
        train.head(3000), adult_spec, PrivacyBudget(2.0, 1e-5), seed=2
    )
    assert isinstance(synth, DPMAFSynthesizer) and synth.diagnostics_ is None
    names = [m["name"] for m in synth.privacy_["mechanisms"]]
    assert not any(name.startswith("diagnostics") for name in names)
    assert synth.privacy_["epsilon"] <= 2.0
    html = plot_base_residuals(Synthesizer.from_bytes(synth.to_bytes()), fmt="html", n_synthetic=300)  # type: ignore[arg-type]
    assert "no real-row histograms were released" in html
