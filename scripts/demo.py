"""`make demo`: seed the embedded warehouse with UCI Adult and run the example DAG with real Airflow.

Everything lives under a project-local folder (default ``.demo/``): the Airflow home with its
SQLite metadata DB, and the dpsynth home (warehouse.db, objects/, ledger.db). Each demo starts
from a fresh dpsynth home, so the ledger does not carry spends of earlier demos.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DAG_ID = "example_synthesize_adult"


def configure_environment(demo_home: Path) -> dict[str, str]:
    """Airflow + dpsynth settings for a project-local, in-process run (set before importing Airflow)."""
    env = {
        "AIRFLOW_HOME": str(demo_home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DPSYNTH__HOME": str(demo_home / "dpsynth"),
    }
    os.environ.update(env)
    return env


def migrate_airflow_db() -> None:
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, stdout=subprocess.DEVNULL)


def seed_warehouse(dpsynth_home: Path) -> int:
    import sqlalchemy as sa

    from synth_core.datasets import seed_adult

    dpsynth_home.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(sa.URL.create("sqlite", database=str(dpsynth_home / "warehouse.db")))
    return seed_adult(engine, REPO / "data" / "adult" / "adult.data.gz")


def latest_manifest(dpsynth_home: Path) -> dict[str, object]:
    manifests = sorted(
        (dpsynth_home / "objects" / "published" / "adult").glob("*/_manifest.json"), key=os.path.getmtime
    )
    if not manifests:
        raise SystemExit("the DAG run published no manifest")
    return {**json.loads(manifests[-1].read_text()), "manifest_uri": manifests[-1].as_uri()}


def print_summary(manifest: dict[str, object], dpsynth_home: Path, seconds: float) -> None:
    from synth_core.ledger import PrivacyLedger

    # the real-data evaluation is internal: it sits beside the staged rows, not in the manifest
    evaluations = sorted(
        (dpsynth_home / "objects" / "staging").glob("*/*/evaluation.json"), key=os.path.getmtime
    )
    metrics = json.loads(evaluations[-1].read_text())["metrics"] if evaluations else {}
    assert isinstance(metrics, dict)
    status = PrivacyLedger(f"sqlite:///{dpsynth_home / 'ledger.db'}").status(str(manifest["source_table"]))

    internals = sorted(
        (dpsynth_home / "objects" / "staging").glob("*/*/internal_report.html"), key=os.path.getmtime
    )
    internal = internals[-1].as_uri() if internals else "(not written)"

    def fmt(key: str) -> str:
        value = metrics.get(key)
        return "n/a" if value is None else f"{float(value):.3f}"

    lines = [
        "",
        "=" * 78,
        f"dpsynth demo: {manifest['source_table']} -> {manifest['synthetic_table']} ({seconds:.0f} s)",
        "=" * 78,
        f"privacy    ε spent {float(manifest['epsilon']):.4f} (target {manifest['target_epsilon']}), "  # type: ignore[arg-type]
        f"δ {float(manifest['delta']):.1e}; ledger: ε {status.remaining_epsilon:.2f} "  # type: ignore[arg-type]
        f"of lifetime {status.lifetime_epsilon} left",
        f"rows       in {manifest['rows_source']} (real)  ->  out {manifest['rows']} (synthetic)",
        f"fidelity   1-way marginal TVD {fmt('tvd_1way_mean')}, 2-way TVD {fmt('tvd_2way_mean')} (0 = identical)",
        f"utility    income AUC trained on synthetic {fmt('tstr_auc')} vs on real {fmt('trtr_auc')} "
        "(tested on a real holdout)",
        f"privacy    DCR share {fmt('dcr_share')} (0.5 = no closer to training rows than to unseen rows), "
        f"NNDR {fmt('nndr_mean')}, membership-attack AUC {fmt('attack_auc')} (0.5 = chance)",
        "where",
        f"  synthetic table  {manifest['warehouse']}  table {manifest['synthetic_table']}",
        f"  parquet          {manifest['parquet_uri']}",
        f"  model bundle     {manifest['model_uri']}",
        f"  report           {manifest['report_uri']}  (shareable: real-side figures are DP)",
        f"  internal report  {internal}  (real-data evaluation: keep private)",
        f"  manifest         {manifest['manifest_uri']}",
        "=" * 78,
    ]
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, default=REPO / ".demo", help="demo folder (default: .demo)")
    parser.add_argument("--seed-only", action="store_true", help="only (re)seed the embedded warehouse")
    args = parser.parse_args(argv)
    demo_home: Path = args.home.resolve()
    dpsynth_home = demo_home / "dpsynth"
    started = time.monotonic()
    configure_environment(demo_home)
    if dpsynth_home.exists() and not args.seed_only:
        shutil.rmtree(dpsynth_home)
    rows = seed_warehouse(dpsynth_home)
    print(f"seeded {dpsynth_home / 'warehouse.db'} with table adult ({rows} rows, UCI Adult, CC BY 4.0)")
    if args.seed_only:
        return 0
    migrate_airflow_db()

    from airflow.sdk.definitions.dag import DAG  # noqa: F401  (Airflow must import after the env is set)

    sys.path.insert(0, str(REPO / "dags"))
    import example_synthesize_adult

    run = example_synthesize_adult.dag.test()
    if str(getattr(run, "state", "")) != "success":
        print(f"the DAG run ended in state {getattr(run, 'state', None)!r}", file=sys.stderr)
        return 1
    print_summary(latest_manifest(dpsynth_home), dpsynth_home, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
