"""``dpsynth-train`` / ``dpsynth-sample``: the trainer image's entrypoints (one pod, one step).

They run one step of a refresh on staged objects — no warehouse, no ledger, no Airflow — and
report what they did as a small JSON manifest written to ``/airflow/xcom/return.json`` (the file
the ``KubernetesPodOperator`` XCom sidecar reads; ``--xcom-path`` or ``$DPSYNTH_XCOM_PATH``
elsewhere). The ledger stays with the Airflow task that launched the pod: it reserves (ε, δ)
before the pod starts and settles the spend this manifest reports.

Inputs come from a JSON job (``--job FILE`` or ``--job-json TEXT``), arguments overriding it::

    dpsynth-train --job job.json
    dpsynth-train --train-uri s3://b/staging/adult/r1/train.parquet \\
        --spec-uri s3://b/staging/adult/r1/spec.yaml --epsilon 3 --delta 1e-6 \\
        --generator dp_tvae --param epochs=15 --model-uri s3://b/models/adult/r1/model.dpsynth.zip
    dpsynth-train --job job.json --nproc-per-node 4        # DPDDP over 4 GPUs (torchrun)
    dpsynth-sample --model-uri s3://b/models/adult/r1/model.dpsynth.zip --rows 32000 \\
        --output-uri s3://b/synthetic/adult/r1/part-00000.parquet --seed 1
    dpsynth-sample --job shard.json          # {"model_uri", "output_prefix", "shard": {...}}

Train job: :class:`synth_core.pipeline.jobs.TrainJob` (``TrainJob.to_dict()``, what the pod operator
sends; every field is also an option ``--field-name``); a job file may nest the extract task's
manifest under ``staged``.
Sample job keys: ``model_uri``; ``rows`` + ``output_uri`` + ``seed``, or ``shard`` (one entry of
:func:`synth_core.shards.plan_shards`) + ``output_prefix``; ``chunk_rows``.

Object store credentials come from the environment (boto3's chain: a Kubernetes secret mounted as
env vars or files), never from the job or the arguments; ``DPSYNTH_S3_ENDPOINT_URL`` names an
S3-compatible endpoint. Exit codes are the ``dpsynth`` CLI's (0 ok, 2 usage, 5 bad spec/data...).
The manifest holds URIs, counts, ε/δ and training facts, never a cell value.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synth_core.generators import Synthesizer
    from synth_core.object_store import ObjectStore

DEFAULT_XCOM_PATH = "/airflow/xcom/return.json"
XCOM_PATH_ENV = "DPSYNTH_XCOM_PATH"

log = logging.getLogger("synth_core.pod_entrypoint")


def xcom_path(override: str | None = None) -> Path:
    """``--xcom-path``, else ``$DPSYNTH_XCOM_PATH``, else ``/airflow/xcom/return.json``."""
    return Path(override or os.environ.get(XCOM_PATH_ENV) or DEFAULT_XCOM_PATH)


def write_return_json(manifest: Mapping[str, Any], path: Path) -> Path:
    """Write the manifest atomically (the XCom sidecar must never read half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(manifest, default=_json_default, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _json_default(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _store() -> ObjectStore:
    from synth_core.object_store import ObjectStore, S3Options

    return ObjectStore(S3Options(endpoint_url=os.environ.get("DPSYNTH_S3_ENDPOINT_URL") or None))


# ------------------------------------------------------------------------------------------------
# the job: JSON, then arguments


def _parser(command: str) -> argparse.ArgumentParser:
    from synth_core.pipeline.command_line import Parser, add_job_arguments, integer, positive_int
    from synth_core.pipeline.jobs import TrainJob

    p = Parser(
        prog=f"dpsynth-{command}",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--job", metavar="JOB.json", help="the job as a JSON file (arguments override it)")
    p.add_argument("--job-json", metavar="JSON", help="the job as JSON text")
    p.add_argument(
        "--xcom-path",
        metavar="PATH",
        help=f"where the manifest goes (default ${XCOM_PATH_ENV} or {DEFAULT_XCOM_PATH})",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)")
    p.add_argument("--debug", action="store_true", help="print tracebacks of errors")
    if command == "train":
        add_job_arguments(p, TrainJob, defaults=False)  # every TrainJob field, as --field-name
        p.add_argument(
            "--nproc-per-node",
            metavar="N|auto",
            help="train with N workers (DPDDP under torchrun); auto: one per visible GPU",
        )
    else:
        p.add_argument("--model-uri", metavar="URI", help="the model bundle")
        p.add_argument("--rows", type=positive_int, metavar="N")
        p.add_argument("--seed", type=integer, metavar="S")
        p.add_argument("--output-uri", metavar="URI", help="synthetic Parquet")
        p.add_argument("--chunk-rows", type=positive_int, metavar="N", help="rows per sampled chunk")
    return p


def load_job(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """The job: ``--job`` file, then ``--job-json``, then the explicit arguments on top."""
    from synth_core.pipeline.command_line import CLIError, job_fields_from_args
    from synth_core.pipeline.jobs import TrainJob

    job: dict[str, Any] = {}
    for source in (args.job, args.job_json):
        if not source:
            continue
        try:
            raw = Path(source).read_text(encoding="utf-8") if source is args.job else source
            loaded = json.loads(raw)
        except (OSError, json.JSONDecodeError) as exc:
            raise CLIError(f"cannot read the job ({type(exc).__name__})") from None
        if not isinstance(loaded, dict):
            raise CLIError("the job must be a JSON object")
        job.update(loaded)
    if command == "train":
        given = job_fields_from_args(args, TrainJob)
        params = {**dict(job.get("generator_params") or {}), **given.pop("generator_params", {})}
        job.update(given, generator_params=params)
    else:
        job.update({k: v for k, v in vars(args).items() if v is not None and k in _SAMPLE_FIELDS})
    return job


_SAMPLE_FIELDS = ("model_uri", "rows", "seed", "output_uri", "chunk_rows")


def _require(job: Mapping[str, Any], *keys: str) -> None:
    from synth_core.pipeline.command_line import CLIError

    missing = [k for k in keys if job.get(k) in (None, "")]
    if missing:
        raise CLIError(f"the job lacks {', '.join(missing)}")


# ------------------------------------------------------------------------------------------------
# train


def run_train(job: Mapping[str, Any], *, store: ObjectStore | None = None) -> dict[str, Any] | None:
    """Train as the job (``TrainJob.to_dict()``) says; returns the manifest on worker 0 (``None``
    on the other workers). The ledger is the pod operator's: reserved before the pod started.

    Under ``torchrun`` every worker calls this: they join the process group, run the same DP
    preprocessing (shared privacy seeds), train with DPDDP, and worker 0 saves the bundle."""
    from synth_core.distributed import distributed_training, gather_strings
    from synth_core.pipeline.jobs import TrainJob
    from synth_core.pipeline.train import fit_and_save, plan_train

    store = store or _store()
    # a job may nest the extract task's manifest under "staged"; the job's own keys win
    job = {**dict(job.get("staged") or {}), **{k: v for k, v in job.items() if k != "staged"}}
    train_job = TrainJob.from_mapping(
        {**job, "source_table": job.get("source_table") or _spec_table(store, job)}
    )
    plan = plan_train(train_job, store)
    train = store.read_parquet(train_job.train_uri)
    with distributed_training() as worker:
        trained = fit_and_save(plan, store, train, save=False)
        digests = gather_strings(_fit_digest(plan.synth)) if worker.distributed else [_fit_digest(plan.synth)]
    if not worker.is_main:
        return None
    if len(set(digests)) != 1:  # pragma: no cover - would mean the workers trained different models
        raise AssertionError("the DP-SGD workers ended with different models")
    model_uri = plan.synth.save(train_job.model_uri, store=store)
    out = trained.to_dict()
    out.update(model_uri=model_uri, workers_agree=True, worker_digests=digests)
    out["training"] = {**out["training"], "world_size": worker.world_size}
    return out


def _spec_table(store: ObjectStore, job: Mapping[str, Any]) -> str | None:
    """The table the job's spec describes (a job file may leave ``source_table`` out)."""
    from synth_core.spec import TableSpec

    if not job.get("spec_uri"):
        return None
    return TableSpec.from_yaml(_read_text(store, str(job["spec_uri"]))).name


def _fit_digest(synth: Synthesizer) -> str:
    """SHA-256 of the fitted transformer and the model weights (equal on every DPDDP worker)."""
    assert synth.transformer_ is not None
    h = hashlib.sha256(json.dumps(synth.transformer_.to_dict(), sort_keys=True, default=str).encode())
    _, state = synth._model_state()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _read_text(store: ObjectStore, uri_or_path: str) -> str:
    from synth_core.object_store import as_uri

    return store.get_bytes(as_uri(os.path.expanduser(uri_or_path))).decode("utf-8")


# ------------------------------------------------------------------------------------------------
# sample


def run_sample(job: Mapping[str, Any], *, store: ObjectStore | None = None) -> dict[str, Any]:
    """Sample as the job says (post-processing: spends nothing); returns the manifest."""
    from synth_core.pipeline.records import ModelBundle
    from synth_core.pipeline.sample import sample, sample_rows
    from synth_core.shards import DEFAULT_CHUNK_ROWS, sample_shard

    _require(job, "model_uri")
    store = store or _store()
    chunk_rows = int(job.get("chunk_rows") or DEFAULT_CHUNK_ROWS)
    if job.get("shard"):
        _require(job, "output_prefix")
        out = sample_shard(
            store,
            model_uri=str(job["model_uri"]),
            shard=dict(job["shard"]),
            output_prefix=str(job["output_prefix"]),
            chunk_rows=chunk_rows,
        )
        return {**out, "epsilon_spent": 0.0}
    _require(job, "output_uri")
    bundle = ModelBundle.read(store, str(job["model_uri"]))
    seed: Any = job.get("seed")
    return sample(
        store,
        model_uri=bundle.uri,
        rows=sample_rows(job.get("rows"), None, bundle),
        output_uri=str(job["output_uri"]),
        seed=int(seed) if seed not in (None, "") else None,
        chunk_rows=chunk_rows,
    )


# ------------------------------------------------------------------------------------------------
# entry points


def _relaunch_under_torchrun(nproc: str, argv: Sequence[str]) -> int:
    """Run this command again as ``nproc`` workers under ``torchrun`` (one per GPU)."""
    import subprocess

    from synth_core.pipeline.command_line import CLIError

    if nproc == "auto":
        import torch

        count = torch.cuda.device_count()
    else:
        try:
            count = int(nproc)
        except ValueError:
            raise CLIError(f"--nproc-per-node must be an integer or auto, got {nproc!r}") from None
    if count <= 1:
        return -1
    rest = [a for a in _strip_option(argv, "--nproc-per-node")]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={count}",
        "-m", "synth_core.pod_entrypoint", "train", *rest,
    ]  # fmt: skip
    return subprocess.run(cmd, check=False).returncode


def _strip_option(argv: Sequence[str], name: str) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == name:
            skip = True
            continue
        if a.startswith(name + "="):
            continue
        out.append(a)
    return out


def main(command: str, argv: Sequence[str] | None = None) -> int:
    """Run ``dpsynth-<command>`` (``train`` or ``sample``); returns the exit code."""
    from synth_core.pipeline.command_line import EXIT_OK, configure_logging, report_error

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser(command)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 2
    configure_logging(bool(args.verbose))
    try:
        if command == "train" and args.nproc_per_node and "WORLD_SIZE" not in os.environ:
            code = _relaunch_under_torchrun(str(args.nproc_per_node), argv)
            if code >= 0:
                return code
        job = load_job(args, command)
        manifest = run_train(job) if command == "train" else run_sample(job)
        if manifest is not None:
            path = write_return_json(manifest, xcom_path(args.xcom_path))
            print(f"dpsynth-{command}: wrote {path}", file=sys.stderr)
        return EXIT_OK
    except (Exception, KeyboardInterrupt) as exc:
        return report_error(f"dpsynth-{command}", exc, debug=bool(args.debug))


def train_main() -> int:
    """Console script ``dpsynth-train``."""
    return main("train")


def sample_main() -> int:
    """Console script ``dpsynth-sample``."""
    return main("sample")


if __name__ == "__main__":  # python -m synth_core.pod_entrypoint {train|sample} ...
    if len(sys.argv) < 2 or sys.argv[1] not in ("train", "sample"):
        print("usage: python -m synth_core.pod_entrypoint {train|sample} [options]", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
