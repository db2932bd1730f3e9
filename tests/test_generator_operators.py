"""Every registered generator is selectable by name in the Airflow operators: train → sample.

The operators run for real (embedded SQLite warehouse, file object store, SQLite ledger) on real
Adult rows with tiny settings: this checks the wiring (bundle written and reloaded by name, ε
recorded in the ledger within the request, the synthetic table in the source schema), not quality.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import ADULT_SPEC_PATH

pytestmark = pytest.mark.slow

#: tiny settings per generator: one epoch, small networks
TINY: dict[str, dict[str, Any]] = {
    "dp_tvae": {"epochs": 1, "hidden": [32]},
    "dp_ctgan": {"epochs": 1, "batch_size": 100, "generator_dim": [32], "discriminator_dim": [32]},
    "dp_ctgan_ensemble": {
        "n_members": 2, "epochs": 1, "batch_size": 100, "generator_dim": [32], "discriminator_dim": [32],
    },
    "dp_tabsyn": {
        "vae_epochs": 1, "vae_batch_size": 500, "latent_dim": 8, "hidden": [32], "diffusion_epochs": 1,
        "diffusion_batch_size": 500, "denoiser_width": 32, "denoiser_depth": 1, "diffusion_steps": 6,
        "distill_steps": 30, "distill_batch_size": 128, "distill_pool_rows": 512, "distill_grid": 8,
    },
    "dp_maf": {"epochs": 1, "batch_size": 1000, "n_blocks": 2, "hidden": [32]},
    "dp_great": {"epochs": 1, "batch_size": 500, "d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64},
    "dp_tablegan": {
        "epochs": 1, "classifier_epochs": 1, "batch_size": 400, "channels": 4, "feature_dim": 8, "noise_dim": 8,
    },
    "dp_tgan": {
        "epochs": 1, "batch_size": 400, "lstm_hidden": 12, "feature_dim": 8, "noise_dim": 8,
        "discriminator_hidden": [16],
    },
    "mst": {"iters": 100},
    "aim": {"max_rounds": 2, "round_iters": 20, "iters": 100},
    "auto": {"gpu": False, "generator_params": {"aim": {"max_rounds": 2, "round_iters": 20, "iters": 100}}},
}  # fmt: skip


def test_every_registered_generator_has_an_operator_case() -> None:
    from synth_core.generators import available_generators, get_generator_class

    # other tests register throwaway generators of their own: only the package's count here
    shipped = [
        n for n in available_generators() if get_generator_class(n).__module__.startswith("synth_core.")
    ]
    assert sorted(TINY) == shipped


@pytest.mark.parametrize("generator", sorted(TINY))
def test_generator_trains_and_samples_through_the_operators(
    generator: str, dpsynth_home: Path, adult_frame: Any
) -> None:
    from synth_core.datasets import adult_table, write_frame_to_table
    from synth_core.ledger import PrivacyLedger, budget_scope
    from synth_provider.operators.synthesize import (
        ExtractTableOperator,
        SampleSynthesizerOperator,
        TrainSynthesizerOperator,
    )

    engine = sa.create_engine(f"sqlite:///{dpsynth_home / 'warehouse.db'}")
    write_frame_to_table(engine, adult_frame.head(2_000), adult_table())
    ctx = {"run_id": f"run-{generator}"}
    staged = ExtractTableOperator(
        task_id="extract", source_table="adult", spec=str(ADULT_SPEC_PATH), epsilon=3.0, delta=1e-5,
        lifetime_epsilon=10.0, lifetime_delta=1e-4,
    ).execute(ctx)  # fmt: skip
    model = TrainSynthesizerOperator(
        task_id="train", staged=staged, epsilon=3.0, delta=1e-5, lifetime_epsilon=10.0, lifetime_delta=1e-4,
        generator=generator,
        generator_params=TINY[generator],
    ).execute(ctx)  # fmt: skip
    # 'auto' reports the generator it picked (AIM for this small table when the extra is installed)
    assert model["generator"] == ("aim" if generator == "auto" else generator)
    assert (model["generator_choice"] is not None) == (generator == "auto")
    assert 0 < model["epsilon"] <= 3.0 + 1e-9
    synthetic = SampleSynthesizerOperator(task_id="sample", model=model, num_rows=300).execute(ctx)
    assert synthetic["rows"] == 300
    status = PrivacyLedger(f"sqlite:///{dpsynth_home / 'ledger.db'}").status(
        budget_scope(engine, table="adult")
    )
    assert status.spent_epsilon == pytest.approx(model["epsilon"])


def test_a_missing_extra_fails_with_the_install_line_and_spends_nothing(
    dpsynth_home: Path, adult_frame: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from airflow.sdk.exceptions import AirflowFailException

    from synth_core.datasets import adult_table, write_frame_to_table
    from synth_core.ledger import PrivacyLedger
    from synth_provider.operators.synthesize import ExtractTableOperator, TrainSynthesizerOperator

    engine = sa.create_engine(f"sqlite:///{dpsynth_home / 'warehouse.db'}")
    write_frame_to_table(engine, adult_frame.head(500), adult_table())
    ctx = {"run_id": "run-missing-extra"}
    staged = ExtractTableOperator(task_id="extract", source_table="adult", spec=str(ADULT_SPEC_PATH)).execute(
        ctx
    )
    monkeypatch.setitem(sys.modules, "mbi", None)  # `import mbi` now fails as if the extra were absent
    train = TrainSynthesizerOperator(
        task_id="train", staged=staged, epsilon=1.0, lifetime_epsilon=10.0, generator="mst"
    )
    with pytest.raises(AirflowFailException, match=r"pip install 'airflow-provider-dpsynth\[marginal\]'"):
        train.execute(ctx)
    status = PrivacyLedger(f"sqlite:///{dpsynth_home / 'ledger.db'}").status("adult")
    assert status.spent_epsilon == 0.0
