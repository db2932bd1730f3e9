"""The ``dpsynth`` command line, run as a real subprocess against real components.

An embedded SQLite warehouse seeded with UCI Adult (trimmed to 4,000 rows so that a one-epoch DP
fit stays cheap on a busy 2-core machine), a temporary dpsynth home with its SQLite ledger and
``file://`` object store, the real spec ``dags/specs/adult.yaml``, real DP-SGD training, real Great
Expectations. The end-to-end flow and every exit code go through ``python -m synth_core.cli``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import ADULT_PATH, ADULT_SPEC_PATH

from synth_core import cli

TRIMMED_ROWS = 4_000


def seed_warehouse(home: Path, *, rows: int | None = TRIMMED_ROWS) -> sa.engine.Engine:
    from synth_core.datasets import seed_adult

    home.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(f"sqlite:///{home / 'warehouse.db'}")
    seed_adult(engine, ADULT_PATH)
    if rows is not None:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DELETE FROM adult WHERE rowid > {int(rows)}")
    return engine


def dpsynth(home: Path, *args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m synth_core.cli ARGS`` with ``home`` as DPSYNTH_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPSYNTH_")}
    env.update(DPSYNTH_HOME=str(home), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "synth_core.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=home,
        timeout=timeout,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int) -> str:
    """Exit ``code``, a single stderr line, no traceback; returns the line."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dpsynth"), lines[0]
    return lines[0]


# -- cheap checks ----------------------------------------------------------------------------------

SUBCOMMANDS: list[list[str]] = [
    [],
    ["spec"],
    ["spec", "infer"],
    ["train"],
    ["sample"],
    ["validate"],
    ["publish"],
    ["report"],
    ["ledger"],
    ["ledger", "show"],
    ["ledger", "grant"],
]


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=lambda w: " ".join(w) or "dpsynth")
def test_every_subcommand_has_help_with_examples_and_exit_codes(
    words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([*words, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: dpsynth"), out[:200]
    assert "examples:" in out and "  dpsynth " in out
    assert "exit codes:" in out and "3    privacy budget exhausted" in out


def test_help_runs_as_a_module_without_loading_heavy_libraries(tmp_path: Path) -> None:
    proc = dpsynth(tmp_path, "--help")
    assert proc.returncode == 0 and "exit codes:" in proc.stdout, proc.stderr
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, synth_core.cli as c; c.build_parser(); "
            "print(sorted(m for m in ('torch', 'pandas', 'great_expectations', 'airflow') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[]", probe.stdout  # and synth_core never imports Airflow


@pytest.mark.parametrize("before", [True, False], ids=["before-command", "after-command"])
def test_global_options_work_before_or_after_the_subcommand(
    before: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DPSYNTH_HOME", str(tmp_path / "not-this-one"))
    home = ["--home", str(tmp_path / "home")]
    words = ["ledger", "show", "--json"]
    assert cli.main([*home, *words] if before else [*words, *home]) == 0
    assert json.loads(capsys.readouterr().out)["ledger"] == f"sqlite:///{tmp_path / 'home' / 'ledger.db'}"


def test_param_values_are_yaml_typed() -> None:
    assert cli._param("epochs=3") == ("epochs", 3)
    assert cli._param("hidden=[64, 64]") == ("hidden", [64, 64])
    assert cli._param("device=cpu") == ("device", "cpu")
    assert cli._param("learning_rate=1e-3") == ("learning_rate", 1e-3)
    for bad in ("epochs", "=3", "bad key=1"):
        with pytest.raises(Exception, match="key=value"):
            cli._param(bad)


def test_exit_codes_map_dpsynth_errors() -> None:
    from synth_core import errors
    from synth_core.rules import RuleUnsatisfiableError

    assert cli.exit_code_for(errors.ParameterError("x")) == 2
    assert cli.exit_code_for(errors.BudgetExceededError("x")) == 3
    assert cli.exit_code_for(errors.ValidationFailedError("x")) == 4
    assert cli.exit_code_for(RuleUnsatisfiableError("x")) == 4
    for exc in (errors.SpecError("x"), errors.SourceTableError("x"), errors.BundleError("x")):
        assert cli.exit_code_for(exc) == 5
    assert cli.exit_code_for(RuntimeError("x")) == 1
    assert cli.exit_code_for(KeyboardInterrupt()) == 130
    # a third-party message may quote a cell value: only its type is shown
    assert "secret-cell" not in cli.error_message(ValueError("could not convert 'secret-cell'"))


def test_validate_publish_and_report_read_bundles_without_torch() -> None:
    """Bundle metadata (spec, DP transformer state, privacy) is read without importing torch."""
    code = (
        "import sys, synth_core.bundle, synth_core.release, synth_core.transformer; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- spec infer ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dpsynth home whose embedded warehouse holds (trimmed) Adult; read-only for its users."""
    home = tmp_path_factory.mktemp("dpsynth-cli-seeded")
    seed_warehouse(home)
    return home


def test_spec_infer_round_trips_into_a_valid_table_spec(seeded_home: Path, tmp_path: Path) -> None:
    from synth_core.datasets import ADULT_COLUMNS, ADULT_INTEGER_COLUMNS
    from synth_core.spec import ColumnKind, TableSpec

    out = tmp_path / "adult.yaml"
    proc = dpsynth(seeded_home, "spec", "infer", "--table", "adult", "--target", "income", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "nothing is declared public" in proc.stderr
    spec = TableSpec.from_yaml(out)
    assert spec.name == "adult" and spec.target == "income"
    assert spec.column_names == ADULT_COLUMNS
    for col in spec.columns:
        expected = ColumnKind.INTEGER if col.name in ADULT_INTEGER_COLUMNS else ColumnKind.CATEGORICAL
        assert col.kind == expected, col
        assert col.bounds is None and col.categories is None and col.datetime_range is None  # nothing public
    assert [c.name for c in spec.columns if c.nullable] == ["workclass", "occupation", "native_country"]
    assert out.read_text().startswith("# TableSpec of table 'adult'")

    # stdout, with an id column; an existing file is not overwritten without --force
    proc = dpsynth(seeded_home, "spec", "infer", "--table", "adult", "--id-column", "fnlwgt")
    assert proc.returncode == 0, proc.stderr
    assert TableSpec.from_yaml(proc.stdout).column("fnlwgt").kind == ColumnKind.ID
    assert_one_line_error(dpsynth(seeded_home, "spec", "infer", "--table", "adult", "-o", out), 2)


# -- bad arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["train", "--spec", ADULT_SPEC_PATH, "--epsilon", "0", "--model", "m.zip"], 2, "epsilon must be"),
        (["train", "--spec", ADULT_SPEC_PATH, "--epsilon", "1", "--delta", "2", "--model", "m.zip"], 2, "delta"),
        (["train", "--spec", ADULT_SPEC_PATH, "--epsilon", "1", "--param", "epochs", "--model", "m"], 2, "key=value"),
        (["train", "--epsilon", "1"], 2, "required: --spec, --model"),
        (["train", "--spec", "missing.yaml", "--epsilon", "1", "--model", "m.zip"], 5, "spec file not found"),
        (["spec", "infer", "--table", "no_such_table"], 5, "'no_such_table' does not exist"),
        (["sample", "--model", "no_model.zip", "-o", "s.parquet"], 2, "model bundle not found"),
        (["ledger", "grant", "--table", "adult", "--epsilon", "-1", "--delta", "1e-5"], 2, "lifetime_epsilon"),
        (["frobnicate"], 2, "invalid choice"),
    ],
    ids=["epsilon-0", "delta-2", "param-no-value", "missing-args", "missing-spec", "missing-table",
         "missing-model", "negative-grant", "unknown-command"],
)  # fmt: skip
def test_bad_arguments_exit_with_a_one_line_reason(
    seeded_home: Path, args: Sequence[str | Path], code: int, says: str
) -> None:
    line = assert_one_line_error(dpsynth(seeded_home, *args), code)
    assert says in line, line


def test_train_without_a_grant_is_refused_before_reading(seeded_home: Path, tmp_path: Path) -> None:
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    proc = dpsynth(
        seeded_home, "train", "--spec", ADULT_SPEC_PATH, "--epsilon", "1", "--ledger", ledger,
        "--model", tmp_path / "m.zip", "--staging", tmp_path / "staging",
    )  # fmt: skip
    line = assert_one_line_error(proc, 3)
    # the ledger keys what a run reads: the warehouse's main.adult, not the spec's name
    assert "main.adult' has no lifetime privacy budget" in line and "dpsynth ledger grant" in line
    assert not (tmp_path / "staging").exists() and not (tmp_path / "m.zip").exists()


@pytest.mark.slow
def test_a_run_that_reads_no_row_releases_its_reservation(tmp_path: Path) -> None:
    """An empty table: the reservation is taken, nothing is read, the reservation is released."""
    from synth_core.datasets import adult_table
    from synth_core.ledger import PrivacyLedger, budget_scope

    home = tmp_path / "home"
    home.mkdir()
    adult_table().create(sa.create_engine(f"sqlite:///{home / 'warehouse.db'}"))
    proc = dpsynth(
        home, "train", "--quiet", "--spec", ADULT_SPEC_PATH, "--epsilon", "1", "--lifetime-epsilon", "10",
        "--param", "epochs=1", "--model", tmp_path / "m.zip",
    )  # fmt: skip
    assert "'adult' is empty" in assert_one_line_error(proc, 5)
    ledger = PrivacyLedger(f"sqlite:///{home / 'ledger.db'}")
    scope = budget_scope(sa.create_engine(f"sqlite:///{home / 'warehouse.db'}"), table="adult")
    assert [e["entry_type"] for e in ledger.entries(scope)] == ["grant", "reserve", "release"]
    assert ledger.status(scope).spent_epsilon == 0.0
    assert not (tmp_path / "m.zip").exists()


# -- the end-to-end flow ---------------------------------------------------------------------------


@pytest.mark.slow
def test_train_sample_validate_publish_on_the_embedded_default(tmp_path: Path) -> None:
    home = tmp_path / "home"
    engine = seed_warehouse(home)
    model, synthetic = tmp_path / "adult.dpsynth.zip", tmp_path / "adult_synth.parquet"

    # the table's lifetime budget, then one DP training run (1 epoch: the point is the flow)
    proc = dpsynth(home, "ledger", "grant", "--table", "adult", "--epsilon", "5", "--delta", "1e-5")
    assert proc.returncode == 0 and "lifetime ε 5" in proc.stdout, proc.stderr
    proc = dpsynth(
        home, "train", "--spec", ADULT_SPEC_PATH, "--epsilon", "3", "--param", "epochs=1", "--seed", "1",
        "--holdout-fraction", "0.5", "--model", model,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # DP-SGD's steps follow the DP row count, so the spend lands at or just under the target
    spent = re.search(r"ε spent (\d\.\d{4}) \(target 3\)", proc.stdout)
    assert spent and 2.9 <= float(spent.group(1)) <= 3.0, proc.stdout
    assert re.search(r"ε 2(\.\d+)? of lifetime 5 left", proc.stdout), proc.stdout
    assert "epoch 1/1" in proc.stderr  # the trainer's progress callback reached the CLI
    manifest = json.loads(Path(f"{model}{cli.TRAIN_MANIFEST_SUFFIX}").read_text())
    assert "rows_total" not in manifest and manifest["epsilon"] <= 3.0  # exact counts stay in staging
    staging = Path(manifest["staging_uri"].removeprefix("file://"))
    assert staging.is_relative_to(home / "objects" / "staging" / "adult")
    assert {p.name for p in staging.iterdir()} == {
        "train.parquet",
        "holdout.parquet",
        "spec.yaml",
        "split_sizes.json",
    }

    # sampling is post-processing
    proc = dpsynth(home, "sample", "--model", model, "--rows", "1500", "--seed", "1", "-o", synthetic)
    assert proc.returncode == 0 and "no budget spent" in proc.stdout, proc.stderr

    # the gate, with privacy thresholds on the real holdout. Relaxed: a 1-epoch model misses the DP
    # NULL rates, and with ~2,000 reference rows the DCR share of a non-memorising model still
    # varies by a few hundredths with the (secret) split, around the default 0.52
    report = tmp_path / "report.html"
    proc = dpsynth(
        home, "validate", "--model", model, "--synthetic", synthetic, "--null-rate-tolerance", "1",
        "--max-dcr-share", "0.6", "--report", report,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    record = json.loads(Path(f"{synthetic}{cli.VALIDATION_SUFFIX}").read_text())
    assert record["success"] and record["privacy_thresholds_checked"] and record["rows"] == 1500
    privacy = [r for r in record["results"] if r["check"] == "privacy"]
    assert {r["metric"] for r in privacy} == {"dcr_share", "nndr_mean", "attack_auc", "epsilon"}
    # the record is shareable: pass/fail and thresholds; the observed real-data metrics stay in staging
    assert not any("observed" in r or "summary" in r for r in privacy) and "metrics" not in record
    evaluation = json.loads((staging / "evaluation.json").read_text())
    assert set(evaluation["metrics"]) >= {"dcr_share", "attack_auc"}
    assert "dpsynth release report" in report.read_text()

    # publish: the synthetic table with the requested row count, comments, release log, manifest
    proc = dpsynth(home, "publish", "--model", model, "--synthetic", synthetic)
    assert proc.returncode == 0, proc.stderr
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM adult_synthetic").scalar_one() == 1500
        releases = conn.exec_driver_sql("SELECT source_table, row_count FROM dpsynth_releases").all()
    assert [tuple(r) for r in releases] == [("adult", 1500)]
    # the live pointer is keyed by the published table; no exact source count leaves staging
    latest = json.loads((home / "objects" / "published" / "adult_synthetic" / "_latest.json").read_text())
    assert latest["rows"] == 1500 and latest["synthetic_table"] == "adult_synthetic"
    assert "rows_source" not in latest and latest["epsilon"] == manifest["epsilon"]
    assert "one row" in latest["neighbouring_relation"]
    assert Path(latest["parquet_uri"].removeprefix("file://")).is_file()

    # the ledger lists the spend
    proc = dpsynth(home, "ledger", "show", "--table", "adult", "--json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    # ("carry": the ledger's one-time mark that the plain name's history was carried over)
    assert [e["entry_type"] for e in shown["entries"] if e["entry_type"] != "carry"] == [
        "grant",
        "reserve",
        "spend",
    ]
    spend = shown["entries"][-1]
    assert spend["epsilon"] == pytest.approx(manifest["epsilon"]) and spend["run_id"] == manifest["run_id"]
    (status,) = shown["tables"]
    assert status["remaining_epsilon"] == pytest.approx(5 - manifest["epsilon"])

    # a second run past the lifetime budget: exit 3 naming the table, remaining and requested ε
    proc = dpsynth(home, "train", "--spec", ADULT_SPEC_PATH, "--epsilon", "3", "--model", tmp_path / "m2.zip")
    line = assert_one_line_error(proc, 3)
    assert (
        "main.adult'" in line
        and "remaining epsilon 2" in line
        and "of lifetime 5" in line
        and "requests epsilon 3" in line
    )
    shown_after = json.loads(dpsynth(home, "ledger", "show", "--json").stdout)
    assert len(shown_after["entries"]) == len(shown["entries"])  # refused before any reservation

    # a synthetic file that breaks the gate: exit 4, failures one per line, no cell value anywhere
    import pandas as pd

    bad = tmp_path / "bad.parquet"
    frame = pd.read_parquet(synthetic)
    frame.loc[:49, "sex"] = "SECRET-CELL-VALUE"
    frame.to_parquet(bad, index=False)
    proc = dpsynth(home, "publish", "--model", model, "--synthetic", bad)  # never validated
    assert "no validation record" in assert_one_line_error(proc, 4)
    proc = dpsynth(home, "validate", "--model", model, "--synthetic", bad, "--no-metrics")
    assert proc.returncode == 4, proc.stderr
    failures = [line for line in proc.stderr.splitlines() if line.startswith("FAILED: ")]
    assert any("column 'sex'" in line and "50 of 1,500" in line for line in failures), proc.stderr
    assert "SECRET-CELL-VALUE" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    proc = dpsynth(home, "publish", "--model", model, "--synthetic", bad)
    assert "did not pass validation" in assert_one_line_error(proc, 4)
    with engine.connect() as conn:  # the live table is untouched
        assert conn.exec_driver_sql("SELECT count(*) FROM adult_synthetic").scalar_one() == 1500

    # a forged record (success: true, the right digests, no valid signature) publishes nothing —
    # here the staged REAL rows, which a forger would put live as "synthetic"
    import hashlib

    real = Path(manifest["train_uri"].removeprefix("file://"))
    record = json.loads(Path(f"{synthetic}{cli.VALIDATION_SUFFIX}").read_text())
    forged = {**record, "success": True, "synthetic_uri": real.as_uri(), "rows": len(pd.read_parquet(real)),
              "synthetic_sha256": hashlib.sha256(real.read_bytes()).hexdigest()}  # fmt: skip
    Path(f"{real}{cli.VALIDATION_SUFFIX}").write_text(json.dumps(forged))
    proc = dpsynth(home, "publish", "--model", model, "--synthetic", real, "--table-name", "leaked")
    assert "not written by this dpsynth installation" in assert_one_line_error(proc, 4)
    # a target name the identifier rule refuses: exit 2 before any side effect (no table, no release row)
    proc = dpsynth(
        home, "publish", "--model", model, "--synthetic", synthetic, "--table-name", "x; DROP TABLE adult"
    )
    assert "target_table" in assert_one_line_error(proc, 2)
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        assert "leaked" not in tables and "adult" in tables
        assert conn.exec_driver_sql("SELECT count(*) FROM dpsynth_releases").scalar_one() == 1
