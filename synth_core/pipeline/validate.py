"""The validate step: the release gate on a synthetic file, and its two records.

* the **public record** (published beside the release, linked from the manifest): pass/fail, the
  thresholds, each expectation's name, family and outcome, the DP facts of the model and the
  digests of what was validated — signed (:mod:`synth_core.pipeline.signing`) so publish trusts
  only records the pipeline wrote;
* the **evaluation** (observed DCR share, NNDR, attack AUC and the other metrics computed on
  real rows, and the privacy expectations' sentences quoting them): not DP, kept under
  ``staging/`` beside the real rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synth_core.errors import ParameterError

if TYPE_CHECKING:
    import pandas as pd

    from synth_core.object_store import ObjectStore
    from synth_core.pipeline.jobs import GateJob
    from synth_core.pipeline.layout import RunLayout
    from synth_core.pipeline.records import ModelBundle

#: the privacy unit every mechanism protects (stated in the record, the manifest and the report)
NEIGHBOURING_RELATION = (
    "add/remove one row: the guarantee protects each row, i.e. each person when one person is one "
    "row; a person with several rows is protected only up to group privacy"
)
#: expectation families whose sentences quote metrics computed on real rows
_REAL_DATA_FAMILIES = frozenset({"privacy"})


@dataclass(frozen=True)
class GateResult:
    """The gate's outcome, with the public record and the (sensitive) evaluation kept apart."""

    outcome: Any  # synth_expectations.ValidationOutcome
    record: dict[str, Any]
    evaluation: dict[str, Any]

    @property
    def success(self) -> bool:
        return bool(self.outcome.success)


def run_gate(
    store: ObjectStore,
    bundle: ModelBundle,
    frame: pd.DataFrame,
    *,
    synthetic_uri: str,
    gate: GateJob,
    dtypes: Mapping[str, str] | None = None,
    split: tuple[str, str] | None = None,
    extra_expectations: Any = None,
    data_docs_dir: str | None = None,
) -> GateResult:
    """Run the GX suite (schema, types, domains, DP NULL rates, rules) and, given the real
    ``(train_uri, holdout_uri)`` split and ``gate.compute_metrics``, the privacy thresholds."""
    from synth_core.pipeline.signing import sha256_of
    from synth_expectations import PrivacyThresholds, gate_metrics, validate_frame

    synthetic_sha256 = sha256_of(store, synthetic_uri)
    compute = gate.compute_metrics and split is not None
    enforce = compute and gate.enforce_privacy_thresholds
    if gate.enforce_privacy_thresholds and split is not None and not gate.compute_metrics:
        raise ParameterError(
            "enforce_privacy_thresholds needs compute_metrics=True (the thresholds apply to them)"
        )
    metrics: dict[str, Any] = {}
    if compute:
        from synth_core.metrics import evaluate_release

        assert split is not None
        metrics = dict(
            evaluate_release(store.read_parquet(split[0]), store.read_parquet(split[1]), frame, bundle.spec)
        )
    thresholds = PrivacyThresholds(**gate.thresholds()) if enforce else None
    transformer = bundle.transformer
    outcome = validate_frame(
        frame,
        bundle.spec,
        dict(dtypes or transformer.output_dtypes),
        domains=transformer.dp_domains(),
        ranges=transformer.dp_ranges(),
        row_count=len(frame),
        null_rates=transformer.dp_null_rates(),
        null_rate_tolerance=gate.null_rate_tolerance,
        release_metrics=gate_metrics(metrics, epsilon=bundle.epsilon, target_epsilon=bundle.target_epsilon)
        if enforce
        else None,
        privacy_thresholds=thresholds,
        extra_expectations=extra_expectations,
        data_docs_dir=data_docs_dir,
    )
    results = [r.to_dict() for r in outcome.results]
    record = {
        "success": bool(outcome.success),
        "source_table": bundle.table,
        "synthetic_uri": synthetic_uri,
        "synthetic_sha256": synthetic_sha256,
        "rows": len(frame),
        "model_uri": bundle.uri,
        "model_sha256": bundle.sha256,
        "epsilon": bundle.epsilon,
        "delta": bundle.delta,
        "target_epsilon": bundle.target_epsilon,
        "generator": bundle.generator,
        "neighbouring_relation": NEIGHBOURING_RELATION,
        "privacy_thresholds_checked": enforce,
        "privacy_thresholds": thresholds.to_dict() if thresholds is not None else None,
        "null_rate_tolerance": gate.null_rate_tolerance,
        "expectations_passed": sum(1 for r in outcome.results if r.success),
        "expectations_total": len(outcome.results),
        "results": [_public_result(r) for r in results],
        "validated_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    evaluation = {"source_table": bundle.table, "synthetic_uri": synthetic_uri, "metrics": metrics,
                  "outcome": outcome.to_dict()}  # fmt: skip
    return GateResult(outcome, record, evaluation)


def _public_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """An expectation's result without the sentence when that sentence quotes real-data metrics."""
    if result.get("check") not in _REAL_DATA_FAMILIES:
        return dict(result)  # about the synthetic rows and DP estimates only
    return {
        k: result.get(k)
        for k in ("expectation_type", "column", "success", "severity", "check", "metric", "threshold")
    }


def write_gate_outputs(
    store: ObjectStore,
    layout: RunLayout,
    bundle: ModelBundle,
    result: GateResult,
    frame: pd.DataFrame,
    *,
    signing_home: Path,
    run_id: str,
    staging_uri: str | None,
    budget: Mapping[str, Any] | None,
    data_docs_dir: str | None,
) -> dict[str, Any]:
    """Write the gate's outputs and return the validate task's XCom (no real-data figure in it).

    ``reports/{table}/{run}/``: ``validation.json`` (the signed public record), ``report.html`` (the
    shareable report); beside the staged rows: ``evaluation.json``, ``internal_report.html`` and
    ``data_docs/`` (real-data metrics: the sensitive zone -- GX Data Docs show the observed DCR share,
    NNDR and attack AUC the privacy expectations were evaluated on)."""
    import json

    from synth_core.generators import Synthesizer
    from synth_core.object_store import join_uri
    from synth_core.pipeline.signing import sign, signing_key
    from synth_core.report import InternalEvidence, render_release_report

    data_docs_uri = None
    docs = Path(data_docs_dir or "")
    for path in sorted(docs.rglob("*")) if data_docs_dir else []:
        if path.is_file():
            uri = store.put_bytes(layout.staged(f"data_docs/{path.relative_to(docs)}"), path.read_bytes())
            data_docs_uri = data_docs_uri or (uri if path.name == "index.html" else None)
    record = sign(result.record, signing_key(signing_home))
    validation_uri = store.put_bytes(
        layout.report("validation.json"),
        json.dumps(record, indent=1).encode(),
        content_type="application/json",
    )
    synth = Synthesizer.from_bytes(bundle.raw)
    report_args: dict[str, Any] = {
        "spec": bundle.spec, "synthetic": frame, "transformer_state": bundle.transformer.to_dict(),
        "privacy": bundle.privacy, "validation": result.evaluation["outcome"], "budget": budget,
        "diagnostics": synth.diagnostics() or None,
        "release": {"table": bundle.table, "generator": bundle.generator, "generator_params": bundle.params,
                    "run_id": run_id, "rows": len(frame), "model_uri": bundle.uri,
                    "synthetic_uri": record["synthetic_uri"], "validation_uri": validation_uri,
                    "neighbouring_relation": NEIGHBOURING_RELATION},
    }  # fmt: skip
    # the shareable report: every real-data figure in it is a DP output
    report_uri = store.put_bytes(
        layout.report("report.html"), render_release_report(**report_args).encode(), content_type="text/html"
    )
    evaluation_uri = internal_report_uri = None
    if staging_uri is not None and result.evaluation["metrics"]:
        evaluation_uri = store.put_bytes(
            join_uri(staging_uri, "evaluation.json"),
            json.dumps({**result.evaluation, "run_id": run_id}, indent=1, default=str).encode(),
            content_type="application/json",
        )
        split = (
            store.read_parquet(join_uri(staging_uri, "train.parquet")),
            store.read_parquet(join_uri(staging_uri, "holdout.parquet")),
        )
        internal_report_uri = store.put_bytes(
            join_uri(staging_uri, "internal_report.html"),
            render_release_report(
                **report_args, metrics=result.evaluation["metrics"], internal=InternalEvidence(*split)
            ).encode(),
            content_type="text/html",
        )
    return {
        "success": result.success,
        "validation_uri": validation_uri,
        "report_uri": report_uri,
        "internal_report_uri": internal_report_uri,
        "evaluation_uri": evaluation_uri,
        "data_docs_uri": data_docs_uri,
        "warnings": [w.summary for w in result.outcome.warnings()],
    }


def trusted_record(
    store: ObjectStore, bundle: ModelBundle, synthetic_uri: str, record_uri: str | None, *, signing_home: Path
) -> Mapping[str, Any]:
    """The validation record at ``record_uri`` if the pipeline signed it for exactly this synthetic
    file and model and it passed (:func:`synth_core.pipeline.signing.verify_passing`)."""
    import json

    from synth_core.pipeline.signing import sha256_of, signing_key, verify_passing

    record = None
    if record_uri:
        try:
            loaded = json.loads(store.get_bytes(record_uri))
            record = loaded if isinstance(loaded, dict) else None
        except (FileNotFoundError, ValueError):
            record = None
    return verify_passing(
        record, signing_key(signing_home), synthetic_sha256=sha256_of(store, synthetic_uri),
        model_sha256=bundle.sha256, where=synthetic_uri,
    )  # fmt: skip
