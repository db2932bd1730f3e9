"""Conventions every dpsynth command line shares (``dpsynth``, ``dpsynth-train``, ``dpsynth-sample``):
exit codes, the one mapping from an error to its exit code and one-line message, argument types,
logging, and job options generated from a job dataclass's fields."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import sys
from typing import Any, NoReturn

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


class CLIError(Exception):
    """An error a command line reports as one line with a given exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code of an error (the only place errors meet exit codes)."""
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


def report_error(prog: str, exc: BaseException, *, debug: bool) -> int:
    """Print ``prog: error: <one line>`` on stderr (the traceback too with ``debug``); the exit code."""
    if debug:
        import traceback

        traceback.print_exc()
    print(f"{prog}: error: {error_message(exc)}", file=sys.stderr)
    return exit_code_for(exc)


def configure_logging(verbose: bool) -> None:
    """INFO with ``verbose``, else WARNING; third-party chatter silenced."""
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


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``dpsynth train: error: <reason> (see --help)``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


# ------------------------------------------------------------------------------------------------
# argument types

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def param(text: str) -> tuple[str, Any]:
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


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def number(text: str) -> float:
    """A float; range checks are the pipeline's (the job dataclasses, the ledger)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


_ARG_TYPES: dict[str, Any] = {"float": number, "int": integer, "str": str}


def add_job_arguments(
    parser: argparse.ArgumentParser,
    job_type: type,
    *,
    only: tuple[str, ...] | None = None,
    skip: tuple[str, ...] = (),
    defaults: bool = True,
) -> None:
    """One ``--field-name`` option per field of a job dataclass (its ``help`` metadata), so a new
    job field reaches every command line without touching it. ``generator_params`` becomes the
    repeatable ``--param KEY=VALUE``; ``defaults=False`` leaves unset options ``None`` (a job file
    then supplies them)."""
    for f in dataclasses.fields(job_type):
        if f.name in skip or (only is not None and f.name not in only) or f.metadata.get("cli") is False:
            continue
        help_text = f.metadata.get("help", "")
        if f.name == "generator_params":
            parser.add_argument(
                "--param", action="append", type=param, default=[], metavar="KEY=VALUE",
                help="generator parameter, YAML value (repeatable): epochs=15, hidden=[64,64], device=cpu",
            )  # fmt: skip
            continue
        kind = str(f.type).replace(" | None", "")
        has_default = f.default is not dataclasses.MISSING
        default = f.default if (defaults and has_default) else None
        if has_default and f.default is not None:
            help_text += f" (default {f.default})"
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            type=_ARG_TYPES.get(kind, str),
            default=default,
            required=bool(defaults and not has_default and f.metadata.get("required_on_cli", True)),
            metavar=f.name.split("_")[-1].upper()[:1] or "X",
            help=help_text,
        )


def job_fields_from_args(args: argparse.Namespace, job_type: type) -> dict[str, Any]:
    """The job fields given on the command line (``None`` = not given); ``--param`` pairs become
    ``generator_params`` (a key given twice is a usage error)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(job_type):
        if f.name == "generator_params":
            pairs = getattr(args, "param", None) or []
            params: dict[str, Any] = {}
            for key, value in pairs:
                if key in params:
                    raise CLIError(f"generator parameter {key!r} is given twice")
                params[key] = value
            if params:
                out["generator_params"] = params
        elif getattr(args, f.name, None) is not None:
            out[f.name] = getattr(args, f.name)
    return out
