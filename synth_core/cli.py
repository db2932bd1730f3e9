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
import hashlib
import json
import logging
import math
import os
import re
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

    from synth_core.ledger import PrivacyLedger
    from synth_core.object_store import ObjectStore
    from synth_core.spec import TableSpec
    from synth_core.transformer import TableTransformer

PROG = "dpsynth"

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_BUDGET = 3
EXIT_VALIDATION = 4
EXIT_DATA = 5
EXIT_INTERRUPTED = 130

EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "success"),
    (EXIT_UNEXPECTED, "unexpected error or outage (short message; --debug prints the traceback)"),
    (EXIT_USAGE, "usage error or bad argument (one-line reason on stderr)"),
    (EXIT_BUDGET, "privacy budget exhausted, or no lifetime budget granted, for the table"),
    (EXIT_VALIDATION, "validation failed (release gate; rules unsatisfiable; publish without a pass)"),
    (EXIT_DATA, "bad spec, missing or empty table, data not fitting the spec, bad model bundle"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
)

DEFAULT_GENERATOR = "dp_tvae"
TRAIN_MANIFEST_SUFFIX = ".train.json"
VALIDATION_SUFFIX = ".validation.json"

log = logging.getLogger("synth_core.cli")


class CLIError(Exception):
    """An error the CLI reports as one line with a given exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


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


def _safe_url(url: str) -> str:
    """A SQLAlchemy URL for messages: the password masked."""
    import sqlalchemy as sa

    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def _root_uri(value: str) -> str:
    from synth_core.object_store import as_uri

    return as_uri(value).rstrip("/")


# ------------------------------------------------------------------------------------------------
# argument parsing


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``dpsynth train: error: <reason> (see --help)``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


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


def _param(text: str) -> tuple[str, Any]:
    """``key=value`` with a YAML value (``epochs=3``, ``hidden=[64,64]``, ``device=cpu``)."""
    import yaml

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected key=value (e.g. epochs=10), got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"the value of parameter {key!r} is not valid YAML") from None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
    return key, value


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _number(text: str) -> float:
    """A float; range checks are the library's (``PrivacyBudget``, the ledger), as in the operators."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
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
    parser = _Parser(
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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
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
    spec_sub = spec_p.add_subparsers(dest="spec_command", metavar="SPEC_COMMAND", parser_class=_Parser)
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
    p.add_argument("--epsilon", required=True, type=_number, metavar="E", help="target ε of this release")
    p.add_argument("--delta", type=_number, default=1e-6, metavar="D", help="target δ (default 1e-6)")
    p.add_argument(
        "--generator", default=DEFAULT_GENERATOR, help=f"generator name (default {DEFAULT_GENERATOR})"
    )
    p.add_argument(
        "--param", action="append", type=_param, default=[], metavar="KEY=VALUE",
        help="generator parameter, YAML value (repeatable): epochs=15, hidden=[64,64], device=cpu",
    )  # fmt: skip
    p.add_argument("--preprocessing-fraction", type=_number, default=0.1, metavar="F",
                   help="budget share for DP bounds/quantiles/domains (default 0.1)")  # fmt: skip
    p.add_argument("--lifetime-epsilon", type=_number, metavar="L",
                   help="grant this lifetime ε if the table has no budget yet (never changes a grant)")  # fmt: skip
    p.add_argument(
        "--lifetime-delta", type=_number, metavar="LD", help="lifetime δ of that grant (default 10·δ)"
    )
    p.add_argument(
        "--ledger", metavar="URL", help="ledger SQLAlchemy URL (default sqlite:///$DPSYNTH_HOME/ledger.db)"
    )
    p.add_argument(
        "--model", required=True, metavar="OUT", help="where to write the model bundle (path or URI)"
    )
    p.add_argument("--holdout-fraction", type=_number, default=0.2, metavar="F",
                   help="share of real rows kept out of training for evaluation (default 0.2)")  # fmt: skip
    p.add_argument("--staging", metavar="DIR_OR_URI",
                   help="folder for the real train/holdout split (SENSITIVE; default "
                   "$DPSYNTH_HOME/objects/staging/{table}/{run})")  # fmt: skip
    p.add_argument("--object-store", metavar="URI", help="object store root for the default staging folder")
    p.add_argument(
        "--seed", type=_int, help="seeds model initialisation only (DP noise always uses OS entropy)"
    )
    p.add_argument(
        "--chunk-rows", type=_positive_int, default=50_000, metavar="N", help="rows per read chunk"
    )
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
    p.add_argument("--rows", type=_positive_int, metavar="N", help="rows to sample (default: DP row count)")
    p.add_argument("--seed", type=_int, metavar="S", help="sampling seed (default: fresh randomness)")
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
    p.add_argument("--max-dcr-share", type=_fraction, default=0.52, metavar="X", help="default 0.52")
    p.add_argument("--min-nndr", type=_fraction, default=0.5, metavar="X", help="default 0.5")
    p.add_argument("--max-attack-auc", type=_fraction, default=0.60, metavar="X", help="default 0.60")
    p.add_argument("--null-rate-tolerance", type=_fraction, default=0.05, metavar="X",
                   help="allowed distance of NULL rates from the model's DP estimate (default 0.05)")  # fmt: skip
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
    ledger_sub = ledger_p.add_subparsers(
        dest="ledger_command", metavar="LEDGER_COMMAND", parser_class=_Parser
    )
    ledger_sub.required = True
    p = add(
        ledger_sub,
        "show",
        "Show ledger entries and each table's budget (granted, spent incl. open reservations, left).",
        "dpsynth ledger show\ndpsynth ledger show --table adult --json",
    )
    p.add_argument("--table", metavar="T", help="only this source table")
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
    p.add_argument("--table", required=True, metavar="T", help="source table")
    p.add_argument("--epsilon", required=True, type=_number, metavar="E", help="lifetime ε")
    p.add_argument("--delta", required=True, type=_number, metavar="D", help="lifetime δ")
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


def _sha256(store: ObjectStore, uri: str) -> str:
    from synth_core.object_store import local_path

    if uri.startswith("file://"):
        path = local_path(uri)
        if not path.is_file():
            raise FileNotFoundError(f"no object at {uri}")
        with path.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    return hashlib.sha256(store.get_bytes(uri)).hexdigest()


@dataclasses.dataclass
class Bundle:
    """A model bundle's metadata, read without torch (spec, transformer, privacy, generator)."""

    uri: str
    sha256: str
    generator: str
    params: dict[str, Any]
    privacy: dict[str, Any]
    training: dict[str, Any]
    transformer: TableTransformer
    raw: bytes

    @property
    def spec(self) -> TableSpec:
        return self.transformer.spec

    @property
    def table(self) -> str:
        return self.transformer.spec.name

    @property
    def epsilon(self) -> float:
        return float(self.privacy["epsilon"])

    @property
    def delta(self) -> float:
        return float(self.privacy["delta"])

    @property
    def target_epsilon(self) -> float:
        return float(self.privacy.get("target_epsilon") or self.privacy["epsilon"])


def read_bundle(store: ObjectStore, model: str) -> Bundle:
    """The bundle at ``model`` (path or URI): :class:`CLIError` (exit 2) if there is none,
    :class:`~synth_core.errors.BundleError` (exit 5) if it is not a readable dpsynth bundle."""
    from synth_core.bundle import read_bundle_metadata
    from synth_core.errors import BundleError
    from synth_core.transformer import TableTransformer

    uri = _uri(model)
    try:
        data = store.get_bytes(uri)
    except (FileNotFoundError, IsADirectoryError):
        raise CLIError(f"model bundle not found: {uri}") from None
    try:
        meta = read_bundle_metadata(data)
    except BundleError as exc:
        raise BundleError(f"{uri}: {exc}") from None
    try:
        transformer = TableTransformer.from_dict(meta["transformer"])
        privacy = dict(meta["privacy"] or {})
        float(privacy["epsilon"]), float(privacy["delta"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{uri}: the model bundle is incomplete ({exc.__class__.__name__})") from None
    return Bundle(
        uri=uri,
        sha256=hashlib.sha256(data).hexdigest(),
        generator=str(meta.get("generator")),
        params=dict(meta.get("params") or {}),
        privacy=privacy,
        training=dict(meta.get("training") or {}),
        transformer=transformer,
        raw=data,
    )


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
            f"loss {float(info.get('loss', math.nan)):.4g}  ε so far {float(info.get('epsilon_spent', 0.0)):.3f}"
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
    from synth_core.errors import ParameterError, SpecError
    from synth_core.object_store import join_uri
    from synth_core.privacy import PrivacyBudget
    from synth_core.release import run_key, stage_source
    from synth_core.spec import TableSpec
    from synth_core.warehouse import iter_table_chunks

    # 1. arguments and destinations (nothing touched yet)
    budget = PrivacyBudget(args.epsilon, args.delta, preprocessing_fraction=args.preprocessing_fraction)
    if not (0.0 < args.holdout_fraction < 0.9):
        raise ParameterError(f"holdout_fraction must be in (0, 0.9), got {args.holdout_fraction!r}")
    params: dict[str, Any] = {}
    for key, value in args.param:
        if key in params:
            raise CLIError(f"generator parameter {key!r} is given twice")
        params[key] = value
    spec = TableSpec.from_yaml(Path(os.path.expanduser(args.spec)))
    if args.table and args.table != spec.name:
        raise SpecError(f"the spec describes table {spec.name!r}, but --table is {args.table!r}")
    table = spec.name
    store = env.store
    run_id = args.run_id or new_run_id()
    model_uri = _uri(args.model)
    if _exists(store, model_uri) and not args.force:
        raise CLIError(f"model {model_uri} exists (use --force to overwrite)")
    root = _root_uri(args.object_store or default_object_store(env.home))
    staging = (
        _root_uri(os.path.expanduser(args.staging))
        if args.staging
        else join_uri(root, "staging", table, run_key(run_id))
    )
    train_uri, holdout_uri = join_uri(staging, "train.parquet"), join_uri(staging, "holdout.parquet")
    if _exists(store, train_uri) and not args.force:
        raise CLIError(f"the staging folder {staging} already holds a split (use --force to overwrite)")

    # 2. the catalog (no row is read): the table exists, its columns and SQL types fit the spec
    engine = _warehouse_engine(args.warehouse, env, must_exist=True)
    dtypes, _ = iter_table_chunks(engine, spec, chunk_rows=args.chunk_rows, query=args.query or None)

    # 3. the ledger before any row is read (grant if asked, then check), then the generator
    ledger = _ledger(args.ledger, env)
    if args.lifetime_epsilon is not None:
        ledger.ensure_grant(table, args.lifetime_epsilon, args.lifetime_delta or budget.delta * 10)
    status = ledger.check(table, budget.epsilon, budget.delta)
    env.note(
        f"ledger: table {table!r} has ε {_fmt(status.remaining_epsilon)} of lifetime "
        f"{_fmt(status.lifetime_epsilon)} left; this run plans ε={budget.epsilon:.4g}, δ={budget.delta:.3g}"
    )
    from synth_core.generators import create_synthesizer

    synth = create_synthesizer(args.generator, **params)

    # 4. reserve, then read: released if the run fails before a row was read, charged in full after
    reservation = ledger.reserve(table, budget.epsilon, budget.delta, run_id=run_id, mechanism=args.generator)
    env.note(
        f"ledger: reserved ε={budget.epsilon:.4g}, δ={budget.delta:.3g} for {table!r} (reservation {reservation})"
    )
    read: list[bool] = []
    try:
        staged = stage_source(
            engine, store, spec, staging_uri=staging, holdout_fraction=args.holdout_fraction,
            chunk_rows=args.chunk_rows, query=args.query or None, on_first_rows=lambda: read.append(True),
        )  # fmt: skip
        rows_train, rows_holdout = staged["rows_train"], staged["rows_holdout"]
        env.note(
            f"staged {rows_train + rows_holdout} rows of {table!r} ({rows_train} train, {rows_holdout} holdout) "
            f"under {staging} -- REAL ROWS: keep this folder private"
        )
        train = store.read_parquet(train_uri)
        _finer_progress(synth, env)
        started = time.monotonic()
        with TrainingProgress(env, f"training {args.generator}") as progress:
            synth.fit(train, spec, budget, seed=args.seed, progress=progress)
        seconds = time.monotonic() - started
        assert synth.privacy_ is not None and synth.transformer_ is not None
        spent_eps, spent_delta = float(synth.privacy_["epsilon"]), float(synth.privacy_["delta"])
        synth.save(model_uri, store=store)
        ledger.settle(reservation, spent_eps, spent_delta, note=f"model {model_uri}")
    except BaseException:
        _close_reservation(ledger, reservation, touched=bool(read), env=env)
        raise
    status = ledger.status(table)
    manifest: dict[str, Any] = {
        "source_table": table,
        "run_id": run_id,
        "warehouse": engine.url.render_as_string(hide_password=True),
        "source_is_query": bool(args.query),
        "staging_uri": staging,
        "train_uri": train_uri,
        "holdout_uri": holdout_uri,
        "rows_total": rows_train + rows_holdout,
        "rows_train": rows_train,
        "rows_holdout": rows_holdout,
        "holdout_fraction": float(args.holdout_fraction),
        "dtypes": dtypes,
        "model_uri": model_uri,
        "generator": args.generator,
        "generator_params": synth.params,
        "epsilon": spent_eps,
        "delta": spent_delta,
        "target_epsilon": budget.epsilon,
        "target_delta": budget.delta,
        "rows_trained": len(train),
        # the DP count of the training rows scaled by the (public) holdout fraction: the default
        # size of the synthetic replacement table (as the train operator computes it)
        "dp_source_rows": round(synth.transformer_.dp_row_count / (1.0 - float(args.holdout_fraction))),
        "reservation_id": reservation,
        "ledger": _safe_url(args.ledger or default_ledger_url(env.home)),
        "trained_at": dt.datetime.now(dt.UTC).isoformat(),
        "seconds": round(seconds, 1),
        "budget_after": status.to_dict(),
    }
    _write_json(store, model_uri + TRAIN_MANIFEST_SUFFIX, manifest)
    if args.json:
        _out(json.dumps(manifest, indent=1, default=_json_default))
        return EXIT_OK
    _out(f"trained {args.generator} on {len(train)} rows of {table!r} in {seconds:.0f}s (run {run_id})")
    _out(f"privacy  ε spent {spent_eps:.4f} (target {budget.epsilon:.4g}), δ {spent_delta:.2g}")
    _out(
        f"ledger   table {table!r}: ε {_fmt(status.remaining_epsilon)} of lifetime {_fmt(status.lifetime_epsilon)} "
        f"left (δ {_fmt(status.remaining_delta, 3)} of {_fmt(status.lifetime_delta, 3)})"
    )
    _out(f"model    {model_uri}")
    _out(f"staging  {staging}  (REAL ROWS, for `dpsynth validate`: keep private, delete when done)")
    return EXIT_OK


def _close_reservation(ledger: PrivacyLedger, reservation: int, *, touched: bool, env: Env) -> None:
    """Release the reservation of a run that read no row; charge it in full otherwise."""
    try:
        if touched:
            ledger.settle_in_full(reservation, note="run failed after reading private rows: charged in full")
            print(
                f"ledger: the run failed after reading rows: reservation {reservation} is charged in full",
                file=sys.stderr,
            )
        else:
            ledger.release(reservation, note="failed before reading private rows")
            env.note(f"ledger: released reservation {reservation} (no row was read)")
    except Exception as exc:  # the ledger failing too: an open reservation still counts as spent
        print(
            f"ledger: could not close reservation {reservation} ({type(exc).__name__}); "
            "it stays open and counts as spent",
            file=sys.stderr,
        )


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
    store = env.store
    bundle = read_bundle(store, args.model)
    out_uri = _uri(args.output)
    rows = args.rows
    if rows is None:
        manifest = _train_manifest(store, bundle.uri) or {}
        rows = int(manifest.get("dp_source_rows") or 0) or bundle.transformer.dp_row_count
    from synth_core.generators import Synthesizer

    synth = Synthesizer.from_bytes(bundle.raw)
    started = time.monotonic()
    frame = synth.sample(int(rows), seed=args.seed)
    store.write_parquet(out_uri, frame)
    result = {
        "source_table": bundle.table,
        "model_uri": bundle.uri,
        "synthetic_uri": out_uri,
        "rows": len(frame),
        "seed": args.seed,
        "epsilon_spent": 0.0,
        "model_epsilon": bundle.epsilon,
        "model_delta": bundle.delta,
        "seconds": round(time.monotonic() - started, 1),
    }
    if args.json:
        _out(json.dumps(result, indent=1))
        return EXIT_OK
    _out(f"sampled {len(frame)} synthetic rows of {bundle.table!r} into {out_uri}")
    _out(
        "privacy  no budget spent: sampling post-processes the DP model "
        f"(its release is ε {bundle.epsilon:.4f}, δ {bundle.delta:.2g})"
    )
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


def cmd_validate(args: argparse.Namespace, env: Env) -> int:
    import tempfile

    from synth_core.metrics import evaluate_release

    store = env.store
    bundle = read_bundle(store, args.model)
    synthetic_uri = _uri(args.synthetic)
    try:
        frame = store.read_parquet(synthetic_uri)
        digest = _sha256(store, synthetic_uri)
    except FileNotFoundError:
        raise CLIError(f"synthetic file not found: {synthetic_uri}") from None
    spec, transformer, table = bundle.spec, bundle.transformer, bundle.table
    train_manifest = _train_manifest(store, bundle.uri)
    split = None if args.no_metrics else _staged_split(args, store, train_manifest)
    metrics: dict[str, Any] = {}
    if split is not None:
        env.note(f"computing release metrics against the real split under {split[0].rsplit('/', 1)[0]}")
        metrics = dict(
            evaluate_release(store.read_parquet(split[0]), store.read_parquet(split[1]), frame, spec)
        )
    enforce = split is not None and not args.no_privacy_thresholds
    if split is None and not args.no_metrics:
        print(
            "note: privacy thresholds not checked: the real train/holdout split of the training run is not "
            "available (pass --staging)",
            file=sys.stderr,
        )
    release_metrics = None
    thresholds = None
    if enforce:
        from synth_expectations import PrivacyThresholds, gate_metrics

        release_metrics = gate_metrics(metrics, epsilon=bundle.epsilon, target_epsilon=bundle.target_epsilon)
        thresholds = PrivacyThresholds(
            max_dcr_share=args.max_dcr_share, min_nndr=args.min_nndr, max_attack_auc=args.max_attack_auc
        )
    dtypes = dict((train_manifest or {}).get("dtypes") or transformer.output_dtypes)
    extra = os.path.expanduser(args.expectations) if args.expectations else None
    if extra is not None and not Path(extra).is_file():
        raise CLIError(f"expectations file not found: {extra}")
    from synth_expectations import validate_frame

    with contextlib.ExitStack() as stack:
        docs_dir = (
            os.path.expanduser(args.data_docs)
            if args.data_docs
            else stack.enter_context(tempfile.TemporaryDirectory(prefix="dpsynth-docs-"))
        )
        outcome = validate_frame(
            frame,
            spec,
            dtypes,
            domains=transformer.dp_domains(),
            ranges=transformer.dp_ranges(),
            row_count=len(frame),
            null_rates=transformer.dp_null_rates(),
            null_rate_tolerance=args.null_rate_tolerance,
            release_metrics=release_metrics,
            privacy_thresholds=thresholds,
            extra_expectations=extra,
            data_docs_dir=docs_dir,
        )
    data_docs = outcome.data_docs_index if args.data_docs else None
    report_uri = None
    if args.report:
        report_uri = _write_report(store, bundle, frame, synthetic_uri, metrics, _uri(args.report))
    passed = sum(1 for r in outcome.results if r.success)
    record = {
        "success": bool(outcome.success),
        "source_table": table,
        "synthetic_uri": synthetic_uri,
        "synthetic_sha256": digest,
        "rows": len(frame),
        "model_uri": bundle.uri,
        "model_sha256": bundle.sha256,
        "epsilon": bundle.epsilon,
        "delta": bundle.delta,
        "target_epsilon": bundle.target_epsilon,
        "generator": bundle.generator,
        "privacy_thresholds_checked": enforce,
        "privacy_thresholds": thresholds.to_dict() if thresholds is not None else None,
        "null_rate_tolerance": args.null_rate_tolerance,
        "metrics": metrics,
        "report_uri": report_uri,
        "data_docs_index": data_docs,
        "validated_at": dt.datetime.now(dt.UTC).isoformat(),
        "expectations_passed": passed,
        "expectations_total": len(outcome.results),
        "outcome": outcome.to_dict(),
    }
    record_uri = _write_json(store, synthetic_uri + VALIDATION_SUFFIX, record)
    if args.json:
        _out(json.dumps(record, indent=1, default=_json_default))
    else:
        _out(f"validation of {table!r}: {passed}/{len(outcome.results)} expectations passed")
        for key, value in metrics.items():
            _out(f"metric   {key} = {_fmt(value) if isinstance(value, float) else value}")
        _out(f"record   {record_uri}")
        if report_uri:
            _out(f"report   {report_uri}")
        if data_docs:
            _out(f"docs     {data_docs}")
    for warning in outcome.warnings():
        print(f"warning (does not block): {warning.summary}", file=sys.stderr)
    if not outcome.success:
        for line in outcome.failure_message(table).splitlines():
            print(f"FAILED: {line}", file=sys.stderr)
        failed = sum(1 for r in outcome.failed() if r.severity == "critical")
        raise CLIError(
            f"validation of {table!r} failed: {failed} critical expectation(s); nothing may be published",
            EXIT_VALIDATION,
        )
    return EXIT_OK


def _write_report(
    store: ObjectStore,
    bundle: Bundle,
    frame: pd.DataFrame,
    synthetic_uri: str,
    metrics: Mapping[str, Any],
    out_uri: str,
) -> str:
    from synth_core.report import render_release_report

    release = {
        "table": bundle.table,
        "generator": bundle.generator,
        "generator_params": bundle.params,
        "rows": len(frame),
        "model_uri": bundle.uri,
        "synthetic_uri": synthetic_uri,
    }
    html = render_release_report(
        spec=bundle.spec,
        synthetic=frame,
        transformer_state=bundle.transformer.to_dict(),
        privacy=bundle.privacy,
        metrics=metrics,
        release=release,
    )
    return store.put_bytes(out_uri, html.encode(), content_type="text/html")


# ------------------------------------------------------------------------------------------------
# publish


def _passing_validation(store: ObjectStore, synthetic_uri: str, bundle: Bundle) -> dict[str, Any]:
    """The validation record of exactly this synthetic file and model, which must have passed."""
    from synth_core.errors import ValidationFailedError

    record = _read_json(store, synthetic_uri + VALIDATION_SUFFIX)
    hint = f"run `dpsynth validate --model {bundle.uri} --synthetic {synthetic_uri}` first"
    if record is None:
        raise ValidationFailedError(
            f"{synthetic_uri} has no validation record; nothing is published ({hint})"
        )
    digest = _sha256(store, synthetic_uri)
    if record.get("synthetic_sha256") != digest:
        raise ValidationFailedError(
            f"{synthetic_uri} changed since it was validated; nothing is published ({hint})"
        )
    if record.get("model_sha256") != bundle.sha256:
        raise ValidationFailedError(
            f"{synthetic_uri} was validated against another model bundle; nothing is published ({hint})"
        )
    if not record.get("success"):
        raise ValidationFailedError(
            f"{synthetic_uri} did not pass validation; nothing is published (see {synthetic_uri}{VALIDATION_SUFFIX})"
        )
    return record


def cmd_publish(args: argparse.Namespace, env: Env) -> int:
    from synth_core.release import publish_release
    from synth_core.warehouse import split_table_name

    store = env.store
    bundle = read_bundle(store, args.model)
    synthetic_uri = _uri(args.synthetic)
    if not _exists(store, synthetic_uri):
        raise CLIError(f"synthetic file not found: {synthetic_uri}")
    validation = _passing_validation(store, synthetic_uri, bundle)
    train_manifest = _train_manifest(store, bundle.uri) or {}
    transformer, table = bundle.transformer, bundle.table
    source_schema, source_name = split_table_name(table)
    schema = args.schema or None
    target = args.table_name or (source_name if schema else f"{source_name}_synthetic")
    if "." in target:
        raise CLIError(f"--table-name {target!r} must not hold a schema: use --schema")
    if (schema, target) == (source_schema, source_name):
        raise CLIError(
            f"the synthetic table would replace the source table {table!r}: choose --table-name or --schema"
        )
    engine = _warehouse_engine(args.warehouse, env, must_exist=False)
    run_id = args.run_id or new_run_id()
    root = _root_uri(args.object_store or default_object_store(env.home))
    rows = int(validation["rows"])
    done = publish_release(
        engine,
        store,
        root_uri=root,
        transformer=transformer,
        model={
            "model_uri": bundle.uri, "generator": bundle.generator, "epsilon": bundle.epsilon,
            "delta": bundle.delta, "target_epsilon": bundle.target_epsilon,
        },
        synthetic_uri=synthetic_uri,
        rows=rows,
        run_id=run_id,
        staged=train_manifest or {"source_table": table},
        target_table=target,
        target_schema=schema,
        report_uri=validation.get("report_uri"),
        validation_uri=synthetic_uri + VALIDATION_SUFFIX,
        dbt_source_name=args.dbt_source_name,
        dbt_project_dir=os.path.expanduser(args.dbt_project_dir) if args.dbt_project_dir else None,
    )  # fmt: skip
    manifest, manifest_uri, parquet_uri = done.manifest, done.manifest_uri, done.parquet_uri
    if args.json:
        _out(json.dumps({**manifest, "manifest_uri": manifest_uri}, indent=1, default=_json_default))
        return EXIT_OK
    _out(
        f"published {rows} synthetic rows of {table!r} as {manifest['synthetic_table']!r} "
        f"(ε {bundle.epsilon:.4f}, δ {bundle.delta:.2g}) in {manifest['warehouse']}"
    )
    _out(f"parquet  {parquet_uri}")
    _out(f"manifest {manifest_uri}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# report


def cmd_report(args: argparse.Namespace, env: Env) -> int:
    store = env.store
    bundle = read_bundle(store, args.model)
    synthetic_uri = _uri(args.synthetic)
    try:
        frame = store.read_parquet(synthetic_uri)
    except FileNotFoundError:
        raise CLIError(f"synthetic file not found: {synthetic_uri}") from None
    metrics: dict[str, Any] = {}
    record = _read_json(store, synthetic_uri + VALIDATION_SUFFIX)
    if record and record.get("synthetic_sha256") == _sha256(store, synthetic_uri):
        metrics = dict(record.get("metrics") or {})
    uri = _write_report(store, bundle, frame, synthetic_uri, metrics, _uri(args.output))
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
        entries = ledger.entries(args.table)
        tables = [args.table] if args.table else sorted({str(e["source_table"]) for e in entries})
        statuses = [ledger.status(t).to_dict() for t in tables]
    elif args.table:
        statuses = [
            {"source_table": args.table, "lifetime_epsilon": None, "lifetime_delta": None, "spent_epsilon": 0.0,
             "spent_delta": 0.0, "remaining_epsilon": None, "remaining_delta": None}
        ]  # fmt: skip
    if args.json:
        _out(
            json.dumps(
                {"ledger": _safe_url(url), "tables": statuses, "entries": entries},
                indent=1,
                default=_json_default,
            )
        )
        return EXIT_OK
    _out(f"ledger {_safe_url(url)}")
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


def cmd_ledger_grant(args: argparse.Namespace, env: Env) -> int:
    ledger = _ledger(args.ledger, env)
    ledger.grant(
        args.table, args.epsilon, args.delta, note=args.note or "granted with `dpsynth ledger grant`"
    )
    status = ledger.status(args.table)
    if args.json:
        _out(json.dumps(status.to_dict(), indent=1))
        return EXIT_OK
    _out(
        f"table {args.table!r}: lifetime ε {_fmt(status.lifetime_epsilon)}, δ {_fmt(status.lifetime_delta, 3)}; "
        f"spent ε {_fmt(status.spent_epsilon)}; left ε {_fmt(status.remaining_epsilon)}, "
        f"δ {_fmt(status.remaining_delta, 3)}"
    )
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# entry point


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code of an error."""
    if isinstance(exc, CLIError):
        return exc.code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    from synth_core.errors import (
        BudgetExceededError,
        BundleError,
        NonRetryableError,
        ParameterError,
        SourceTableError,
        SpecError,
        ValidationFailedError,
    )

    if isinstance(exc, BudgetExceededError):
        return EXIT_BUDGET
    if isinstance(exc, ValidationFailedError):
        return EXIT_VALIDATION
    if isinstance(exc, NonRetryableError):
        from synth_core.rules import RuleUnsatisfiableError

        if isinstance(exc, RuleUnsatisfiableError):  # sampling cannot satisfy the spec's rules
            return EXIT_VALIDATION
    if isinstance(exc, SpecError | SourceTableError | BundleError):
        return EXIT_DATA
    if isinstance(exc, ParameterError):
        return EXIT_USAGE
    if isinstance(exc, NonRetryableError):
        return EXIT_DATA
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return EXIT_USAGE
    return EXIT_UNEXPECTED


def error_message(exc: BaseException) -> str:
    """One line for the error: dpsynth's own messages (which never hold cell values); for anything
    else only its type (third-party messages may quote data), or the path of a file error."""
    from synth_core.errors import DPSynthError

    if isinstance(exc, CLIError | DPSynthError):
        text = str(exc)
    elif isinstance(exc, KeyboardInterrupt):
        text = "interrupted"
    elif isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.strerror or type(exc).__name__}: {exc.filename}"
    elif isinstance(exc, FileNotFoundError):  # e.g. the object store's "no object at <uri>"
        text = str(exc)
    else:
        origin = getattr(exc, "orig", None)  # SQLAlchemy DBAPI errors: name the driver's error class only
        detail = f" ({type(origin).__name__})" if origin is not None else ""
        text = f"unexpected {type(exc).__name__}{detail}; rerun with --debug for the traceback"
    return " ".join(text.split()) or type(exc).__name__


def _configure_logging(verbose: bool) -> None:
    import warnings

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        for name in ("great_expectations", "opacus", "matplotlib"):
            logging.getLogger(name).setLevel(logging.ERROR)
        # Opacus ghost clipping: benign (the model inputs never require gradients)
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dpsynth``; returns the exit code (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    verbose, debug = bool(getattr(args, "verbose", False)), bool(getattr(args, "debug", False))
    _configure_logging(verbose)
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
