"""The Airflow provider: cheap imports, provider metadata, operators failing clearly on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import ADULT_SPEC_PATH, REPO

# sqlalchemy is left out: Airflow's own task SDK imports it
HEAVY = ("torch", "opacus", "pandas", "great_expectations", "numpy", "boto3", "sklearn", "scipy", "pyarrow")


def test_importing_the_provider_and_parsing_the_dag_imports_nothing_heavy() -> None:
    code = f"""
import sys, json, runpy
import synth_provider, synth_provider.task_group, synth_provider.hooks.dpsynth
import synth_provider.operators.synthesize, synth_provider.get_provider_info
ns = runpy.run_path({str(REPO / "dags" / "example_synthesize_adult.py")!r}, run_name="dag_file")
assert ns["dag"].dag_id == "example_synthesize_adult"
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [], out.stdout


def test_provider_info_matches_airflows_schema_and_entry_point() -> None:
    import importlib.metadata

    import airflow
    import jsonschema

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    eps = importlib.metadata.entry_points(group="apache_airflow_provider")
    (ep,) = [e for e in eps if e.value.startswith("synth_provider.")]
    info = ep.load()()
    jsonschema.validate(info, schema)
    assert info["package-name"] == "airflow-provider-dpsynth"


def test_the_example_dag_has_the_five_tasks_in_order() -> None:
    from airflow.sdk.definitions.dag import DAG  # noqa: F401

    sys.path.insert(0, str(REPO / "dags"))
    import example_synthesize_adult as mod

    dag = mod.dag
    ids = [t.task_id for t in dag.topological_sort()]
    assert ids == [f"synthesize_adult.{t}" for t in ("extract", "train", "sample", "validate", "publish")]
    assert str(dag.schedule) == "@weekly" or getattr(dag.timetable, "summary", "") == "@weekly"


def test_task_group_refuses_a_literal_nonpositive_epsilon_at_parse_time() -> None:
    from airflow.sdk import DAG

    from synth_provider.task_group import synthesize_table_task_group

    with (
        DAG("bad_eps", schedule=None),
        pytest.raises(ValueError, match="epsilon must be a finite number > 0"),
    ):
        synthesize_table_task_group(source_table="adult", spec=str(ADULT_SPEC_PATH), epsilon=0)


# -- operators executed for real against an embedded warehouse --------------------------------


def _warehouse(home: Path) -> sa.engine.Engine:
    return sa.create_engine(f"sqlite:///{home / 'warehouse.db'}")


def _extract(**kwargs):  # type: ignore[no-untyped-def]
    from synth_provider.operators.synthesize import ExtractTableOperator

    args = {
        "task_id": "extract",
        "source_table": "adult",
        "spec": str(ADULT_SPEC_PATH),
        "epsilon": 1.0,
        "delta": 1e-6,
        "lifetime_epsilon": 10.0,
        "lifetime_delta": 1e-5,
    }
    return ExtractTableOperator(**{**args, **kwargs})


def _staged_files(home: Path) -> list[Path]:
    return [p for p in (home / "objects").rglob("*") if p.is_file()] if (home / "objects").exists() else []


def test_missing_table_fails_naming_it_and_stages_nothing(dpsynth_home: Path) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="table 'adult' does not exist"):
        _extract().execute({"run_id": "r1"})
    assert _staged_files(dpsynth_home) == []


def test_empty_table_fails_naming_it(dpsynth_home: Path) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from synth_core.datasets import adult_table

    adult_table().create(_warehouse(dpsynth_home))
    with pytest.raises(AirflowFailException, match="table 'adult' is empty"):
        _extract().execute({"run_id": "r1"})
    assert _staged_files(dpsynth_home) == []


def test_column_type_the_spec_does_not_allow_fails_naming_the_column(dpsynth_home: Path) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from synth_core.datasets import adult_table

    cols = [
        sa.Column(c.name, sa.Text if c.name == "hours_per_week" else c.type, nullable=c.nullable)
        for c in adult_table().columns
    ]
    sa.Table("adult", sa.MetaData(), *cols).create(_warehouse(dpsynth_home))
    with pytest.raises(AirflowFailException, match="column 'hours_per_week': the spec declares integer"):
        _extract().execute({"run_id": "r1"})


@pytest.mark.parametrize("eps", [0, -1.0])
def test_nonpositive_epsilon_fails_naming_the_parameter(dpsynth_home: Path, eps: float) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from synth_provider.operators.synthesize import TrainSynthesizerOperator

    with pytest.raises(AirflowFailException, match=r"epsilon must be a finite number > 0"):
        _extract(epsilon=eps).execute({"run_id": "r1"})
    staged = {"source_table": "adult", "spec_uri": "file:///nonexistent", "train_uri": "file:///nonexistent"}
    with pytest.raises(AirflowFailException, match=r"epsilon must be a finite number > 0"):
        TrainSynthesizerOperator(task_id="train", staged=staged, epsilon=eps).execute({"run_id": "r1"})
    assert not (dpsynth_home / "ledger.db").exists() or _no_spend(dpsynth_home)


def _no_spend(home: Path) -> bool:
    from synth_core.ledger import PrivacyLedger

    ledger = PrivacyLedger(f"sqlite:///{home / 'ledger.db'}")
    return all(ledger.status(key).spent_epsilon == 0.0 for key in ledger.keys())  # noqa: SIM118 (every key)


def test_exhausted_budget_fails_before_reading_data(dpsynth_home: Path, adult_frame) -> None:  # type: ignore[no-untyped-def]
    from airflow.sdk.exceptions import AirflowFailException

    from synth_core.datasets import adult_table, write_frame_to_table
    from synth_core.ledger import PrivacyLedger

    write_frame_to_table(_warehouse(dpsynth_home), adult_frame.head(100), adult_table())
    ledger = PrivacyLedger(f"sqlite:///{dpsynth_home / 'ledger.db'}")
    ledger.grant("adult", 2.0, 1e-5)
    with pytest.raises(AirflowFailException) as err:
        _extract(epsilon=3.0).execute({"run_id": "r1"})
    message = str(err.value)
    # the plain name's grant carried over to the key of what is read: the warehouse's main.adult
    assert "main.adult'" in message and "remaining epsilon 2" in message and "requests epsilon 3" in message
    assert _staged_files(dpsynth_home) == []


@pytest.mark.slow
def test_a_source_query_runs_the_whole_refresh(dpsynth_home: Path, adult_frame) -> None:  # type: ignore[no-untyped-def]
    from synth_core.datasets import adult_table, write_frame_to_table
    from synth_provider.operators.synthesize import (
        ExtractTableOperator,
        PublishSyntheticOperator,
        SampleSynthesizerOperator,
        TrainSynthesizerOperator,
        ValidateSyntheticOperator,
    )

    engine = _warehouse(dpsynth_home)
    write_frame_to_table(engine, adult_frame.head(3_000), adult_table())
    ctx = {"run_id": "query-run"}
    staged = ExtractTableOperator(
        task_id="extract", source_table="adult", spec=str(ADULT_SPEC_PATH),
        source_query="SELECT * FROM adult WHERE hours_per_week >= 40",
    ).execute(ctx)  # fmt: skip
    assert staged["source_is_query"] and "rows_total" not in staged  # exact sizes stay in staging/
    from synth_core.object_store import ObjectStore, join_uri

    sizes = json.loads(ObjectStore().get_bytes(join_uri(staged["staging_uri"], "split_sizes.json")))
    assert sizes["rows_total"] == int((adult_frame.head(3_000).hours_per_week >= 40).sum())
    model = TrainSynthesizerOperator(
        task_id="train", staged=staged, epsilon=3.0, lifetime_epsilon=10.0,
        generator_params={"epochs": 1, "hidden": [32]},
    ).execute(ctx)  # fmt: skip
    synthetic = SampleSynthesizerOperator(task_id="sample", model=model, num_rows=777).execute(ctx)
    validation = ValidateSyntheticOperator(
        task_id="validate", staged=staged, model=model, synthetic=synthetic, compute_metrics=False,
        enforce_privacy_thresholds=False, null_rate_tolerance=1.0,  # a 1-epoch model: not the point here
    ).execute(ctx)  # fmt: skip
    manifest = PublishSyntheticOperator(
        task_id="publish", staged=staged, model=model, synthetic=synthetic, validation=validation
    ).execute(ctx)
    assert manifest["rows"] == 777
    cols = {c["name"]: str(c["type"]) for c in sa.inspect(engine).get_columns("adult_synthetic")}
    assert cols["age"] == "BIGINT" and cols["workclass"] == "TEXT"  # generic types from the spec
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM adult_synthetic").scalar_one() == 777
