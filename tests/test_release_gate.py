"""The release gate (validate between sample and publish), through the real operators."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import ADULT_SPEC_PATH

from synth_core.generators import Synthesizer, register_generator
from synth_core.privacy import PrivacyAccountant

pytestmark = pytest.mark.slow


@register_generator
class CopyRowsSynthesizer(Synthesizer):
    """TEST ONLY: 'synthesizes' by copying training rows — what the privacy gate must stop.

    It still goes through the DP transformer (so bundles hold no raw values) and records a real
    spend; what it releases is the training rows themselves.
    """

    name: ClassVar[str] = "test_copy_rows"

    def _fit_matrix(
        self, matrix: np.ndarray, accountant: PrivacyAccountant, *, seed: int, progress: Any
    ) -> dict[str, Any]:
        self.rows_ = matrix.copy()
        return {"rows": len(matrix)}

    def _sample_matrix(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.rows_[
            rng.permutation(len(self.rows_))[:n]
            if n <= len(self.rows_)
            else rng.integers(0, len(self.rows_), n)
        ]

    def _model_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        import torch

        return {}, {"rows": torch.from_numpy(self.rows_)}

    def _restore_model(self, config: dict[str, Any], state: dict[str, Any]) -> None:
        self.rows_ = state["rows"].numpy()


@dataclass
class Refresh:
    home: Path
    staged: dict[str, Any]
    common: dict[str, Any]

    def rows_train(self) -> int:
        """The exact training-split size, read from staging/ (it never travels in the XCom)."""
        from synth_core.object_store import ObjectStore, join_uri

        sizes = json.loads(ObjectStore().get_bytes(join_uri(self.staged["staging_uri"], "split_sizes.json")))
        return int(sizes["rows_train"])

    def run(self, run_id: str, *, generator: str = "dp_tvae", params: dict[str, Any] | None = None,
            num_rows: int = 5_000, corrupt: Any = None, **gate: Any) -> dict[str, Any]:  # fmt: skip
        """train → sample → (corrupt) → validate → publish; returns the publish manifest."""
        from synth_provider.operators.synthesize import (
            PublishSyntheticOperator,
            SampleSynthesizerOperator,
            TrainSynthesizerOperator,
            ValidateSyntheticOperator,
        )

        ctx = {"run_id": run_id}
        model = TrainSynthesizerOperator(
            task_id="train", staged=self.staged, epsilon=3.0, generator=generator,
            generator_params=params if params is not None else {"epochs": 3}, **self.common,
        ).execute(ctx)  # fmt: skip
        synthetic = SampleSynthesizerOperator(
            task_id="sample", model=model, num_rows=num_rows, seed=3, **self.common
        ).execute(ctx)
        if corrupt is not None:
            from synth_core.object_store import ObjectStore

            store = ObjectStore()
            frame = corrupt(store.read_parquet(synthetic["synthetic_uri"]))
            store.write_parquet(synthetic["synthetic_uri"], frame)
        validation = ValidateSyntheticOperator(
            task_id="validate", staged=self.staged, model=model, synthetic=synthetic, **gate, **self.common
        ).execute(ctx)
        return dict(
            PublishSyntheticOperator(
                task_id="publish",
                staged=self.staged,
                model=model,
                synthetic=synthetic,
                validation=validation,
                **self.common,
            ).execute(ctx)
        )

    def published(self) -> pd.DataFrame:
        """The live synthetic table (a first, clean release is published if there is none yet)."""
        engine = sa.create_engine(f"sqlite:///{self.home / 'warehouse.db'}")
        if not sa.inspect(engine).has_table("adult_synthetic"):
            self.run("first")
        return pd.read_sql_table("adult_synthetic", engine)


@pytest.fixture(scope="module")
def refresh(adult_frame, tmp_path_factory) -> Iterator[Refresh]:  # type: ignore[no-untyped-def]
    from synth_core.datasets import adult_table, write_frame_to_table
    from synth_provider.operators.synthesize import ExtractTableOperator

    home = tmp_path_factory.mktemp("dpsynth-home")
    write_frame_to_table(sa.create_engine(f"sqlite:///{home / 'warehouse.db'}"), adult_frame, adult_table())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW__DPSYNTH__HOME", str(home))
        common: dict[str, Any] = {}
        staged = ExtractTableOperator(
            task_id="extract", source_table="adult", spec=str(ADULT_SPEC_PATH), epsilon=3.0, lifetime_epsilon=100.0,
            **common,
        ).execute({"run_id": "extract"})  # fmt: skip
        yield Refresh(home, staged, common)


def test_published_dp_table_satisfies_the_rules_and_gx_shows_them_passed(refresh: Refresh) -> None:
    from synth_core.rules import rules_hold
    from synth_core.spec import TableSpec

    manifest = refresh.run("clean")
    spec = TableSpec.from_yaml(ADULT_SPEC_PATH)
    published = refresh.published()
    assert len(published) == 5_000
    for rule in spec.rules:
        assert rule.violations(published) == 0, rule.name
    assert rules_hold(spec.rules, published).all()
    validation = json.loads(Path(str(manifest["validation_uri"]).removeprefix("file://")).read_text())
    rule_results = [r for r in validation["results"] if r.get("check") == "rule"]
    assert len(rule_results) == 3 and all(r["success"] for r in rule_results), rule_results
    privacy = [r for r in validation["results"] if r.get("check") == "privacy"]
    assert privacy and all(r["success"] for r in privacy)


def test_a_corrupted_table_fails_the_gate_listing_each_fault_and_publishes_nothing(refresh: Refresh) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    before = refresh.published()

    def corrupt(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame["hours_per_week"] = frame["hours_per_week"].astype("float64")  # a wrong dtype
        frame.loc[0, "race"] = "Martian"  # a category outside the public domain
        frame.loc[1, "education"] = None  # a NULL in a non-null column
        frame.loc[2, "relationship"], frame.loc[2, "sex"] = "Husband", "Female"  # a rule violation
        return frame

    with pytest.raises(AirflowFailException) as err:
        refresh.run("corrupt", corrupt=corrupt, enforce_privacy_thresholds=False)
    message = str(err.value)
    for needle in ("'hours_per_week'", "'race'", "'education'", "husband_is_male"):
        assert needle in message, (needle, message)
    assert "Martian" not in message and "Female" not in message  # no cell values
    pd.testing.assert_frame_equal(refresh.published(), before)  # the previous release is untouched


def test_a_generator_that_copies_rows_fails_the_privacy_gate(refresh: Refresh) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    before = refresh.published()
    rows = refresh.rows_train()
    with pytest.raises(AirflowFailException) as err:
        refresh.run("copy", generator="test_copy_rows", params={}, num_rows=rows)
    message = str(err.value)
    assert "DCR share" in message and "attack AUC" in message, message
    pd.testing.assert_frame_equal(refresh.published(), before)


def test_every_training_counts_in_the_ledger_including_gated_ones(refresh: Refresh) -> None:
    from synth_core.ledger import PrivacyLedger

    ledger = PrivacyLedger(f"sqlite:///{refresh.home / 'ledger.db'}")
    before = [e for e in ledger.entries() if e["entry_type"] == "spend"]  # every key the runs read
    with pytest.raises(Exception, match="DCR share"):
        refresh.run("copy-again", generator="test_copy_rows", params={}, num_rows=refresh.rows_train())
    after = [e for e in ledger.entries() if e["entry_type"] == "spend"]
    # a release the gate refused still accessed the data: its spend stays (a retry spends again)
    assert len(after) == len(before) + 1 and after[-1]["run_id"] == "copy-again"


def test_a_resample_only_refresh_spends_nothing_and_publishes_new_rows(refresh: Refresh) -> None:
    from synth_core.ledger import PrivacyLedger, budget_scope
    from synth_provider.operators.synthesize import (
        PublishSyntheticOperator,
        SampleSynthesizerOperator,
        ValidateSyntheticOperator,
    )

    before = refresh.published()
    ledger = PrivacyLedger(f"sqlite:///{refresh.home / 'ledger.db'}")
    scope = budget_scope(sa.create_engine(f"sqlite:///{refresh.home / 'warehouse.db'}"), table="adult")
    spent = ledger.status(scope).spent_epsilon
    assert spent > 0  # the trainings the fixture ran are charged on the key the warehouse resolves
    ctx = {"run_id": "resample-1"}
    synthetic = SampleSynthesizerOperator(
        task_id="sample", resample_of="adult", num_rows=1_234, seed=9
    ).execute(ctx)
    validation = ValidateSyntheticOperator(
        task_id="validate", staged=None, model=synthetic, synthetic=synthetic
    ).execute(ctx)
    manifest = PublishSyntheticOperator(
        task_id="publish", staged=None, model=synthetic, synthetic=synthetic, validation=validation
    ).execute(ctx)
    after = refresh.published()
    assert len(after) == 1_234 and not after.equals(before)
    assert manifest["resample_only"] and manifest["epsilon_spent_this_run"] == 0.0
    assert ledger.status(scope).spent_epsilon == spent  # nothing spent
    (entry,) = [e for e in ledger.entries() if e["run_id"] == "resample-1"]
    assert entry["entry_type"] == "resample" and entry["epsilon"] == 0.0
    assert (entry["source_table"],) == scope.keys  # recorded beside the table's spends, not by name
    # the live release's model is what was re-sampled
    latest = json.loads(
        (refresh.home / "objects" / "published" / "adult_synthetic" / "_latest.json").read_text()
    )
    assert latest["run_id"] == "resample-1" and latest["model_uri"] == synthetic["model_uri"]
