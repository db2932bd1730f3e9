"""``dpsynth``: the command line for working without a scheduler.

The same steps as the Airflow operators (``synth_provider.operators.synthesize``), with the same
privacy rules, without importing Airflow::

    dpsynth spec infer  --table adult -o adult.yaml                  # catalog -> spec to review
    dpsynth ledger grant --table adult --epsilon 30 --delta 1e-5     # the table's lifetime budget
    dpsynth train   --spec adult.yaml --epsilon 3 --model adult.dpsynth.zip
    dpsynth sample  --model adult.dpsynth.zip --rows 30000 -o adult_synth.parquet
    dpsynth validate --model adult.dpsynth.zip --synthetic adult_synth.parquet --report report.html
    dpsynth publish --model adult.dpsynth.zip --synthetic adult_synth.parquet
    dpsynth ledger show --table adult

Privacy rules (as in the operators):

* ``train`` checks the ledger before reading a row, reserves (ε, δ) in a locked transaction
  before streaming the table, releases the reservation if it fails before a row was read, and
  settles the actual spend after training. A run that fails after reading rows is charged in full.
* Everything not declared public in the spec is learned under DP within the same budget.
* ``sample`` (and re-sampling any time later) is post-processing: it spends nothing.
* ``validate`` compares the synthetic rows with the real train/holdout split that ``train`` left in
  its staging folder (**real rows: keep it private**): those metrics are not DP, and gating on
  them is a data-dependent decision (see the README).
* ``publish`` refuses a synthetic file that has no passing ``validate`` record (matched by content
  hash), then swaps the warehouse table atomically (comments, ``dpsynth_releases`` row), copies the
  Parquet, writes dbt ``sources.yml``, ``_manifest.json`` and ``_latest.json`` last.

Locations (the Airflow provider's ``[dpsynth] home`` layout): ``$DPSYNTH_HOME`` (default
``~/dpsynth``, or ``--home``) holds ``warehouse.db`` (the embedded SQLite warehouse),
``ledger.db`` (the privacy ledger) and ``objects/`` (the object store root, with
``staging/{table}/{run}/`` and ``published/{table}/{run}/``). Environment overrides:
``DPSYNTH_WAREHOUSE``, ``DPSYNTH_LEDGER`` (SQLAlchemy URLs: keep passwords out of the command line),
``DPSYNTH_OBJECT_STORE`` (``file://`` or ``s3://`` root) and ``DPSYNTH_S3_ENDPOINT_URL``; S3
credentials come from boto3's usual chain (environment, profile, role), never from arguments.

Files written beside the user's files: ``<model>.train.json`` (the training run's manifest: table,
ε, δ, row counts, staging location; no cell value) and ``<synthetic>.validation.json`` (the gate's
outcome and aggregate metrics, keyed by the synthetic file's SHA-256).

Exit codes (scripts can rely on them):

====  ==========================================================================================
code  meaning
====  ==========================================================================================
0     success
1     unexpected error (a short message; ``--debug`` prints the traceback), including an
      unreachable warehouse, ledger or object store (a retry may succeed)
2     usage error or bad argument (one-line reason on stderr)
3     privacy budget exhausted (or no lifetime budget granted) for the table
4     validation failed (the release gate; sampling that cannot satisfy the spec's rules;
      publishing a synthetic file without a passing validation)
5     bad spec, missing or empty table, data that does not fit the spec, unreadable model bundle
130   interrupted (Ctrl-C)
====  ==========================================================================================

Messages name tables, columns, rules, thresholds and locations, never cell values. Heavy modules
(torch, Great Expectations) are imported only by the subcommands that need them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

    from synth_core.budget_scope import BudgetScope
    from synth_core.ledger import PrivacyLedger
    from synth_core.object_store import ObjectStore
    from synth_core.pipeline.records import ModelBundle
    from synth_core.spec import TableSpec

from synth_core.boundary import scrub_url
from synth_core.pipeline.command_line import (
    EXIT_BUDGET,
    EXIT_CODES,
    EXIT_DATA,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNEXPECTED,
    EXIT_USAGE,
    EXIT_VALIDATION,
    CLIError,
    Parser,
    add_job_arguments,
    configure_logging,
    error_message,
    exit_code_for,
    integer,
    job_fields_from_args,
    number,
    param,
    positive_int,
)
from synth_core.pipeline.jobs import GateJob, StageJob, TrainParams

PROG = "dpsynth"
TRAIN_MANIFEST_SUFFIX = ".train.json"
VALIDATION_SUFFIX = ".validation.json"
#: kept importable under their former names
_param = param  # kept importable under its former name
__all__ = [
    "EXIT_BUDGET", "EXIT_CODES", "EXIT_DATA", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_UNEXPECTED", "EXIT_USAGE",
    "EXIT_VALIDATION", "CLIError", "error_message", "exit_code_for", "main",
]  # fmt: skip

log = logging.getLogger("synth_core.cli")


# ------------------------------------------------------------------------------------------------
# locations


def dpsynth_home(override: str | None = None) -> Path:
    """``--home``, else ``$DPSYNTH_HOME``, else ``~/dpsynth`` (the provider's ``[dpsynth] home``)."""
    raw = override or os.environ.get("DPSYNTH_HOME") or "~/dpsynth"
    return Path(os.path.expanduser(raw)).resolve()


def default_warehouse_url(home: Path) -> str:
    return os.environ.get("DPSYNTH_WAREHOUSE") or f"sqlite:///{home / 'warehouse.db'}"


def default_ledger_url(home: Path) -> str:
    return os.environ.get("DPSYNTH_LEDGER") or f"sqlite:///{home / 'ledger.db'}"


def default_object_store(home: Path) -> str:
    return os.environ.get("DPSYNTH_OBJECT_STORE") or (home / "objects").as_uri()


def new_run_id() -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"cli__{stamp}_{secrets.token_hex(3)}"


def _root_uri(value: str) -> str:
    from synth_core.object_store import as_uri

    return as_uri(value).rstrip("/")


# ------------------------------------------------------------------------------------------------
# argument parsing


def _exit_code_epilog() -> str:
    lines = ["exit codes:"]
    lines += [f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES]
    return "\n".join(lines)


def _epilog(examples: str, extra: str = "") -> str:
    parts = ["examples:\n" + "\n".join(f"  {line}" for line in examples.strip().splitlines())]
    if extra:
        parts.append(extra.strip("\n"))
    parts.append(_exit_code_epilog())
    return "\n\n".join(parts)


_LOCATIONS_HELP = """\
locations:
  $DPSYNTH_HOME (default ~/dpsynth; --home) holds warehouse.db (embedded SQLite warehouse),
  ledger.db (privacy ledger) and objects/ (object store root: staging/{table}/{run}/ holds
  REAL rows, published/{table}/{run}/ the releases) -- the Airflow provider's [dpsynth] home
  layout. Environment: DPSYNTH_WAREHOUSE, DPSYNTH_LEDGER (SQLAlchemy URLs), DPSYNTH_OBJECT_STORE
  (file:// or s3:// root), DPSYNTH_S3_ENDPOINT_URL; S3 credentials from boto3's chain."""


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    g = common.add_argument_group("global options")
    g.add_argument(
        "--home", default=argparse.SUPPRESS, help="dpsynth home folder (default $DPSYNTH_HOME or ~/dpsynth)"
    )
    g.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="print tracebacks of errors"
    )
    g.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log progress (INFO)"
    )
    g.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress output")
    g.add_argument(
        "--s3-endpoint-url",
        default=argparse.SUPPRESS,
        help="S3-compatible endpoint for s3:// URIs (default $DPSYNTH_S3_ENDPOINT_URL or AWS)",
    )

    fmt = argparse.RawDescriptionHelpFormatter
    parser = Parser(
        prog=PROG,
        description="dpsynth: differentially private synthetic replacement tables, without a scheduler.\n\n"
        "The same steps as the Airflow provider's operators (extract+train, sample, validate, publish)\n"
        "with the same privacy rules: the ledger is checked and reserved before any row is read,\n"
        "sampling spends nothing, and nothing is published that did not pass validation.",
        epilog=_epilog(
            """
dpsynth spec infer --table adult -o adult.yaml
dpsynth ledger grant --table adult --epsilon 30 --delta 1e-5
dpsynth train --spec adult.yaml --epsilon 3 --model adult.dpsynth.zip
dpsynth sample --model adult.dpsynth.zip --rows 30000 -o adult_synth.parquet
dpsynth validate --model adult.dpsynth.zip --synthetic adult_synth.parquet --report report.html
dpsynth publish --model adult.dpsynth.zip --synthetic adult_synth.parquet
dpsynth ledger show --table adult""",
            _LOCATIONS_HELP,
        ),
        formatter_class=fmt,
        parents=[common],
    )
    # no set_defaults for the global options: parents share Action objects, so a default set here
    # would also reset a value given before the subcommand (main reads them with getattr)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    def add(parent: Any, name: str, summary: str, examples: str, extra: str = "") -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=_epilog(examples, extra),
            formatter_class=fmt,
            parents=[common],
        )
        return p

    # -- spec ------------------------------------------------------------------------------------
    spec_p = add(
        sub,
        "spec",
        "Work with table specs (what is public about a table).",
        "dpsynth spec infer --table adult -o adult.yaml",
    )
    spec_sub = spec_p.add_subparsers(dest="spec_command", metavar="SPEC_COMMAND", parser_class=Parser)
    spec_sub.required = True
    p = add(
        spec_sub,
        "infer",
        "Propose a TableSpec from the warehouse catalog (names, SQL types, nullability; no row is read).",
        """
dpsynth spec infer --table adult -o adult.yaml
dpsynth spec infer --warehouse postgresql+psycopg://etl@db/sales --schema crm --table customers \\
    --id-column customer_id --target churned -o customers.yaml""",
        "Nothing is declared public in the proposed spec: every bound, category domain and datetime\n"
        "range would be estimated under DP and charged to the budget. Review it and declare only what\n"
        "is genuinely public (a codebook, a documented top-code), never values read from the data.",
    )
    p.add_argument(
        "--warehouse", metavar="URL", help="SQLAlchemy URL (default: the embedded SQLite warehouse)"
    )
    p.add_argument("--table", required=True, metavar="NAME", help="source table (schema.table allowed)")
    p.add_argument("--schema", metavar="S", help="schema of the table")
    p.add_argument("--id-column", action="append", default=[], metavar="C", help="a key column (repeatable)")
    p.add_argument("--target", metavar="C", help="label column for the utility metric (categorical/boolean)")
    p.add_argument("-o", "--output", metavar="SPEC.yaml", help="write the YAML here (default: stdout)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.set_defaults(func=cmd_spec_infer)

    # -- train -----------------------------------------------------------------------------------
    p = add(
        sub,
        "train",
        "Extract a table (streamed) and train a DP generator on it, within the ledger's budget.",
        """
dpsynth train --spec adult.yaml --epsilon 3 --lifetime-epsilon 30 --model adult.dpsynth.zip
dpsynth train --warehouse postgresql+psycopg://etl@db/sales --spec orders.yaml \\
    --query "SELECT * FROM orders WHERE year >= 2020" --epsilon 1 --delta 1e-7 \\
    --param epochs=15 --param batch_size=1000 --model s3://bucket/models/orders.zip""",
        "Order (as the Airflow operators): the catalog is checked against the spec and the ledger is\n"
        "checked, then (ε, δ) is reserved before the first row is read; a failure before that releases\n"
        "the reservation, one after it is charged in full; the actual spend is settled after training.\n"
        "The real train/holdout split is kept in the staging folder for `dpsynth validate`:\n"
        "it holds REAL ROWS -- keep it private, delete it when the release is done.\n\n" + _LOCATIONS_HELP,
    )
    p.add_argument(
        "--warehouse", metavar="URL", help="SQLAlchemy URL (default: the embedded SQLite warehouse)"
    )
    p.add_argument("--spec", required=True, metavar="SPEC.yaml", help="the reviewed TableSpec")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--table", metavar="NAME", help="source table; must be the spec's table (default: it)")
    src.add_argument(
        "--query", metavar="SQL", help="read this SELECT instead (the spec's table names the dataset)"
    )
    add_job_arguments(p, TrainParams)  # every train parameter, as --field-name
    add_job_arguments(p, StageJob)
    p.add_argument("--privacy-scope", metavar="NAME",
                   help="charge this declared scope too (needed when the tables --query reads cannot be determined)")  # fmt: skip
    p.add_argument(
        "--ledger", metavar="URL", help="ledger SQLAlchemy URL (default sqlite:///$DPSYNTH_HOME/ledger.db)"
    )
    p.add_argument(
        "--model", required=True, metavar="OUT", help="where to write the model bundle (path or URI)"
    )
    p.add_argument("--staging", metavar="DIR_OR_URI",
                   help="folder for the real train/holdout split (SENSITIVE; default "
                   "$DPSYNTH_HOME/objects/staging/{table}/{run})")  # fmt: skip
    p.add_argument("--object-store", metavar="URI", help="object store root for the default staging folder")
    p.add_argument("--run-id", help="run id for the ledger and paths (default: generated)")
    p.add_argument("--force", action="store_true", help="overwrite an existing model / staging split")
    p.add_argument("--json", action="store_true", help="print the training manifest as JSON")
    p.set_defaults(func=cmd_train)

    # -- sample ----------------------------------------------------------------------------------
    p = add(
        sub,
        "sample",
        "Sample synthetic rows from a saved DP model (post-processing: spends no privacy budget).",
        """
dpsynth sample --model adult.dpsynth.zip --rows 30000 --seed 1 -o adult_synth.parquet
dpsynth sample --model s3://bucket/models/orders.zip -o s3://bucket/synthetic/orders.parquet""",
        "Re-sampling a saved model any number of times spends nothing: it only post-processes the DP\n"
        "model. --rows defaults to the DP estimate of the source table's row count.",
    )
    p.add_argument("--model", required=True, metavar="URI", help="model bundle (path or URI)")
    p.add_argument("--rows", type=positive_int, metavar="N", help="rows to sample (default: DP row count)")
    p.add_argument("--seed", type=integer, metavar="S", help="sampling seed (default: fresh randomness)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.parquet", help="Parquet path or URI")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_sample)

    # -- validate --------------------------------------------------------------------------------
    p = add(
        sub,
        "validate",
        "Run the release gate on a synthetic file (GX suite, rules, DP NULL rates, privacy thresholds).",
        """
dpsynth validate --model adult.dpsynth.zip --synthetic adult_synth.parquet --report report.html
dpsynth validate --model m.zip --synthetic s.parquet --staging ~/dpsynth/objects/staging/adult/run1 \\
    --max-dcr-share 0.52 --min-nndr 0.5 --max-attack-auc 0.6 --data-docs ./data_docs""",
        "The privacy thresholds apply to metrics computed from the real train/holdout split left by\n"
        "`dpsynth train` (found through <model>.train.json, or --staging); without it they are not\n"
        "checked and a note says so. Those metrics are not DP: treat them as internal. The outcome is\n"
        "written to <synthetic>.validation.json, which `dpsynth publish` requires. Failures are\n"
        "printed one per line on stderr.",
    )
    p.add_argument("--model", required=True, metavar="URI", help="model bundle (path or URI)")
    p.add_argument(
        "--synthetic", required=True, metavar="OUT.parquet", help="synthetic Parquet (path or URI)"
    )
    p.add_argument("--staging", metavar="DIR_OR_URI", help="the train run's staging folder (real rows)")
    add_job_arguments(p, GateJob, only=("max_dcr_share", "min_nndr", "max_attack_auc", "null_rate_tolerance"))
    p.add_argument(
        "--no-privacy-thresholds", action="store_true", help="compute metrics, do not gate on them"
    )
    p.add_argument(
        "--no-metrics", action="store_true", help="do not read the real rows (no privacy thresholds)"
    )
    p.add_argument(
        "--expectations", metavar="SUITE.json", help="extra GX expectations (a GX suite JSON file)"
    )
    p.add_argument("--report", metavar="OUT.html", help="also write the release report here")
    p.add_argument("--data-docs", metavar="DIR", help="build GX Data Docs (HTML) into this local folder")
    p.add_argument("--json", action="store_true", help="print the validation record as JSON")
    p.set_defaults(func=cmd_validate)

    # -- publish ---------------------------------------------------------------------------------
    p = add(
        sub,
        "publish",
        "Publish a validated synthetic file: atomic warehouse swap, Parquet, dbt sources, manifest.",
        """
dpsynth publish --model adult.dpsynth.zip --synthetic adult_synth.parquet
dpsynth publish --warehouse postgresql+psycopg://etl@db/sales --model m.zip --synthetic s.parquet \\
    --schema synthetic --object-store s3://bucket/dpsynth""",
        "Order: Parquet under published/{table}/{run}/ -> warehouse swap (comments saying the table\n"
        "is synthetic with ε/δ, a dpsynth_releases row, one transaction) -> sources.yml ->\n"
        "_manifest.json -> published/{table}/_latest.json. The synthetic file must have a passing\n"
        "`dpsynth validate` record with the same content hash and model.",
    )
    p.add_argument(
        "--warehouse", metavar="URL", help="SQLAlchemy URL (default: the embedded SQLite warehouse)"
    )
    p.add_argument("--model", required=True, metavar="URI", help="model bundle (path or URI)")
    p.add_argument("--synthetic", required=True, metavar="OUT.parquet", help="validated synthetic Parquet")
    p.add_argument("--table-name", metavar="T",
                   help="synthetic table name (default {source}_synthetic; the source's name with --schema)")  # fmt: skip
    p.add_argument("--schema", metavar="S", help="schema of the synthetic table")
    p.add_argument("--object-store", metavar="URI", help="object store root (default $DPSYNTH_HOME/objects)")
    p.add_argument("--dbt-source-name", default="dpsynth", help="dbt source name in sources.yml")
    p.add_argument("--dbt-project-dir", metavar="DIR", help="also write models/dpsynth/<table>.yml there")
    p.add_argument("--run-id", help="release run id (default: generated)")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=cmd_publish)

    # -- report ----------------------------------------------------------------------------------
    p = add(
        sub,
        "report",
        "Render the HTML release report from the model's DP state and the synthetic rows.",
        "dpsynth report --model adult.dpsynth.zip --synthetic adult_synth.parquet -o report.html",
        "The report reads no real row: it shows the synthetic table next to DP estimates already paid\n"
        "for. Aggregate metrics of a matching <synthetic>.validation.json are included when present.",
    )
    p.add_argument("--model", required=True, metavar="URI", help="model bundle (path or URI)")
    p.add_argument(
        "--synthetic", required=True, metavar="OUT.parquet", help="synthetic Parquet (path or URI)"
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT.html", help="HTML path or URI")
    p.set_defaults(func=cmd_report)

    # -- ledger ----------------------------------------------------------------------------------
    ledger_p = add(
        sub,
        "ledger",
        "Inspect the privacy ledger or grant a table's lifetime budget.",
        "dpsynth ledger show --table adult\ndpsynth ledger grant --table adult --epsilon 30 --delta 1e-5",
    )
    ledger_sub = ledger_p.add_subparsers(dest="ledger_command", metavar="LEDGER_COMMAND", parser_class=Parser)
    ledger_sub.required = True
    p = add(
        ledger_sub,
        "show",
        "Show ledger entries and each table's budget (granted, spent incl. open reservations, left).",
        "dpsynth ledger show\ndpsynth ledger show --table adult --json",
    )
    p.add_argument("--table", metavar="T", help="only this source table (resolved in the warehouse)")
    p.add_argument(
        "--warehouse", metavar="URL", help="the warehouse that resolves --table (default: embedded)"
    )
    p.add_argument(
        "--ledger", metavar="URL", help="ledger SQLAlchemy URL (default sqlite:///$DPSYNTH_HOME/ledger.db)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_ledger_show)
    p = add(
        ledger_sub,
        "grant",
        "Set a table's lifetime privacy budget (replaces the grant in force; history is kept).",
        "dpsynth ledger grant --table adult --epsilon 30 --delta 1e-5",
        "Spends already recorded still count against the new grant.",
    )
    p.add_argument("--table", required=True, metavar="T", help="source table (resolved in the warehouse)")
    p.add_argument(
        "--warehouse", metavar="URL", help="the warehouse that resolves --table (default: embedded)"
    )
    p.add_argument("--epsilon", required=True, type=number, metavar="E", help="lifetime ε")
    p.add_argument("--delta", required=True, type=number, metavar="D", help="lifetime δ")
    p.add_argument("--raise", dest="allow_raise", action="store_true",
                   help="allow raising an existing grant (recorded with the old and new values)")  # fmt: skip
    p.add_argument("--note", help="free text recorded with the grant")
    p.add_argument(
        "--ledger", metavar="URL", help="ledger SQLAlchemy URL (default sqlite:///$DPSYNTH_HOME/ledger.db)"
    )
    p.add_argument("--json", action="store_true", help="print the budget status as JSON")
    p.set_defaults(func=cmd_ledger_grant)
    return parser


# ------------------------------------------------------------------------------------------------
# shared helpers


@dataclasses.dataclass
class Env:
    """What every command resolves from the global options."""

    home: Path
    quiet: bool
    verbose: bool
    s3_endpoint_url: str | None
    _store: ObjectStore | None = None

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            from synth_core.object_store import ObjectStore, S3Options

            self._store = ObjectStore(S3Options(endpoint_url=self.s3_endpoint_url))
        return self._store

    def note(self, message: str) -> None:
        """An informational line on stderr (silenced by --quiet)."""
        if not self.quiet:
            print(message, file=sys.stderr)


def _out(line: str = "") -> None:
    print(line, file=sys.stdout)


def _warehouse_engine(url: str | None, env: Env, *, must_exist: bool) -> sa.engine.Engine:
    """An engine for the warehouse; a SQLite file that does not exist is refused when reading."""
    import sqlalchemy as sa

    text = url or default_warehouse_url(env.home)
    try:
        parsed = sa.make_url(text)
    except sa.exc.ArgumentError:
        raise CLIError("the warehouse URL is not a valid SQLAlchemy URL") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(str(parsed.database))
        if must_exist and not path.is_file():
            raise CLIError(f"warehouse database file not found: {path}")
        if not must_exist:
            path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return sa.create_engine(parsed, hide_parameters=True)
    except sa.exc.ArgumentError as exc:  # includes NoSuchModuleError (driver not installed)
        raise CLIError(
            f"cannot use warehouse {parsed.render_as_string(hide_password=True)!r}: {type(exc).__name__} "
            "(is its SQLAlchemy driver installed?)"
        ) from None


def _ledger(url: str | None, env: Env) -> PrivacyLedger:
    import sqlalchemy as sa

    from synth_core.ledger import PrivacyLedger

    text = url or default_ledger_url(env.home)
    try:
        sa.make_url(text)
    except sa.exc.ArgumentError:
        raise CLIError("the ledger URL is not a valid SQLAlchemy URL") from None
    return PrivacyLedger(text)


def _uri(path_or_uri: str) -> str:
    from synth_core.object_store import as_uri

    return as_uri(os.path.expanduser(path_or_uri))


def _exists(store: ObjectStore, uri: str) -> bool:
    return bool(store.exists(uri))


def _read_json(store: ObjectStore, uri: str) -> dict[str, Any] | None:
    """A JSON object at ``uri``, or ``None`` if there is none (or it is not a JSON object)."""
    try:
        raw = store.get_bytes(uri)
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(store: ObjectStore, uri: str, data: Mapping[str, Any]) -> str:
    return store.put_bytes(
        uri, json.dumps(data, indent=1, default=_json_default).encode(), content_type="application/json"
    )


def _json_default(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        return value.item()
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def read_bundle(store: ObjectStore, model: str) -> ModelBundle:
    """The bundle at ``model`` (path or URI): :class:`CLIError` (exit 2) if there is none,
    :class:`~synth_core.errors.BundleError` (exit 5) if it is not a readable dpsynth bundle."""
    from synth_core.pipeline.records import ModelBundle

    uri = _uri(model)
    try:
        return ModelBundle.read(store, uri)
    except (FileNotFoundError, IsADirectoryError):
        raise CLIError(f"model bundle not found: {uri}") from None


def _train_manifest(store: ObjectStore, model_uri: str) -> dict[str, Any] | None:
    return _read_json(store, model_uri + TRAIN_MANIFEST_SUFFIX)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


# ------------------------------------------------------------------------------------------------
# spec infer


def cmd_spec_infer(args: argparse.Namespace, env: Env) -> int:
    from synth_core.spec import TableSpec

    engine = _warehouse_engine(args.warehouse, env, must_exist=True)
    out = Path(os.path.expanduser(args.output)) if args.output else None
    if out is not None and out.exists() and not args.force:
        raise CLIError(f"{out} exists (use --force to overwrite)")
    inferred = TableSpec.infer_from_sqlalchemy(
        engine, args.table, schema=args.schema, id_columns=args.id_column, target=args.target
    )
    # reflected names are SQLAlchemy ``quoted_name`` str subclasses, which yaml.safe_dump refuses
    spec = TableSpec.from_dict(_plain(inferred.to_dict()))
    header = (
        f"# TableSpec of table {spec.name!r}, proposed by `dpsynth spec infer` from the warehouse catalog\n"
        "# (column names, SQL types and nullability only: no row was read).\n"
        "# NOTHING here is declared public: every bound, category domain and datetime range will be\n"
        "# estimated under differential privacy and charged to the release's budget. Review each column\n"
        "# and declare only what is genuinely public (a codebook, a documented top-code), never values\n"
        "# read from the data.\n"
    )
    text = header + spec.to_yaml()
    if out is None:
        sys.stdout.write(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        env.note(f"wrote the spec of {spec.name!r} ({len(spec.columns)} columns) to {out}")
    kinds = ", ".join(f"{k} {sum(1 for c in spec.columns if c.kind.value == k)}" for k in _kinds(spec))
    env.note(f"columns by kind: {kinds}")
    print(
        "reminder: nothing is declared public in this spec -- review it before training; add bounds, "
        "categories or datetime ranges only where they are public knowledge.",
        file=sys.stderr,
    )
    return EXIT_OK


def _plain(value: Any) -> Any:
    """``value`` with str subclasses as plain ``str`` (recursively through dicts and lists)."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _kinds(spec: TableSpec) -> list[str]:
    seen: list[str] = []
    for c in spec.columns:
        if c.kind.value not in seen:
            seen.append(c.kind.value)
    return seen


# ------------------------------------------------------------------------------------------------
# train


class TrainingProgress:
    """Feeds ``fit(progress=...)`` into a progress bar (rich, on a terminal) or plain lines."""

    def __init__(self, env: Env, label: str) -> None:
        self.env = env
        self.label = label
        self.interactive = sys.stderr.isatty() and not env.quiet
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> TrainingProgress:
        if self.interactive:
            try:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    SpinnerColumn,
                    TextColumn,
                    TimeElapsedColumn,
                )
            except ImportError:
                self.interactive = False
            else:
                self._progress = Progress(
                    SpinnerColumn(),
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"),
                    TimeElapsedColumn(),
                    console=Console(stderr=True),
                    transient=False,
                )
                self._progress.start()
                self._task = self._progress.add_task(
                    f"{self.label}: DP preprocessing, noise calibration", total=None, status=""
                )
        if not self.interactive:
            self.env.note(f"{self.label}: DP preprocessing and noise calibration...")
        return self

    def __call__(self, info: Mapping[str, Any]) -> None:
        epoch, epochs = int(info.get("epoch", 0)), int(info.get("epochs", 0))
        status = (
            f"ε so far {float(info.get('epsilon_spent', 0.0)):.3f}"
            f"  ~{float(info.get('eta_s', 0.0)):.0f}s left"
        )
        if self._progress is not None:
            self._progress.update(
                self._task,
                description=f"{self.label}: epoch",
                completed=epoch,
                total=epochs or None,
                status=status,
            )
        else:
            self.env.note(f"{self.label}: epoch {epoch}/{epochs}  {status}")

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def cmd_train(args: argparse.Namespace, env: Env) -> int:
    from synth_core.errors import SpecError
    from synth_core.ledger import budget_scope
    from synth_core.object_store import join_uri
    from synth_core.pipeline.budget import check_budget
    from synth_core.pipeline.entry import check_release_inputs
    from synth_core.pipeline.jobs import TrainJob
    from synth_core.pipeline.layout import RunLayout
    from synth_core.pipeline.train import plan_train, train
    from synth_core.release import stage_source
    from synth_core.spec import TableSpec
    from synth_core.warehouse import iter_table_chunks, warehouse_label

    # 1. arguments and destinations (nothing touched yet)
    params = TrainParams.from_mapping(job_fields_from_args(args, TrainParams))
    stage_job = StageJob.from_mapping(job_fields_from_args(args, StageJob))
    spec = TableSpec.from_yaml(Path(os.path.expanduser(args.spec)))
    if args.table and args.table != spec.name:
        raise SpecError(f"the spec describes table {spec.name!r}, but --table is {args.table!r}")
    store, run_id, model_uri = env.store, args.run_id or new_run_id(), _uri(args.model)
    if _exists(store, model_uri) and not args.force:
        raise CLIError(f"model {model_uri} exists (use --force to overwrite)")
    layout = RunLayout(_root_uri(args.object_store or default_object_store(env.home)), spec.name, run_id)
    staging = _root_uri(os.path.expanduser(args.staging)) if args.staging else layout.staging
    job = TrainJob.from_mapping(
        {**params.to_dict(), "source_table": spec.name, "holdout_fraction": stage_job.holdout_fraction,
         "train_uri": join_uri(staging, "train.parquet"), "spec_uri": join_uri(staging, "spec.yaml"),
         "model_uri": model_uri}
    )  # fmt: skip
    if _exists(store, job.train_uri) and not args.force:
        raise CLIError(f"the staging folder {staging} already holds a split (use --force to overwrite)")

    # 2. the boundary and the catalog (no row is read), the ledger, the generator
    engine = _warehouse_engine(args.warehouse, env, must_exist=True)
    query = args.query or None
    check_release_inputs(
        spec, source_table=spec.name, source_query=query, dialect=engine.dialect.name, params=job
    )
    dtypes, _ = iter_table_chunks(engine, spec, chunk_rows=stage_job.chunk_rows, query=query)
    ledger = _ledger(args.ledger, env)
    scope = budget_scope(engine, table=spec.name, source_query=query, privacy_scope=args.privacy_scope)
    status = check_budget(ledger, params, scope)
    env.note(f"ledger: {status.source_table} has ε {_fmt(status.remaining_epsilon)} of lifetime "
             f"{_fmt(status.lifetime_epsilon)} left; this run plans ε={job.epsilon:.4g}, δ={job.delta:.3g}")  # fmt: skip
    plan = plan_train(job, store, spec=spec, staged=False)
    _finer_progress(plan.synth, env)
    staged: dict[str, Any] = {}

    def stage(run: Any) -> None:  # inside the reservation: a failure before the first row releases it
        staged.update(stage_source(engine, store, spec, staging_uri=staging, holdout_fraction=stage_job.holdout_fraction,
                                   chunk_rows=stage_job.chunk_rows, query=query, on_first_rows=run.mark_private_read))  # fmt: skip
        env.note(f"staged {spec.name!r} under {staging} -- REAL ROWS: keep this folder private")

    # 3. reserve, stage, train, settle (the ledger's failure policy)
    started = time.monotonic()
    with TrainingProgress(env, f"training {job.generator}") as progress:
        trained = train(plan, store, ledger, run_id=run_id, scope=scope, stage=stage, progress=progress)
    status = ledger.status(scope)
    manifest: dict[str, Any] = {
        **trained.to_dict(), **{k: staged[k] for k in ("staging_uri", "train_uri", "holdout_uri", "holdout_fraction", "source_is_query")},
        "run_id": run_id, "warehouse": warehouse_label(engine), "dtypes": dtypes,
        "budget_scope": list(scope.keys), "ledger": scrub_url(args.ledger or default_ledger_url(env.home)),
        "trained_at": dt.datetime.now(dt.UTC).isoformat(), "seconds": round(time.monotonic() - started, 1),
        "budget_after": status.to_dict(),
    }  # fmt: skip
    _write_json(store, model_uri + TRAIN_MANIFEST_SUFFIX, manifest)
    if args.json:
        _out(json.dumps(manifest, indent=1, default=_json_default))
        return EXIT_OK
    _out(f"trained {trained.generator} on {spec.name!r} in {manifest['seconds']:.0f}s (run {run_id})")
    _out(f"privacy  ε spent {trained.epsilon:.4f} (target {job.epsilon:.4g}), δ {trained.delta:.2g}")
    _out(f"ledger   {status.source_table}: ε {_fmt(status.remaining_epsilon)} of lifetime "
         f"{_fmt(status.lifetime_epsilon)} left (δ {_fmt(status.remaining_delta, 3)} of {_fmt(status.lifetime_delta, 3)})")  # fmt: skip
    _out(f"model    {model_uri}")
    _out(f"staging  {staging}  (REAL ROWS, for `dpsynth validate`: keep private, delete when done)")
    return EXIT_OK


def _finer_progress(synth: Any, env: Env) -> None:
    """On a terminal, let the DP-SGD loop report every second (it reports every 10 s by default).

    Only generators built on ``DPSGDConfig`` (``dp_config``) are tuned; others keep their pace."""
    cfg = getattr(synth, "dp_config", None)
    if (
        sys.stderr.isatty()
        and not env.quiet
        and dataclasses.is_dataclass(cfg)
        and not isinstance(cfg, type)
        and hasattr(cfg, "log_every_seconds")
    ):
        synth.dp_config = dataclasses.replace(cfg, log_every_seconds=1.0)


# ------------------------------------------------------------------------------------------------
# sample


def cmd_sample(args: argparse.Namespace, env: Env) -> int:
    from synth_core.pipeline.sample import sample, sample_rows

    store = env.store
    bundle = read_bundle(store, args.model)
    rows = sample_rows(args.rows, _train_manifest(store, bundle.uri), bundle)
    result = sample(store, model_uri=bundle.uri, rows=rows, output_uri=_uri(args.output), seed=args.seed)
    result.update(model_epsilon=bundle.epsilon, model_delta=bundle.delta)
    if args.json:
        _out(json.dumps(result, indent=1))
        return EXIT_OK
    _out(f"sampled {result['rows']} synthetic rows of {bundle.table!r} into {result['synthetic_uri']}")
    _out("privacy  no budget spent: sampling post-processes the DP model "
         f"(its release is ε {bundle.epsilon:.4f}, δ {bundle.delta:.2g})")  # fmt: skip
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# validate


def _staged_split(
    args: argparse.Namespace, store: ObjectStore, train_manifest: Mapping[str, Any] | None
) -> tuple[str, str] | None:
    """``(train_uri, holdout_uri)`` of the real split, or ``None`` when it is not available."""
    from synth_core.object_store import join_uri

    if args.staging:
        staging = _root_uri(os.path.expanduser(args.staging))
        train, holdout = join_uri(staging, "train.parquet"), join_uri(staging, "holdout.parquet")
        missing = [u for u in (train, holdout) if not _exists(store, u)]
        if missing:
            raise CLIError(f"--staging {staging} holds no train/holdout split (missing {', '.join(missing)})")
        return train, holdout
    if train_manifest and train_manifest.get("train_uri") and train_manifest.get("holdout_uri"):
        train, holdout = str(train_manifest["train_uri"]), str(train_manifest["holdout_uri"])
        if _exists(store, train) and _exists(store, holdout):
            return train, holdout
    return None


def _bundle_and_synthetic(
    store: ObjectStore, args: argparse.Namespace
) -> tuple[ModelBundle, str, pd.DataFrame]:
    """``--model``'s bundle, ``--synthetic``'s URI and rows (exit 2 naming a missing file)."""
    bundle = read_bundle(store, args.model)
    synthetic_uri = _uri(args.synthetic)
    try:
        return bundle, synthetic_uri, store.read_parquet(synthetic_uri)
    except FileNotFoundError:
        raise CLIError(f"synthetic file not found: {synthetic_uri}") from None


def cmd_validate(args: argparse.Namespace, env: Env) -> int:
    import tempfile

    from synth_core.pipeline.signing import sign, signing_key
    from synth_core.pipeline.validate import run_gate

    store = env.store
    bundle, synthetic_uri, frame = _bundle_and_synthetic(store, args)
    gate = GateJob.from_mapping(
        job_fields_from_args(args, GateJob), enforce_privacy_thresholds=not args.no_privacy_thresholds
    )
    train_manifest = _train_manifest(store, bundle.uri)
    split = None if args.no_metrics else _staged_split(args, store, train_manifest)
    if split is None and not args.no_metrics:
        print("note: privacy thresholds not checked: the real train/holdout split of the training run is not "
              "available (pass --staging)", file=sys.stderr)  # fmt: skip
    extra = os.path.expanduser(args.expectations) if args.expectations else None
    if extra is not None and not Path(extra).is_file():
        raise CLIError(f"expectations file not found: {extra}")
    with contextlib.ExitStack() as stack:
        docs_dir = (os.path.expanduser(args.data_docs) if args.data_docs
                    else stack.enter_context(tempfile.TemporaryDirectory(prefix="dpsynth-docs-")))  # fmt: skip
        result = run_gate(store, bundle, frame, synthetic_uri=synthetic_uri, gate=gate,
                          dtypes=(train_manifest or {}).get("dtypes"), split=split, extra_expectations=extra,
                          data_docs_dir=docs_dir)  # fmt: skip
    report_uri = (
        _write_report(store, bundle, frame, synthetic_uri, _uri(args.report)) if args.report else None
    )
    record = sign({**result.record, "report_uri": report_uri}, signing_key(env.home))
    record_uri = _write_json(store, synthetic_uri + VALIDATION_SUFFIX, record)
    evaluation_uri = None
    if (
        split is not None
    ):  # the real-data evaluation (observed DCR, NNDR, attack AUC) stays beside the real rows
        evaluation_uri = _write_json(
            store, split[0].rsplit("/", 1)[0] + "/evaluation.json", result.evaluation
        )
    passed, total = record["expectations_passed"], record["expectations_total"]
    if args.json:  # stdout ends up in logs: the record and URIs only, no figure computed on real rows
        _out(json.dumps({**record, "evaluation_uri": evaluation_uri}, indent=1, default=_json_default))
    else:
        _out(f"validation of {bundle.table!r}: {passed}/{total} expectations passed")
        _out(f"record   {record_uri}")
        if evaluation_uri:
            _out(f"metrics  {evaluation_uri}  (computed on real rows: keep private)")
        if report_uri:
            _out(f"report   {report_uri}")
        if args.data_docs and result.outcome.data_docs_index:
            _out(f"docs     {result.outcome.data_docs_index}")
    for warning in result.outcome.warnings():
        print(f"warning (does not block): {warning.summary}", file=sys.stderr)
    if not result.success:
        for line in result.outcome.failure_message(bundle.table).splitlines():
            print(f"FAILED: {line}", file=sys.stderr)
        failed = sum(1 for r in result.outcome.failed() if r.severity == "critical")
        raise CLIError(f"validation of {bundle.table!r} failed: {failed} critical expectation(s); "
                       "nothing may be published", EXIT_VALIDATION)  # fmt: skip
    return EXIT_OK


def _write_report(
    store: ObjectStore, bundle: ModelBundle, frame: pd.DataFrame, synthetic_uri: str, out_uri: str
) -> str:
    """The shareable release report (its only real-data figures are DP outputs)."""
    from synth_core.pipeline.validate import NEIGHBOURING_RELATION
    from synth_core.report import render_release_report

    release = {"table": bundle.table, "generator": bundle.generator, "generator_params": bundle.params,
               "rows": len(frame), "model_uri": bundle.uri, "synthetic_uri": synthetic_uri,
               "neighbouring_relation": NEIGHBOURING_RELATION}  # fmt: skip
    html = render_release_report(spec=bundle.spec, synthetic=frame, transformer_state=bundle.transformer.to_dict(),
                                 privacy=bundle.privacy, release=release)  # fmt: skip
    return store.put_bytes(out_uri, html.encode(), content_type="text/html")


# ------------------------------------------------------------------------------------------------
# publish


def cmd_publish(args: argparse.Namespace, env: Env) -> int:
    from synth_core.pipeline.validate import trusted_record
    from synth_core.release import publish_release, resolve_target

    store = env.store
    bundle = read_bundle(store, args.model)
    synthetic_uri = _uri(args.synthetic)
    if not _exists(store, synthetic_uri):
        raise CLIError(f"synthetic file not found: {synthetic_uri}")
    # names, then the signed validation record, before anything is written
    resolve_target(bundle.table, args.table_name, args.schema, dbt_source_name=args.dbt_source_name)
    validation = trusted_record(
        store, bundle, synthetic_uri, synthetic_uri + VALIDATION_SUFFIX, signing_home=env.home
    )
    train_manifest = _train_manifest(store, bundle.uri) or {}
    done = publish_release(
        _warehouse_engine(args.warehouse, env, must_exist=False), store,
        root_uri=_root_uri(args.object_store or default_object_store(env.home)),
        transformer=bundle.transformer, model=bundle.release_facts(), synthetic_uri=synthetic_uri,
        rows=int(validation["rows"]), run_id=args.run_id or new_run_id(),
        staged=train_manifest or {"source_table": bundle.table}, target_table=args.table_name,
        target_schema=args.schema or None, report_uri=validation.get("report_uri"),
        validation_uri=synthetic_uri + VALIDATION_SUFFIX, dbt_source_name=args.dbt_source_name,
        dbt_project_dir=os.path.expanduser(args.dbt_project_dir) if args.dbt_project_dir else None,
    )  # fmt: skip
    manifest = done.manifest
    if args.json:
        _out(json.dumps({**manifest, "manifest_uri": done.manifest_uri}, indent=1, default=_json_default))
        return EXIT_OK
    _out(f"published {manifest['rows']} synthetic rows of {bundle.table!r} as {manifest['synthetic_table']!r} "
         f"(ε {bundle.epsilon:.4f}, δ {bundle.delta:.2g}) in {manifest['warehouse']}")  # fmt: skip
    _out(f"parquet  {done.parquet_uri}")
    _out(f"manifest {done.manifest_uri}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# report


def cmd_report(args: argparse.Namespace, env: Env) -> int:
    store = env.store
    bundle, synthetic_uri, frame = _bundle_and_synthetic(store, args)
    uri = _write_report(store, bundle, frame, synthetic_uri, _uri(args.output))
    _out(f"report   {uri}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# ledger


def _ledger_url_exists(url: str) -> bool:
    """False for a SQLite ledger file that does not exist yet (``show`` does not create it)."""
    import sqlalchemy as sa

    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise CLIError("the ledger URL is not a valid SQLAlchemy URL") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(str(parsed.database)).is_file()
    return True


def cmd_ledger_show(args: argparse.Namespace, env: Env) -> int:
    url = args.ledger or default_ledger_url(env.home)
    entries: list[dict[str, Any]] = []
    statuses: list[dict[str, Any]] = []
    if _ledger_url_exists(url):
        ledger = _ledger(url, env)
        scope = _table_scope(args, env) if args.table else None
        entries = ledger.entries(scope)
        keys = list(scope.keys) if scope else sorted({str(e["source_table"]) for e in entries})
        statuses = [ledger.status(k).to_dict() for k in keys]
    elif args.table:
        statuses = [
            {"source_table": args.table, "lifetime_epsilon": None, "lifetime_delta": None, "spent_epsilon": 0.0,
             "spent_delta": 0.0, "remaining_epsilon": None, "remaining_delta": None}
        ]  # fmt: skip
    if args.json:
        _out(
            json.dumps(
                {"ledger": scrub_url(url), "tables": statuses, "entries": entries},
                indent=1,
                default=_json_default,
            )
        )
        return EXIT_OK
    _out(f"ledger {scrub_url(url)}")
    if not statuses:
        _out("no entries")
        return EXIT_OK
    _out()
    _table(
        ["table", "lifetime ε", "lifetime δ", "spent ε", "spent δ", "left ε", "left δ"],
        [
            [s["source_table"], _fmt(s["lifetime_epsilon"]), _fmt(s["lifetime_delta"], 3), _fmt(s["spent_epsilon"]),
             _fmt(s["spent_delta"], 3), _fmt(s["remaining_epsilon"]), _fmt(s["remaining_delta"], 3)]
            for s in statuses
        ],
    )  # fmt: skip
    if entries:
        _out()
        _table(
            ["id", "table", "type", "ε", "δ", "run", "reservation", "mechanism", "recorded", "note"],
            [
                [e["entry_id"], e["source_table"], e["entry_type"], _fmt(e["epsilon"]), _fmt(e["delta"], 3),
                 e["run_id"] or "-", e["reservation_id"] or "-", e["mechanism"] or "-",
                 _when(e["recorded_at"]), e["note"] or ""]
                for e in entries
            ],
        )  # fmt: skip
    return EXIT_OK


def _when(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], stream: IO[str] | None = None) -> None:
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for r in cells:
        print(
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=stream or sys.stdout
        )


def _table_scope(args: argparse.Namespace, env: Env) -> BudgetScope:
    """The budget scope of ``--table``: resolved in the warehouse when it exists (the key a run
    reading that table is charged under), else the plain name (carried over on first use)."""
    from synth_core.boundary import check_table_name
    from synth_core.ledger import BudgetScope, budget_scope

    check_table_name(args.table, "--table")
    url = args.warehouse or default_warehouse_url(env.home)
    if not _ledger_url_exists(url):  # an embedded warehouse not created yet
        return BudgetScope.of(args.table)
    return budget_scope(_warehouse_engine(args.warehouse, env, must_exist=True), table=args.table)


def cmd_ledger_grant(args: argparse.Namespace, env: Env) -> int:
    scope = _table_scope(args, env)  # checks --table before the ledger database is created
    ledger = _ledger(args.ledger, env)
    ledger.grant(scope, args.epsilon, args.delta, note=args.note or "granted with `dpsynth ledger grant`",
                 allow_raise=bool(args.allow_raise))  # fmt: skip
    status = ledger.status(scope)
    if args.json:
        _out(json.dumps(status.to_dict(), indent=1))
        return EXIT_OK
    _out(
        f"{status.source_table}: lifetime ε {_fmt(status.lifetime_epsilon)}, δ {_fmt(status.lifetime_delta, 3)}; "
        f"spent ε {_fmt(status.spent_epsilon)}; left ε {_fmt(status.remaining_epsilon)}, "
        f"δ {_fmt(status.remaining_delta, 3)}"
    )
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dpsynth``; returns the exit code (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    verbose, debug = bool(getattr(args, "verbose", False)), bool(getattr(args, "debug", False))
    configure_logging(verbose)
    env = Env(
        home=dpsynth_home(getattr(args, "home", None)),
        quiet=bool(getattr(args, "quiet", False)),
        verbose=verbose,
        s3_endpoint_url=getattr(args, "s3_endpoint_url", None)
        or os.environ.get("DPSYNTH_S3_ENDPOINT_URL")
        or None,
    )
    command = " ".join(p for p in (PROG, args.command, getattr(args, "spec_command", None) or getattr(args, "ledger_command", None)) if p)  # fmt: skip
    try:
        code = int(args.func(args, env))
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # `dpsynth ledger show | head`
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_OK
    except (Exception, KeyboardInterrupt) as exc:
        code = exit_code_for(exc)
        if debug:
            import traceback

            traceback.print_exc()
        message = error_message(exc)
        if code == EXIT_BUDGET and "grant one first" in message:
            message += " (pass --lifetime-epsilon, or run `dpsynth ledger grant`)"
        print(f"{command}: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
