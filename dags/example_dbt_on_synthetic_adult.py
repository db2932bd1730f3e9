"""A downstream team's DAG: ``dbt build`` on every new release of the synthetic Adult table.

Scheduled on the Asset alias that ``example_synthesize_postgres_s3`` publishes through,
``AssetAlias("dpsynth__adult__synthetic")`` (``synthetic_asset_alias("adult", "synthetic")``):
each publish of ``synthetic.adult`` — a weekly training refresh or a resample-only one — emits an
Asset event on it and triggers one run here. The run

1. reads the live release's pointer, ``published/synthetic.adult/_latest.json``, from the object
   store (the manifest: run id, ε, δ, the URI of the release's dbt ``sources.yml``);
2. copies the dbt project ``dags/dbt/synthetic_adult`` to a temporary folder and adds that
   ``sources.yml`` to it, so the source's columns, descriptions, ε/δ metadata and data tests are
   the release's own (a DP-discovered category domain is a warning, never an error);
3. runs ``dbt build`` (source tests, then the project's models and their tests) against the
   warehouse connection's PostgreSQL database, writing the models to the ``dbt_schema`` param's
   schema. The password reaches dbt as ``DBT_ENV_SECRET_PASSWORD``, which dbt masks in its logs.

A failing model or test fails the task without retries; a dbt crash or an unreachable warehouse is
retried. Needs the ``dbt`` extra (dbt-core and dbt-postgres 1.11) and the connections of
``example_synthesize_postgres_s3`` (``dpsynth_warehouse``, ``dpsynth_s3``, variable
``dpsynth_object_store_uri``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, AssetAlias, Param, task

from synth_provider.task_group import synthetic_asset_alias

#: the dbt project this DAG builds (copied per run: dbt writes target/ and logs/ into it)
DBT_PROJECT = Path(__file__).parent / "dbt" / "synthetic_adult"
#: the published table: source ``adult`` published into schema ``synthetic`` under its own name
SOURCE_TABLE, TARGET_SCHEMA = "adult", "synthetic"
WAREHOUSE_CONN_ID, AWS_CONN_ID = "dpsynth_warehouse", "dpsynth_s3"
OBJECT_STORE_URI = "{{ var.value.get('dpsynth_object_store_uri', 's3://dpsynth/adult') }}"


def dbt_executable() -> str:
    """The ``dbt`` beside this Python (the virtualenv's), else the first on ``PATH``."""
    import shutil
    import sys

    beside = Path(sys.executable).with_name("dbt")
    found = str(beside) if beside.exists() else shutil.which("dbt")
    if found is None:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("dbt is not installed: pip install 'airflow-provider-dpsynth[dbt]'")
    return found


@task
def dbt_build(object_store_uri: str, dbt_schema: str, triggering_asset_events: Any = None) -> dict[str, Any]:
    """``dbt build`` of :data:`DBT_PROJECT` on the live release; returns the release's run id and
    the number of dbt nodes per status (models ``success``, tests ``pass``/``warn``)."""
    import json
    import logging
    import os
    import shutil
    import subprocess
    import tempfile
    from collections import Counter

    from airflow.sdk.exceptions import AirflowFailException

    from synth_core.pipeline.layout import latest_uri
    from synth_provider.hooks.dpsynth import DPSynthHook

    log = logging.getLogger(__name__)
    for events in (triggering_asset_events or {}).values():
        for event in events:
            log.info("triggered by release %s (ε=%s)", event.extra.get("run_id"), event.extra.get("epsilon"))
    hook = DPSynthHook(
        warehouse_conn_id=WAREHOUSE_CONN_ID,
        object_store_uri=object_store_uri or None,
        aws_conn_id=AWS_CONN_ID,
    )
    store = hook.get_object_store()
    release = json.loads(store.get_bytes(latest_uri(hook.object_store_root(), SOURCE_TABLE, TARGET_SCHEMA)))
    url = hook.get_warehouse_engine().url
    if url.get_backend_name() != "postgresql":
        raise AirflowFailException(
            f"this example's dbt profile is for PostgreSQL; connection {WAREHOUSE_CONN_ID!r} is {url.get_backend_name()!r}"
        )
    profile = {
        "type": "postgres",
        "host": url.host or "localhost",
        "port": url.port or 5432,
        "user": url.username or "",
        "password": "{{ env_var('DBT_ENV_SECRET_PASSWORD', '') }}",
        "dbname": url.database or "postgres",
        "schema": dbt_schema,
        "threads": 4,
    }
    env = {
        **os.environ,
        "DBT_ENV_SECRET_PASSWORD": url.password or "",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_USE_COLORS": "false",
    }
    with tempfile.TemporaryDirectory(prefix="dbt-synthetic-adult-") as tmp:
        project = Path(tmp) / "project"
        shutil.copytree(DBT_PROJECT, project)
        (project / "models" / "dpsynth_sources.yml").write_bytes(store.get_bytes(release["sources_yml_uri"]))
        # JSON is YAML: profiles.yml without a YAML writer
        target = {"target": "synthetic", "outputs": {"synthetic": profile}}
        (project / "profiles.yml").write_text(json.dumps({"dpsynth_warehouse": target}))
        dirs = ["--project-dir", str(project), "--profiles-dir", str(project)]
        proc = subprocess.run(
            [dbt_executable(), "build", *dirs], capture_output=True, text=True, env=env, check=False
        )
        for line in (proc.stdout + proc.stderr).splitlines():
            log.info("dbt: %s", line)
        results_file = project / "target" / "run_results.json"
        results = json.loads(results_file.read_text())["results"] if results_file.exists() else []
    statuses = Counter(str(r["status"]) for r in results)
    if proc.returncode == 1:  # dbt: a model or test failed (retrying will not fix it)
        failed = sorted(str(r["unique_id"]) for r in results if r["status"] in ("error", "fail"))
        raise AirflowFailException(f"dbt build failed on release {release['run_id']}: {', '.join(failed)}")
    if proc.returncode != 0:
        raise RuntimeError(f"dbt build did not run (exit code {proc.returncode}); see the log above")
    log.info("dbt build passed on release %s: %s", release["run_id"], dict(statuses))
    return {"run_id": release["run_id"], "results": dict(statuses)}


with DAG(
    dag_id="example_dbt_on_synthetic_adult",
    schedule=[AssetAlias(synthetic_asset_alias(SOURCE_TABLE, TARGET_SCHEMA))],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["dpsynth", "example", "dbt"],
    doc_md=__doc__,
    params={"dbt_schema": Param("analytics", type="string", description="schema of the dbt models")},
) as dag:
    dbt_build(object_store_uri=OBJECT_STORE_URI, dbt_schema="{{ params.dbt_schema }}")

if __name__ == "__main__":
    dag.test()
