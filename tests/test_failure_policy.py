"""One failure policy for every entry point: the in-process operator, the pod operator and the CLI
are driven through the same failure points and must leave the same ledger entries.

* **refused before any read** — a training parameter past the boundary's limit (``epochs=0``):
  refused before the ledger is asked, so nothing is recorded;
* **failed after reading** — the generator's ``fit`` raises as soon as it gets the rows;
* **failed during training** — ``fit`` trains (a real DP-SGD epoch) and then raises.

After a read the reservation is charged in full, whoever ran it. The pod operator's pod is the
real pod spec; its work runs in-process through the pod entrypoint (as ``tests/pod_helpers.py``
does), with the JSON job the operator put in the spec.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import ADULT_SPEC_PATH
from pod_helpers import TINY_TVAE

EPSILON = 1.0
ROWS = 600


class _TI:
    dag_id, task_id, map_index, try_number = "failure_policy", "train", -1, 1

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value", **_: Any) -> Any:
        return self.xcom.get(key)


def _seed(home: Path, adult_frame: Any) -> sa.engine.Engine:
    from synth_core.datasets import adult_table, write_frame_to_table

    home.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(f"sqlite:///{home / 'warehouse.db'}")
    write_frame_to_table(engine, adult_frame.head(ROWS), adult_table())
    return engine


def _run_entries(home: Path, engine: sa.engine.Engine) -> list[tuple[str, float]]:
    """The ledger's entries of the table's key, without the grant (the run's own record)."""
    from synth_core.ledger import PrivacyLedger, budget_scope

    entries = PrivacyLedger(f"sqlite:///{home / 'ledger.db'}").entries(budget_scope(engine, table="adult"))
    return [
        (e["entry_type"], round(float(e["epsilon"]), 9))
        for e in entries
        if e["entry_type"] in ("reserve", "spend", "release")
    ]


def _in_process(home: Path, params: dict[str, Any]) -> None:
    from synth_provider.operators.synthesize import ExtractTableOperator, TrainSynthesizerOperator

    ctx = {"run_id": "in-process"}
    staged = ExtractTableOperator(task_id="extract", source_table="adult", spec=str(ADULT_SPEC_PATH)).execute(
        ctx
    )
    TrainSynthesizerOperator(
        task_id="train", staged=staged, epsilon=EPSILON, lifetime_epsilon=10.0, generator="dp_tvae",
        generator_params=params,
    ).execute(ctx)  # fmt: skip


def _pod(home: Path, params: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    from synth_core.pipeline.jobs import TrainJob
    from synth_core.pod_entrypoint import main
    from synth_provider.operators.kubernetes import TrainSynthesizerPodOperator
    from synth_provider.operators.synthesize import ExtractTableOperator

    def run_the_pod(self: Any, context: Any) -> Any:  # KubernetesPodOperator.execute, without a cluster
        (container,) = [c for c in self.pod_request_obj.spec.containers if c.name == "base"]
        assert container.command == ["dpsynth-train"] and container.args[0] == "--job-json"
        job = json.loads(container.args[1])
        assert TrainJob.from_mapping(job).to_dict() == job  # the pod's job is TrainJob.to_dict()
        xcom = tmp_path / "pod" / "return.json"
        code = main("train", [*container.args, "--xcom-path", str(xcom)])
        if code != 0:
            raise RuntimeError(f"Pod train returned a failure (exit code {code})")  # as the operator reports
        return json.loads(xcom.read_text())

    monkeypatch.setattr(KubernetesPodOperator, "execute", run_the_pod)
    tmp_path.mkdir(parents=True, exist_ok=True)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "k",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "k", "context": {"cluster": "k", "user": "u"}}],
    }))  # fmt: skip
    ctx: dict[str, Any] = {"run_id": "pod", "ti": _TI(), "dag": SimpleNamespace(dag_id="failure_policy")}
    staged = ExtractTableOperator(task_id="extract", source_table="adult", spec=str(ADULT_SPEC_PATH)).execute(
        ctx
    )
    TrainSynthesizerPodOperator(
        task_id="train", staged=staged, epsilon=EPSILON, lifetime_epsilon=10.0, generator="dp_tvae",
        generator_params=params, gpus=0, kubernetes_conn_id=None, config_file=str(kubeconfig),
        volume_mounts=[k8s.V1VolumeMount(name="objects", mount_path=str(home / "objects"))],
    ).execute(ctx)  # fmt: skip


def _cli(home: Path, params: dict[str, Any], tmp_path: Path) -> None:
    from synth_core import cli

    args = ["--home", str(home), "train", "--spec", str(ADULT_SPEC_PATH), "--epsilon", str(EPSILON),
            "--lifetime-epsilon", "10", "--model", str(tmp_path / "cli.zip"), "--quiet"]  # fmt: skip
    for key, value in params.items():
        args += ["--param", f"{key}={json.dumps(value)}"]
    code = cli.main(args)
    if code != 0:
        raise RuntimeError(f"dpsynth train exited {code}")


def _failing_fit(after_training: bool) -> Callable[..., Any]:
    from synth_core.generators import create_synthesizer

    original = type(create_synthesizer("dp_tvae")).fit

    def fit(self: Any, data: Any, *args: Any, **kwargs: Any) -> Any:
        assert len(data) > 0  # the private rows reached the generator
        if after_training:
            original(self, data, *args, **kwargs)
        raise RuntimeError("injected failure")

    return fit


FAILURE_POINTS = {
    # point: (generator params, patch fit?, train before failing?, expected ledger entries of the run)
    "refused_before_any_read": ({**TINY_TVAE, "epochs": 0}, False, False, []),
    "failed_after_reading": (TINY_TVAE, True, False, [("reserve", EPSILON), ("spend", EPSILON)]),
    "failed_during_training": (
        {**TINY_TVAE, "epochs": 1},
        True,
        True,
        [("reserve", EPSILON), ("spend", EPSILON)],
    ),
}
#: how each entry point reports the failure (refused: a non-retryable parameter error, exit 2)
ERRORS = {
    "refused_before_any_read": {"in_process": "epochs", "pod": "epochs", "cli": "exited 2"},
    "failed_after_reading": {
        "in_process": "injected failure",
        "pod": "returned a failure",
        "cli": "exited 1",
    },
}
ERRORS["failed_during_training"] = ERRORS["failed_after_reading"]


@pytest.mark.slow
@pytest.mark.parametrize("point", list(FAILURE_POINTS))
def test_every_entry_point_charges_a_failed_run_identically(
    point: str, tmp_path: Path, adult_frame: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from synth_core.generators import create_synthesizer

    torch.set_num_threads(1)
    params, patch, train_first, expected = FAILURE_POINTS[point]
    if patch:
        monkeypatch.setattr(type(create_synthesizer("dp_tvae")), "fit", _failing_fit(train_first))
    outcomes: dict[str, list[tuple[str, float]]] = {}
    for name in ("in_process", "pod", "cli"):
        home = tmp_path / name
        engine = _seed(home, adult_frame)
        monkeypatch.setenv("AIRFLOW__DPSYNTH__HOME", str(home))
        with pytest.raises(Exception, match=ERRORS[point][name]):
            if name == "in_process":
                _in_process(home, params)
            elif name == "pod":
                _pod(home, params, tmp_path / name, monkeypatch)
            else:
                _cli(home, params, tmp_path / name)
        outcomes[name] = _run_entries(home, engine)
    assert outcomes == {"in_process": expected, "pod": expected, "cli": expected}
