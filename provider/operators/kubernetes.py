"""Train and sample in Kubernetes pods (GPU nodes), with the trainer image from ``docker/``.

Needs the ``kubernetes`` extra (``apache-airflow-providers-cncf-kubernetes``); nothing else in the
provider imports this module, so the provider and its DAGs parse without it.

* :class:`TrainSynthesizerPodOperator` — the train step in a pod running ``dpsynth-train``: one
  GPU by default (``nvidia.com/gpu``), or ``gpus=N`` with DPDDP across them (same ε as one GPU).
  The ledger stays here, in the Airflow task: (ε, δ) is reserved before the pod starts and the
  spend the pod reports is settled after it ends; a pod that fails after it may have read the
  staged rows is charged in full.
* :class:`SampleSynthesizerPodOperator` — the sample step (or one shard of it) in a pod running
  ``dpsynth-sample``; map it over :func:`synth_core.shards.plan_shards` with ``.expand(shard=...)``.

The pod gets only references in its arguments (a JSON job: URIs, ε, δ, generator parameters) and
returns its manifest through ``/airflow/xcom/return.json``: the XCom of these operators has the
shape of :class:`~synth_provider.operators.synthesize.TrainSynthesizerOperator`'s and
:class:`~synth_provider.operators.synthesize.SampleSynthesizerOperator`'s, so validate and publish
follow unchanged. Object store credentials reach the pod only as a Kubernetes secret
(``credentials_secret``, exposed as environment variables from a ``secretRef``, or ``secrets``):
never as values in the pod spec. Defaults fit GPU node pools that scale from zero: 30 minutes to be
scheduled (node scale-up) and to start (pulling a multi-GB CUDA image), ``deferrable`` supported
(the wait happens in the triggerer), succeeded pods deleted and failed ones kept for inspection.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from airflow.sdk.exceptions import AirflowFailException
from kubernetes.client import models as k8s

from synth_provider.hooks.dpsynth import DPSynthHook
from synth_provider.operators.synthesize import (
    TRAIN_PARAMETERS,
    fail_fast_on_non_retryable,
    pop_train_params,
    train_params_of,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

#: the trainer image built from docker/Dockerfile (override with ``image=``)
DEFAULT_IMAGE = "ghcr.io/dpsynth/dpsynth-trainer:0.1.0"
GPU_RESOURCE = "nvidia.com/gpu"
#: NVIDIA GPU feature discovery's label; GPU node pools usually carry it
DEFAULT_GPU_NODE_SELECTOR: dict[str, str] = {"nvidia.com/gpu.present": "true"}
#: the taint GPU node pools usually carry (GKE, EKS and AKS GPU pools use this key)
DEFAULT_GPU_TOLERATIONS: tuple[k8s.V1Toleration, ...] = (
    k8s.V1Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule"),
)
#: Kubernetes secret whose keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY...) become the pod's env
DEFAULT_CREDENTIALS_SECRET = "dpsynth-object-store"
#: a cold GPU node pool: node scale-up plus a multi-GB image pull
GPU_STARTUP_TIMEOUT_SECONDS = 1800
RESERVATION_XCOM_KEY = "dpsynth_reservation_id"

_SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|PRIVATE_KEY|ACCESS_KEY)", re.IGNORECASE)

SAMPLE_MANIFEST_KEYS = ("source_table", "synthetic_uri", "rows", "model_uri")


class _DPSynthPodOperator(KubernetesPodOperator):
    """What the dpsynth pods share: image, resources, GPU placement, credentials, locations."""

    command: str = ""
    template_fields: Sequence[str] = (*KubernetesPodOperator.template_fields, "object_store_uri")

    def __init__(
        self,
        *,
        image: str = DEFAULT_IMAGE,
        gpus: int = 1,
        cpu: str | None = "4",
        memory: str | None = "16Gi",
        node_selector: dict[str, str] | None = None,
        tolerations: list[k8s.V1Toleration] | None = None,
        credentials_secret: str | None = DEFAULT_CREDENTIALS_SECRET,
        secrets: list[Secret] | None = None,
        s3_endpoint_url: str | None = None,
        env_vars: dict[str, str] | None = None,
        object_store_uri: str | None = None,
        aws_conn_id: str | None = None,
        ledger_uri: str | None = None,
        startup_timeout_seconds: int = GPU_STARTUP_TIMEOUT_SECONDS,
        schedule_timeout_seconds: int = GPU_STARTUP_TIMEOUT_SECONDS,
        on_finish_action: str = "delete_succeeded_pod",
        container_resources: k8s.V1ResourceRequirements | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            raise ValueError(f"gpus must be an integer >= 0, got {gpus!r}")
        env = dict(env_vars or {})
        leaked = sorted(k for k in env if _SECRET_NAME.search(k))
        if leaked:
            raise ValueError(
                f"env_vars {leaked} look like credentials: pass them as a Kubernetes secret "
                "(credentials_secret= or secrets=), never as values in the pod spec"
            )
        if s3_endpoint_url:
            env["DPSYNTH_S3_ENDPOINT_URL"] = s3_endpoint_url
        env.setdefault("PYTHONUNBUFFERED", "1")
        all_secrets = list(secrets or [])
        if credentials_secret:
            all_secrets.append(Secret("env", None, credentials_secret))
        if container_resources is None:
            limits: dict[str, str] = {}
            requests: dict[str, str] = {}
            if gpus:
                limits[GPU_RESOURCE] = requests[GPU_RESOURCE] = str(gpus)
            if cpu:
                requests["cpu"] = cpu
            if memory:
                limits["memory"] = requests["memory"] = memory
            container_resources = k8s.V1ResourceRequirements(limits=limits, requests=requests)
        if gpus:
            node_selector = DEFAULT_GPU_NODE_SELECTOR if node_selector is None else node_selector
            tolerations = list(DEFAULT_GPU_TOLERATIONS) if tolerations is None else tolerations
        kwargs.setdefault("cmds", [f"dpsynth-{self.command}"])
        kwargs.setdefault("labels", {"app.kubernetes.io/name": "dpsynth", "dpsynth.io/step": self.command})
        super().__init__(
            image=image,
            env_vars=env,
            secrets=all_secrets,
            node_selector=dict(node_selector or {}),
            tolerations=list(tolerations or []),
            container_resources=container_resources,
            startup_timeout_seconds=startup_timeout_seconds,
            schedule_timeout_seconds=schedule_timeout_seconds,
            on_finish_action=on_finish_action,
            do_xcom_push=True,
            **kwargs,
        )
        self.gpus = gpus
        self.object_store_uri = object_store_uri
        self.aws_conn_id = aws_conn_id
        self.ledger_uri = ledger_uri

    # -- the job -----------------------------------------------------------------------------------
    def get_hook(self) -> DPSynthHook:
        return DPSynthHook(
            object_store_uri=self.object_store_uri, aws_conn_id=self.aws_conn_id, ledger_uri=self.ledger_uri
        )

    def object_store_root(self) -> str:
        root = self.get_hook().object_store_root()
        if root.startswith("file://") and not self.volume_mounts:
            raise AirflowFailException(
                f"the object store root {root} is a local folder of the Airflow worker, which a pod cannot "
                "reach: set object_store_uri to an s3:// root (or mount the folder with volumes/volume_mounts)"
            )
        return root

    def build_job(self, context: Context) -> dict[str, Any]:
        raise NotImplementedError

    def build_pod_request_obj(self, context: Context | None = None, *, dry_run: bool = False) -> k8s.V1Pod:
        """The pod, with the job (references only) as the container's arguments."""
        if context is not None and not self.arguments:
            self.arguments = ["--job-json", json.dumps(self.build_job(context), sort_keys=True)]
        return super().build_pod_request_obj(context, dry_run=dry_run)

    @staticmethod
    def parse_manifest(result: Any, keys: Sequence[str], what: str) -> dict[str, Any]:
        """The pod's ``return.json`` as read by the XCom sidecar, checked."""
        if not isinstance(result, Mapping):
            raise AirflowFailException(
                f"the {what} pod returned no manifest (got {type(result).__name__}): "
                "its /airflow/xcom/return.json is missing"
            )
        missing = [k for k in keys if k not in result]
        if missing:
            raise AirflowFailException(f"the {what} pod's manifest lacks {missing}")
        return dict(result)


class TrainSynthesizerPodOperator(_DPSynthPodOperator):
    """:class:`~synth_provider.operators.synthesize.TrainSynthesizerOperator` in a GPU pod.

    Args:
        staged: the extract task's manifest (``extract.output``).
        epsilon, delta, generator, generator_params, preprocessing_fraction, seed,
            lifetime_epsilon, lifetime_delta: as for ``TrainSynthesizerOperator``.
        gpus: GPUs of the pod (``nvidia.com/gpu`` limit); more than one trains with DPDDP, one
            worker per GPU, with the ε of one worker.
        image, cpu, memory, node_selector, tolerations: where and how the pod runs (defaults:
            the trainer image, NVIDIA's GPU node label and taint; ``gpus=0`` drops both).
        credentials_secret: Kubernetes secret exposed as the pod's environment (boto3 reads the
            S3 credentials from it); ``secrets``: more :class:`Secret` objects.
        s3_endpoint_url: S3-compatible endpoint (not a secret).
        object_store_uri, aws_conn_id, ledger_uri: as for the other dpsynth operators (the pod
            needs an ``s3://`` root; the ledger is used here, not in the pod).
        Any ``KubernetesPodOperator`` argument (``namespace``, ``deferrable``, ``kubernetes_conn_id``,
        ``service_account_name``, ``startup_timeout_seconds``, ``on_finish_action``...).

    Returns (XCom): the pod's manifest (``model_uri``, ``generator``, ``epsilon``, ``delta``,
    ``target_epsilon``, ``dp_source_rows``, ``source_table``, ``training``) plus
    ``reservation_id``.
    """

    command = "train"
    template_fields: Sequence[str] = (*_DPSynthPodOperator.template_fields, "staged", *TRAIN_PARAMETERS)

    def __init__(self, *, staged: Any, **kwargs: Any) -> None:
        pop_train_params(self, kwargs)
        super().__init__(**kwargs)
        self.staged = staged

    def build_job(self, context: Context) -> dict[str, Any]:
        """The pod's job: ``TrainJob.to_dict()``, checked here (ranges, boundary limits, the
        generator and its parameters) before any budget is reserved; the pod checks the spec."""
        from synth_core.pipeline.jobs import TrainJob
        from synth_core.pipeline.layout import RunLayout
        from synth_core.pipeline.train import build_generator

        if not isinstance(self.staged, Mapping):
            raise AirflowFailException("staged must be the manifest returned by the extract task")
        params = train_params_of(self)
        if self.gpus:
            params = dataclasses.replace(
                params, generator_params={"device": "cuda", **params.generator_params}
            )
        layout = RunLayout(self.object_store_root(), str(self.staged.get("source_table")), context["run_id"])
        job = TrainJob.for_staged(params, self.staged, layout.model)
        build_generator(job)
        return job.to_dict()

    def build_pod_request_obj(self, context: Context | None = None, *, dry_run: bool = False) -> k8s.V1Pod:
        if context is not None and not self.arguments:
            self.arguments = ["--job-json", json.dumps(self.build_job(context), sort_keys=True)]
            if self.gpus > 1:  # one DPDDP worker per GPU (torchrun inside the pod)
                self.arguments += ["--nproc-per-node", str(self.gpus)]
        return super().build_pod_request_obj(context, dry_run=dry_run)

    def execute(self, context: Context) -> Any:
        with fail_fast_on_non_retryable():
            self.name = self._set_name(self.name)
            self.pod_request_obj = self.build_pod_request_obj(context)  # the job, before any spend
            reservation = self._reserve(context)
        try:
            result = super().execute(context)  # deferrable: raises TaskDeferred, resumes below
        except BaseException as exc:
            if not _is_deferral(exc):
                self._charge_in_full(reservation)
            raise
        return self.complete(context, result, reservation)

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        reservation = context["ti"].xcom_pull(task_ids=self.task_id, key=RESERVATION_XCOM_KEY)
        try:
            result = super().trigger_reentry(context, event)
        except BaseException as exc:
            if reservation is not None and not _is_deferral(exc):
                self._charge_in_full(int(reservation))
            raise
        if reservation is None:
            raise AirflowFailException("the ledger reservation of this train task was lost across deferral")
        return self.complete(context, result, int(reservation))

    def complete(self, context: Context, result: Any, reservation: int) -> dict[str, Any]:
        """Settle the pod's reported spend in the ledger; the task's XCom (the manifest plus
        ``reservation_id``). A missing or malformed manifest charges the reservation in full."""
        from synth_core.pipeline.records import TrainedModel

        try:
            manifest = self.parse_manifest(result, TrainedModel.REQUIRED, "train")
            trained = TrainedModel.from_mapping(manifest)
            target = train_params_of(self).epsilon
            if trained.epsilon > target * (1 + 1e-9):
                raise AirflowFailException(
                    f"the train pod reports ε={trained.epsilon:.6g}, above the target {target:.6g}"
                )
        except BaseException:
            self._charge_in_full(reservation)
            raise
        ledger = self.get_hook().get_ledger()
        ledger.settle(reservation, trained.epsilon, trained.delta, note=f"model {trained.model_uri} (pod)")
        self.log.info("trained %s in a pod: ε=%.4f (target %.4g), δ=%.3g; model %s",
                      trained.generator, trained.epsilon, target, trained.delta, trained.model_uri)  # fmt: skip
        return {**manifest, "reservation_id": reservation}

    def _reserve(self, context: Context) -> int:
        from synth_core.pipeline.budget import reserve_run, scope_from

        params = train_params_of(self)
        reservation = reserve_run(self.get_hook().get_ledger(), params, scope_from(self.staged),
                                  run_id=context["run_id"], mechanism=f"{params.generator} (pod)")  # fmt: skip
        context["ti"].xcom_push(key=RESERVATION_XCOM_KEY, value=reservation)
        return reservation

    def _charge_in_full(self, reservation: int) -> None:
        """A pod that failed may have read the staged rows: the failure policy with ``private_read``
        (the pod started with the job's staged rows in reach)."""
        from synth_core.pipeline.budget import close_failed_run

        close_failed_run(self.get_hook().get_ledger(), reservation, private_read=True, why="train pod failed")


class SampleSynthesizerPodOperator(_DPSynthPodOperator):
    """Sample in a pod (post-processing: spends nothing); one shard of a sharded sample with
    ``shard=`` (map it: ``.partial(...).expand(shard=plan.output)``).

    Args:
        model: the train task's manifest (``train.output``) or a model bundle URI.
        num_rows, seed: as for ``SampleSynthesizerOperator`` (ignored with ``shard``).
        shard: one entry of :class:`~synth_provider.operators.shards.PlanShardsOperator`'s XCom.
        gpus: default 0 (sampling a DP-SGD generator is cheap); the other arguments as for
            :class:`TrainSynthesizerPodOperator`.

    Returns (XCom): the pod's manifest: ``synthetic_uri``, ``rows``, ``model_uri``,
    ``source_table`` (and the shard's ``index``, ``count``, ``row_start``, ``seed``).
    """

    command = "sample"
    template_fields: Sequence[str] = (
        *_DPSynthPodOperator.template_fields,
        "model",
        "num_rows",
        "seed",
        "shard",
    )

    def __init__(
        self,
        *,
        model: Any = None,
        num_rows: int | None = None,
        seed: int | None = None,
        shard: Mapping[str, Any] | None = None,
        gpus: int = 0,
        cpu: str | None = "2",
        memory: str | None = "4Gi",
        **kwargs: Any,
    ) -> None:
        super().__init__(gpus=gpus, cpu=cpu, memory=memory, **kwargs)
        self.model = model
        self.num_rows = num_rows
        self.seed = seed
        self.shard = shard

    def build_job(self, context: Context) -> dict[str, Any]:
        from synth_core.errors import ParameterError
        from synth_core.pipeline.layout import RunLayout
        from synth_core.pipeline.records import ModelBundle
        from synth_core.pipeline.sample import model_uri_of, sample_rows

        if self.shard is not None:
            shard = dict(self.shard)
            if shard.get("staging_table"):
                # the pod holds object-store credentials only; silently skipping the staging table
                # would publish from the Parquet instead of what the plan asked for
                raise ParameterError(
                    "shards planned with stage_in_warehouse=True cannot be sampled in pods (they get no "
                    "warehouse credentials): plan them without it, or sample with SampleShardOperator"
                )
            return {"model_uri": shard["model_uri"], "shard": shard, "output_prefix": shard["output_prefix"]}
        model_uri = model_uri_of(self.model)
        if isinstance(self.model, Mapping) and self.model.get("source_table"):  # the train task's XCom
            table, rows = str(self.model["source_table"]), sample_rows(self.num_rows, self.model)
        else:
            bundle = ModelBundle.read(self.get_hook().get_object_store(), model_uri)
            table, rows = bundle.table, sample_rows(self.num_rows, self.model, bundle)
        seed: Any = self.seed
        return {
            "model_uri": model_uri,
            "rows": rows,
            "seed": None if seed in (None, "", "None") else int(seed),
            "output_uri": RunLayout(self.object_store_root(), table, context["run_id"]).synthetic,
        }

    def execute(self, context: Context) -> Any:
        with fail_fast_on_non_retryable():
            self.name = self._set_name(self.name)
            self.pod_request_obj = self.build_pod_request_obj(context)
        return self.complete(context, super().execute(context))

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        return self.complete(context, super().trigger_reentry(context, event))

    def complete(self, context: Context, result: Any) -> dict[str, Any]:
        """The task's XCom: the pod's manifest, checked."""
        manifest = self.parse_manifest(result, SAMPLE_MANIFEST_KEYS, "sample")
        self.log.info("sampled %d synthetic rows of %s in a pod into %s (no privacy budget spent)",
                      manifest["rows"], manifest["source_table"], manifest["synthetic_uri"])  # fmt: skip
        return manifest


def _is_deferral(exc: BaseException) -> bool:
    from airflow.sdk.exceptions import TaskDeferred

    return isinstance(exc, TaskDeferred)
