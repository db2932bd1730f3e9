"""Training and sampling in Kubernetes pods: the trainer entrypoint run for real, in-process, on
staged Adult rows; the pod spec the operators build (no cluster here); their XCom handling fed
with the entrypoint's own return.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from pod_helpers import TINY_TVAE, stage_adult

SECRET_VALUE = "wJalrXUtnFEMI-K7MDENG-do-not-leak"
ROOT = "s3://dpsynth-bucket/prod"


class _TI:
    """The bits of a TaskInstance the operators use (XCom push/pull, ids)."""

    dag_id = "example_synthesize_on_gpu_pod"
    task_id = "train"
    map_index = -1
    try_number = 1

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value", **_: Any) -> Any:
        return self.xcom.get(key)


def _context(run_id: str = "manual__2026-01-01") -> dict[str, Any]:
    from types import SimpleNamespace

    return {"run_id": run_id, "ti": _TI(), "dag": SimpleNamespace(dag_id="example_synthesize_on_gpu_pod")}


def _staged() -> dict[str, Any]:
    return {
        "source_table": "adult", "train_uri": f"{ROOT}/staging/adult/r1/train.parquet",
        "spec_uri": f"{ROOT}/staging/adult/r1/spec.yaml", "holdout_fraction": 0.2, "rows_train": 26000,
    }  # fmt: skip


def _train_op(**kwargs: Any) -> Any:
    from synth_provider.operators.kubernetes import TrainSynthesizerPodOperator

    args: dict[str, Any] = {
        "task_id": "train", "staged": _staged(), "epsilon": 3.0, "generator_params": {"epochs": 15},
        "object_store_uri": ROOT, "namespace": "dpsynth", "s3_endpoint_url": "https://s3.example.internal",
    }  # fmt: skip
    return TrainSynthesizerPodOperator(**{**args, **kwargs})


def _pod_text(pod: Any) -> str:
    from kubernetes.client import ApiClient

    return json.dumps(ApiClient().sanitize_for_serialization(pod))


# -- the pod spec ----------------------------------------------------------------------------------


def test_the_train_pod_requests_a_gpu_on_a_tainted_gpu_node_with_credentials_from_a_secret() -> None:
    op = _train_op()
    pod = op.build_pod_request_obj(_context(), dry_run=True)
    (container,) = [c for c in pod.spec.containers if c.name == "base"]
    # one GPU, requested and limited
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert container.resources.requests["nvidia.com/gpu"] == "1"
    # placed on a GPU node: node selector and the GPU taint's toleration
    assert pod.spec.node_selector == {"nvidia.com/gpu.present": "true"}
    assert any(
        t.key == "nvidia.com/gpu" and t.operator == "Exists" and t.effect == "NoSchedule"
        for t in pod.spec.tolerations
    )
    # credentials: the secret's keys become env vars through a secretRef, by name only
    refs = [e.secret_ref.name for e in container.env_from or [] if e.secret_ref is not None]
    assert refs == ["dpsynth-object-store"]
    env = {e.name: e.value for e in container.env or []}
    assert env["DPSYNTH_S3_ENDPOINT_URL"] == "https://s3.example.internal"
    assert not [k for k in env if "SECRET" in k or "ACCESS_KEY" in k or "PASSWORD" in k]
    # the entrypoint and its job: references only
    assert container.command == ["dpsynth-train"]
    assert container.args[0] == "--job-json"
    job = json.loads(container.args[1])
    from synth_core.pipeline.jobs import TrainJob

    assert TrainJob.from_mapping(job).to_dict() == job  # the pod's job is TrainJob.to_dict()
    assert job["train_uri"] == f"{ROOT}/staging/adult/r1/train.parquet"
    assert job["model_uri"] == f"{ROOT}/models/adult/manual__2026-01-01/model.dpsynth.zip"
    assert job["epsilon"] == 3.0 and job["generator"] == "dp_tvae"
    assert job["generator_params"] == {"epochs": 15, "device": "cuda"}
    # GPU node pools scale from zero: generous waits; failed pods kept for inspection
    assert op.startup_timeout_seconds >= 1200 and op.schedule_timeout_seconds >= 1200
    assert op.on_finish_action.value == "delete_succeeded_pod"
    assert op.do_xcom_push is True
    assert any(c.name == "airflow-xcom-sidecar" for c in pod.spec.containers)


def test_no_secret_value_reaches_the_pod_spec_and_credential_env_vars_are_refused() -> None:
    from airflow.providers.cncf.kubernetes.secret import Secret

    op = _train_op(secrets=[Secret("volume", "/var/run/secrets/gcs", "gcs-sa-key")])
    text = _pod_text(op.build_pod_request_obj(_context(), dry_run=True))
    assert SECRET_VALUE not in text
    assert '"secretName": "gcs-sa-key"' in text and '"name": "dpsynth-object-store"' in text
    with pytest.raises(ValueError, match="look like credentials"):
        _train_op(env_vars={"AWS_SECRET_ACCESS_KEY": SECRET_VALUE})


def test_multi_gpu_pods_train_with_one_worker_per_gpu_and_deferrable_is_supported() -> None:
    op = _train_op(gpus=4, deferrable=True)
    pod = op.build_pod_request_obj(_context(), dry_run=True)
    (container,) = [c for c in pod.spec.containers if c.name == "base"]
    assert container.resources.limits["nvidia.com/gpu"] == "4"
    assert container.args[-2:] == ["--nproc-per-node", "4"]
    assert op.deferrable is True


def test_sample_pods_run_on_cpu_nodes_by_default_and_a_local_store_is_refused(dpsynth_home: Path) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from synth_provider.operators.kubernetes import SampleSynthesizerPodOperator

    model = {
        "model_uri": f"{ROOT}/models/adult/r1/model.dpsynth.zip",
        "source_table": "adult",
        "dp_source_rows": 9,
    }
    op = SampleSynthesizerPodOperator(
        task_id="sample", model=model, num_rows=1000, seed=3, object_store_uri=ROOT
    )
    pod = op.build_pod_request_obj(_context(), dry_run=True)
    (container,) = [c for c in pod.spec.containers if c.name == "base"]
    assert "nvidia.com/gpu" not in (container.resources.limits or {})
    assert not pod.spec.node_selector and not pod.spec.tolerations
    assert json.loads(container.args[1]) == {
        "model_uri": model["model_uri"], "rows": 1000, "seed": 3,
        "output_uri": f"{ROOT}/synthetic/adult/manual__2026-01-01/part-00000.parquet",
    }  # fmt: skip
    local = SampleSynthesizerPodOperator(task_id="s2", model=model)  # the embedded file:// store
    with pytest.raises(AirflowFailException, match="cannot reach"):
        local.build_pod_request_obj(_context(), dry_run=True)
    # a shard planned to load a warehouse staging table: pods hold no warehouse credentials
    from synth_core.errors import ParameterError

    shard = {"index": 0, "count": 2, "row_start": 0, "rows": 5, "seed": 1, "model_uri": model["model_uri"],
             "output_prefix": f"{ROOT}/synthetic/adult/r1/shards", "staging_table": "adult__dpsynth_shard_x_00000"}  # fmt: skip
    staged_pod = SampleSynthesizerPodOperator(task_id="s3", shard=shard, object_store_uri=ROOT)
    with pytest.raises(ParameterError, match="cannot be sampled in pods"):
        staged_pod.build_pod_request_obj(_context(), dry_run=True)


# -- the entrypoint, for real, and the operators' XCom handling of its return.json -------------------


@pytest.mark.slow
def test_entrypoint_trains_and_samples_from_staged_parquet_and_the_operators_xcom_matches(
    tmp_path: Path, dpsynth_home: Path, adult_frame: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from synth_core.ledger import PrivacyLedger
    from synth_core.object_store import ObjectStore
    from synth_core.pod_entrypoint import main
    from synth_provider.operators.kubernetes import (
        SampleSynthesizerPodOperator,
        TrainSynthesizerPodOperator,
    )
    from synth_provider.operators.synthesize import SampleSynthesizerOperator

    torch.set_num_threads(1)
    root = tmp_path / "objects"
    staged = stage_adult(adult_frame, root, rows=2_000)
    model_uri = (root / "models" / "adult" / "r1" / "model.dpsynth.zip").as_uri()
    job = tmp_path / "job.json"
    job.write_text(
        json.dumps({"staged": staged, "epsilon": 2.0, "generator": "dp_tvae", "generator_params": TINY_TVAE})
    )
    train_xcom = tmp_path / "airflow" / "xcom" / "return.json"

    # train: the job file plus arguments (the model URI) -> bundle in the store, manifest on disk
    assert (
        main(
            "train",
            ["--job", str(job), "--model-uri", model_uri, "--delta", "1e-6", "--xcom-path", str(train_xcom)],
        )
        == 0
    )
    returned = json.loads(train_xcom.read_text())
    assert returned["model_uri"] == model_uri and ObjectStore().exists(model_uri)
    assert returned["source_table"] == "adult" and "rows_trained" not in returned  # no exact count leaves
    assert 0 < returned["epsilon"] <= 2.0 and returned["delta"] <= 1e-6 + 1e-12
    assert returned["training"]["world_size"] == 1 and returned["training"]["steps"] > 0
    assert returned["dp_source_rows"] > 0
    text = train_xcom.read_text()
    assert not any(str(v) in text for v in adult_frame["native_country"].unique() if len(str(v)) > 6)

    # the train operator's XCom handling of that very return.json: ledger settled, manifest passed on
    ledger = PrivacyLedger(f"sqlite:///{dpsynth_home / 'ledger.db'}")
    ledger.grant("adult", 10.0, 1e-5)
    op = TrainSynthesizerPodOperator(
        task_id="train", staged=staged, epsilon=2.0, object_store_uri=root.as_uri()
    )  # fmt: skip
    context = _context()
    reservation = op._reserve(context)
    assert context["ti"].xcom["dpsynth_reservation_id"] == reservation
    xcom = op.complete(context, json.loads(train_xcom.read_text()), reservation)
    assert xcom == {**returned, "reservation_id": reservation}
    status = ledger.status("adult")
    assert status.spent_epsilon == pytest.approx(returned["epsilon"])

    # downstream, the regular sample operator takes the pod's XCom as its model manifest
    monkeypatch.setenv("AIRFLOW__DPSYNTH__OBJECT_STORE_URI", root.as_uri())
    sampled = SampleSynthesizerOperator(task_id="sample", model=xcom, num_rows=300, seed=1).execute(
        _context()
    )
    assert sampled["rows"] == 300 and sampled["model_uri"] == model_uri

    # sample: the entrypoint again, and the sample pod operator's handling of its return.json
    sample_xcom = tmp_path / "sample.json"
    out_uri = (root / "synthetic" / "adult" / "r1" / "part-00000.parquet").as_uri()
    assert main("sample", ["--model-uri", model_uri, "--rows", "500", "--seed", "4", "--output-uri", out_uri,
                           "--xcom-path", str(sample_xcom)]) == 0  # fmt: skip
    sample_manifest = json.loads(sample_xcom.read_text())
    frame = ObjectStore().read_parquet(out_uri)
    assert len(frame) == 500 and list(frame.columns) == list(adult_frame.columns)
    assert sample_manifest["rows"] == 500 and sample_manifest["epsilon_spent"] == 0.0
    sop = SampleSynthesizerPodOperator(task_id="sample", model=xcom, object_store_uri=ROOT)
    assert sop.complete(_context(), sample_manifest) == sample_manifest

    # a pod that wrote no manifest: the train task fails and its reservation is charged in full
    from airflow.sdk.exceptions import AirflowFailException

    second = op._reserve(_context())
    with pytest.raises(AirflowFailException, match="returned no manifest"):
        op.complete(_context(), None, second)
    assert ledger.status("adult").spent_epsilon == pytest.approx(returned["epsilon"] + 2.0)


def test_entrypoint_errors_are_one_line_with_the_cli_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from synth_core.pod_entrypoint import main

    assert main("train", ["--xcom-path", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "the job lacks" in err and all(k in err for k in ("epsilon", "train_uri", "model_uri"))
    missing = (tmp_path / "nope.zip").as_uri()
    assert main("sample", ["--model-uri", missing, "--rows", "5", "--output-uri", missing]) != 0
    assert not (tmp_path / "x.json").exists()


def test_the_gpu_pod_dag_parses_and_importing_it_loads_nothing_heavy() -> None:
    import subprocess

    heavy = (
        "torch",
        "opacus",
        "pandas",
        "great_expectations",
        "numpy",
        "boto3",
        "sklearn",
        "scipy",
        "pyarrow",
    )
    code = f"""
import sys, json, runpy
ns = runpy.run_path({str(REPO / "dags" / "example_synthesize_on_gpu_pod.py")!r}, run_name="dag_file")
dag = ns["dag"]
print(json.dumps({{"heavy": sorted(m for m in {heavy!r} if m in sys.modules),
                  "tasks": [t.task_id for t in dag.topological_sort()]}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["tasks"][:2] == ["synthesize_adult_on_gpu.extract", "synthesize_adult_on_gpu.train"]
    assert "synthesize_adult_on_gpu.publish" in result["tasks"]


def test_a_deferred_train_pod_keeps_its_reservation_across_the_trigger_and_settles_on_resume(
    dpsynth_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deferrable=True: the task defers with KubernetesPodOperator's real trigger (built here from
    the pod spec; only the cluster calls are replaced: creating the pod, and reading its
    return.json on resume), the reservation survives in XCom, and the resumed task settles it from
    the manifest; a pod that failed while the task was deferred charges it in full."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

    from synth_core.ledger import PrivacyLedger

    ledger = PrivacyLedger(f"sqlite:///{dpsynth_home / 'ledger.db'}")
    ledger.grant("adult", 10.0, 1e-5)
    # a kubeconfig naming an API server that is never contacted (the operator reads the config
    # while building the pod; creating the pod and reading its result are replaced below)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "gpu",
        "clusters": [{"name": "gpu", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "airflow", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "gpu", "context": {"cluster": "gpu", "user": "airflow"}}],
    }))  # fmt: skip
    pod_args = {"deferrable": True, "kubernetes_conn_id": None, "config_file": str(kubeconfig)}

    def create_pod_then_defer(self: Any, context: Any) -> Any:  # KPO.execute without a cluster
        self.pod = self.pod_request_obj  # the pod the API server would have created
        self.invoke_defer_method(context=context)  # KPO's own deferral: its trigger, its method

    monkeypatch.setattr(KubernetesPodOperator, "execute", create_pod_then_defer)
    context = _context()
    with pytest.raises(TaskDeferred) as deferred:
        _train_op(**pod_args).execute(context)
    classpath, kwargs = deferred.value.trigger.serialize()  # what the triggerer stores
    assert classpath.endswith("KubernetesPodTrigger") and deferred.value.method_name == "trigger_reentry"
    assert kwargs["pod_namespace"] == "dpsynth" and kwargs["pod_name"].startswith("train")
    reservation = context["ti"].xcom["dpsynth_reservation_id"]
    # deferred: the reservation is open (it counts as spent) and nothing was settled or charged
    assert [e["entry_type"] for e in ledger.entries("adult")] == ["grant", "reserve"]
    assert ledger.status("adult").spent_epsilon == pytest.approx(3.0)

    manifest = {
        "model_uri": f"{ROOT}/models/adult/r1/model.dpsynth.zip", "source_table": "adult", "generator": "dp_tvae",
        "epsilon": 2.91, "delta": 1e-6, "dp_source_rows": 26010,
        "training": {"world_size": 1, "steps": 900}, "target_epsilon": 3.0,
    }  # fmt: skip
    events: list[dict[str, Any]] = []

    def read_return_json(self: Any, context: Any, event: dict[str, Any]) -> Any:  # KPO's resume
        events.append(event)
        if event["status"] != "success":
            raise RuntimeError(f"Pod {event['name']} returned a failure")
        return manifest

    monkeypatch.setattr(KubernetesPodOperator, "trigger_reentry", read_return_json)
    event = {"status": "success", "name": kwargs["pod_name"], "namespace": "dpsynth", "message": "done"}
    resumed = _train_op(**pod_args)  # a new worker process's instance
    xcom = resumed.trigger_reentry(context, event)
    assert xcom == {**manifest, "reservation_id": reservation} and events == [event]
    assert ledger.status("adult").spent_epsilon == pytest.approx(2.91)  # settled at what the pod spent

    # a second run whose pod fails while the task is deferred: charged its whole reservation
    second = _context("manual__2026-01-02")
    with pytest.raises(TaskDeferred):
        _train_op(**pod_args).execute(second)
    failed = {"status": "failed", "name": "train-x", "namespace": "dpsynth", "message": "OOMKilled"}
    with pytest.raises(RuntimeError, match="returned a failure"):
        _train_op(**pod_args).trigger_reentry(second, failed)
    assert ledger.status("adult").spent_epsilon == pytest.approx(2.91 + 3.0)
    assert "charged in full" in ledger.entries("adult")[-1]["note"]  # the one failure policy
    # a resume whose reservation did not survive the deferral refuses to pass the model on
    with pytest.raises(AirflowFailException, match="reservation of this train task was lost"):
        _train_op(**pod_args).trigger_reentry(_context("manual__2026-01-03"), event)
