"""The boundary checks: what dpsynth refuses from names, keys, SQL, URLs, specs and numbers.

Everything a user or a file hands dpsynth — table, schema, column and target names, object keys,
a ``source_query``, connection URLs, table specs, training parameters, model bundles — is treated as
hostile. The release pipeline calls these checks once, at its entry, before any private row is read
or any budget is reserved; the modules that touch the data (:mod:`synth_core.warehouse`,
:mod:`synth_core.object_store`, :mod:`synth_core.spec`, :mod:`synth_core.bundle`) call them again
where they act, so a check holds whatever calls them.

Every refusal is a :class:`~synth_core.errors.NonRetryableError` (retrying the same input cannot
help) whose message names the parameter and the limit and shows at most a short, escaped prefix of
the offending text (:func:`describe`), never a secret and never a cell value.

Limits are module constants, documented where they are defined.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from synth_core.errors import ParameterError, SpecError

if TYPE_CHECKING:
    from synth_core.spec import TableSpec

# -- identifiers -----------------------------------------------------------------------------------

#: The one rule for table, schema, column and target names: a letter or underscore, then letters,
#: digits and underscores (the dbt identifier rule; such a name needs no quoting in a path, an object
#: key, a YAML file or a dbt model, and SQL still quotes it where case matters).
IDENTIFIER_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Longest identifier, in characters: PostgreSQL truncates names past 63 bytes (MySQL allows 64).
MAX_IDENTIFIER_CHARS = 63
#: How much of a refused value an error message shows (escaped by ``repr``).
MESSAGE_PREVIEW_CHARS = 40


def describe(value: object, limit: int = MESSAGE_PREVIEW_CHARS) -> str:
    """A short, escaped rendering of hostile text for an error message: ``repr`` of at most
    ``limit`` characters (control characters escaped), with the full length when cut."""
    text = value if isinstance(value, str) else str(type(value).__name__)
    if not isinstance(value, str):
        return f"<{text}>"
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} characters)"


def check_identifier(name: Any, what: str) -> str:
    """``name`` if it is an identifier by :data:`IDENTIFIER_PATTERN` and at most
    :data:`MAX_IDENTIFIER_CHARS` long.

    Args:
        name: the name to check.
        what: what the name is, for the message (``"table"``, ``"column"``, ``"target_schema"``...).

    Raises:
        ParameterError: naming ``what`` and the rule.
    """
    if not isinstance(name, str) or not name:
        raise ParameterError(f"{what} must be a non-empty name, got {describe(name)}")
    if len(name) > MAX_IDENTIFIER_CHARS:
        raise ParameterError(f"{what} {describe(name)} is longer than {MAX_IDENTIFIER_CHARS} characters")
    if not IDENTIFIER_PATTERN.fullmatch(name):
        raise ParameterError(
            f"{what} {describe(name)} is not an identifier: use letters, digits and underscores, "
            "starting with a letter or underscore"
        )
    return name


def check_table_name(name: Any, what: str = "table") -> str:
    """``name`` if it is ``table`` or ``schema.table`` with each part an identifier
    (:func:`check_identifier`)."""
    if not isinstance(name, str):
        raise ParameterError(f"{what} must be a name, got {describe(name)}")
    parts = name.split(".")
    if len(parts) > 2:
        raise ParameterError(f"{what} {describe(name)} must be 'table' or 'schema.table'")
    if len(parts) == 2:
        check_identifier(parts[0], f"schema of {what}")
    check_identifier(parts[-1], what)
    return name


def check_spec_identifiers(spec: TableSpec) -> None:
    """The spec's table name, every column name and the target obey the identifier rule
    (:class:`~synth_core.errors.SpecError`, a :class:`ParameterError` sibling, naming which)."""
    try:
        check_table_name(spec.name, "spec table")
        for column in spec.columns:
            check_identifier(column.name, f"column of table {spec.name!r}")
        if spec.target is not None:
            check_identifier(spec.target, f"target of table {spec.name!r}")
    except ParameterError as exc:
        raise SpecError(str(exc)) from None


# -- object keys -----------------------------------------------------------------------------------

#: Longest object key segment (one ``/``-separated part), in characters (S3 keys: 1024 bytes in all).
MAX_KEY_SEGMENT_CHARS = 255
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def check_key_part(part: Any, what: str = "object key part") -> str:
    """One or more ``/``-separated key segments appended to a store URI: no ``.``/``..`` segment,
    no backslash, no control character, no segment over :data:`MAX_KEY_SEGMENT_CHARS`.

    ``?``, ``#`` and ``%`` are ordinary characters of a key (keys are never URL-decoded), so they
    are allowed here; :mod:`synth_core.object_store` keeps them literal.
    """
    if not isinstance(part, str):
        raise ParameterError(f"{what} must be text, got {describe(part)}")
    if _CONTROL_CHARS.search(part) or "\\" in part:
        raise ParameterError(f"{what} {describe(part)} holds a control character or a backslash")
    for segment in part.strip("/").split("/"):
        if segment in ("", ".", ".."):
            raise ParameterError(
                f"{what} {describe(part)} has an empty, '.' or '..' segment: keys stay under their root"
            )
        if len(segment) > MAX_KEY_SEGMENT_CHARS:
            raise ParameterError(f"{what} has a segment longer than {MAX_KEY_SEGMENT_CHARS} characters")
    return part


# -- SQL -------------------------------------------------------------------------------------------

#: Longest ``source_query``, in characters.
MAX_QUERY_CHARS = 100_000
#: sqlglot's dialect name for each SQLAlchemy dialect name.
_SQLGLOT_DIALECTS = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql", "sqlite": "sqlite"}
#: Functions with side effects (server files, other sessions, sleeps, locks, extensions) refused in
#: a ``source_query`` even though a read-only transaction would let some of them run.
_REFUSED_FUNCTIONS = frozenset(
    {
        # PostgreSQL
        "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
        "pg_sleep", "pg_sleep_for", "pg_sleep_until", "lo_export", "lo_import", "lo_unlink",
        "lo_from_bytea", "lo_put", "dblink", "dblink_exec", "dblink_connect", "set_config",
        "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_advisory_lock",
        "pg_advisory_xact_lock", "pg_notify", "nextval", "setval", "pg_logical_emit_message",
        "pg_switch_wal", "pg_create_restore_point", "query_to_xml", "txid_current",
        # MySQL / MariaDB
        "sleep", "benchmark", "load_file", "get_lock", "release_lock", "release_all_locks",
        "master_pos_wait", "sys_exec", "sys_eval",
        # SQLite
        "load_extension", "writefile", "readfile", "edit", "fts3_tokenizer",
    }
)  # fmt: skip
#: Function-name prefixes refused whatever follows: families whose members open other sessions
#: (``dblink_connect_u``, ``dblink_send_query``: not bound by this session's read-only transaction),
#: write server files (adminpack's ``pg_file_write``), reset statistics or touch large objects.
_REFUSED_FUNCTION_PREFIXES = ("dblink", "pg_file_", "pg_stat_reset", "lo_")


def check_source_query(sql: Any, dialect: str) -> str:
    """``sql`` (without trailing ``;``) if it is exactly one read-only ``SELECT`` (set operations
    and CTEs included).

    Parsed with sqlglot in the warehouse's dialect. Refused: anything but one statement (stacked
    statements such as ``…; COMMIT; DROP TABLE other; --``), DDL/DML anywhere in the tree (also in a
    CTE), ``SELECT … INTO``, locking clauses (``FOR UPDATE``/``FOR SHARE``), MySQL executable
    comments (``/*! … */``), side-effecting functions, and text sqlglot cannot parse. The query is
    also run in a read-only transaction (:func:`synth_core.warehouse.read_only_connection`), so a
    parser miss still cannot write.

    Raises:
        ParameterError: non-retryable, naming the reason (the query text is shown only as a short
            escaped prefix).
    """
    import sqlglot
    from sqlglot import exp

    if not isinstance(sql, str) or not sql.strip():
        raise ParameterError(f"source_query must be a non-empty SELECT, got {describe(sql)}")
    if len(sql) > MAX_QUERY_CHARS:
        raise ParameterError(f"source_query is longer than {MAX_QUERY_CHARS} characters")
    if "\x00" in sql:
        raise ParameterError("source_query holds a NUL character")
    if "/*!" in sql or "/*M!" in sql:
        raise ParameterError("source_query holds a MySQL executable comment ('/*!'), which is refused")
    read = _SQLGLOT_DIALECTS.get(dialect)
    if read is None:
        # neither parsed in its own dialect nor run under a read-only guard we know for it
        raise ParameterError(
            f"source_query is supported on {sorted(_SQLGLOT_DIALECTS)} warehouses, not on "
            f"{describe(dialect)}: read a table (or a view the warehouse defines) instead"
        )
    try:
        statements = [s for s in sqlglot.parse(sql, read=read) if s is not None]
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError, RecursionError):
        raise ParameterError(
            f"source_query {describe(sql)} cannot be parsed as one SELECT in the {dialect} dialect"
        ) from None
    statements = [s for s in statements if not isinstance(s, exp.Semicolon)]
    if len(statements) != 1:
        raise ParameterError(
            f"source_query must be exactly one SELECT statement, got {len(statements)} statements "
            "(stacked statements are refused)"
        )
    tree = statements[0]
    root = tree.unnest() if isinstance(tree, exp.Subquery) else tree
    if not isinstance(root, exp.Select | exp.SetOperation):
        raise ParameterError(f"source_query must be a SELECT, got a {type(root).__name__} statement")
    refused = tuple(
        getattr(exp, name)
        for name in (
            "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "TruncateTable", "Command",
            "Commit", "Rollback", "Transaction", "Set", "Pragma", "Copy", "Use", "Grant", "LoadData",
            "Into", "Lock", "Attach", "Detach", "Kill", "Analyze", "Describe", "Cache", "Uncache",
        )
        if hasattr(exp, name)
    )  # fmt: skip
    for node in tree.walk():
        if isinstance(node, refused):
            label = "SELECT … INTO" if isinstance(node, exp.Into) else type(node).__name__
            if isinstance(node, exp.Lock):
                label = "a locking clause (FOR UPDATE/SHARE)"
            raise ParameterError(f"source_query must be a read-only SELECT: {label} is refused")
        if isinstance(node, exp.Func):
            name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            if name in _REFUSED_FUNCTIONS or name.startswith(_REFUSED_FUNCTION_PREFIXES):
                raise ParameterError(f"source_query calls {name}(), which has side effects and is refused")
    cleaned = sql.strip().rstrip(";").rstrip()
    # a trailing "-- comment" would swallow the ")" of the subquery the query is wrapped in
    return cleaned + "\n" if "--" in cleaned.rsplit("\n", 1)[-1] else cleaned


# -- URLs and secrets ------------------------------------------------------------------------------

#: Query parameter names whose values are secrets (matched case-insensitively, as substrings of
#: the name): passwords, tokens, keys, signatures, presigned-URL credentials.
SECRET_PARAM_PATTERN = re.compile(
    r"pass|pwd|secret|token|key|sig|credential|auth|session|x-amz-|x-goog-|cookie|private",
    re.IGNORECASE,
)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
MASK = "***"


def scrub_url(text: str) -> str:
    """``text`` with every URL's secrets masked: the password of ``user:password@`` (also one holding
    ``/`` or ``@``) and the values of query or fragment parameters named like secrets
    (:data:`SECRET_PARAM_PATTERN`: ``password``, ``token``, ``X-Amz-Signature``...), plus
    ``password=…``-style pairs outside URLs (libpq DSNs). Works on a bare URL or on any text holding
    URLs (messages, JSON). Masks rather than guesses: an ambiguous ``@`` masks more, never less."""
    scrubbed = _URL_IN_TEXT.sub(lambda m: _scrub_one(m.group(0)), text)
    return _DSN_SECRET.sub(lambda m: f"{m.group(1)}={MASK}", scrubbed)


#: ``name=value`` pairs outside URLs whose name says secret (``password=x`` in a libpq DSN)
_DSN_SECRET = re.compile(
    r"\b([\w-]*(?:password|passwd|pwd|secret|token|api_?key)[\w-]*)\s*=\s*(?!\*\*\*)('[^']*'|\"[^\"]*\"|[^\s&,;'\"]+)",
    re.IGNORECASE,
)


def _scrub_one(url: str) -> str:
    scheme, _, rest = url.partition("://")
    params_at = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority_end = min((i for i in (rest.find("/"), params_at) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, params_at)
    if at >= 0 and ":" in rest[:at] and (at < authority_end or ":" in rest[:authority_end]):
        user = rest[:at].split(":", 1)[0]  # a user name alone is not a secret (as SQLAlchemy shows it)
        rest = f"{user}:{MASK}" + rest[at:]
        params_at = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    head, tail = rest[:params_at], rest[params_at:]
    return f"{scheme}://{head}{_SECRET_PARAM.sub(_mask_param, tail)}"


#: one ``name=value`` parameter of a query or fragment
_SECRET_PARAM = re.compile(r"([?#&;])([^=&#;]*)=([^&#;]*)")


def _mask_param(match: re.Match[str]) -> str:
    sep, name, value = match.groups()
    return f"{sep}{name}={MASK if SECRET_PARAM_PATTERN.search(name) else value}"


# -- sizes and numbers -----------------------------------------------------------------------------

#: Most columns in a spec.
MAX_COLUMNS = 1_000
#: Most categories in one column's public domain (a bigger domain is not modelled as categories:
#: make the column ``id`` or ``drop``).
MAX_CATEGORIES = 50_000
#: Most characters of one category value in a public domain.
MAX_CATEGORY_CHARS = 1_000
#: Most rules in a spec.
MAX_RULES = 200
#: Most characters of one rule expression.
MAX_RULE_EXPR_CHARS = 2_000
#: Most terms (column names and constants) of one parsed rule expression.
MAX_RULE_TERMS = 200
#: Most epochs of DP-SGD training.
MAX_EPOCHS = 100_000
#: Largest (expected) batch size of DP-SGD training, in rows.
MAX_BATCH_SIZE = 10_000_000
#: Most planned DP-SGD steps (epochs × batches per epoch) of one fit.
MAX_PLANNED_STEPS = 10_000_000


def check_bounded_number(value: Any, what: str, *, low: float, high: float, integer: bool = False) -> float:
    """``value`` as a number if it is finite (and integral when ``integer``) with
    ``low <= value <= high``; else :class:`ParameterError` naming ``what`` and the range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            import numpy as np

            if isinstance(value, np.integer | np.floating) and not isinstance(value, np.bool_):
                value = value.item()
            else:
                raise TypeError
        except (ImportError, TypeError):
            raise ParameterError(f"{what} must be a number, got {describe(value)}") from None
    if not math.isfinite(value):
        raise ParameterError(f"{what} must be finite, got {value}")
    if integer and value != int(value):
        raise ParameterError(f"{what} must be an integer, got {value}")
    if not low <= value <= high:
        raise ParameterError(f"{what} must be in [{low:g}, {high:g}], got {value:g}")
    return value


def check_train_limits(
    *,
    epochs: Any = None,
    batch_size: Any = None,
    planned_steps: Any = None,
) -> None:
    """Training parameters within :data:`MAX_EPOCHS`, :data:`MAX_BATCH_SIZE` and
    :data:`MAX_PLANNED_STEPS` (``None``: not given, not checked). Call before reserving budget."""
    if epochs is not None:
        check_bounded_number(epochs, "epochs", low=1, high=MAX_EPOCHS, integer=True)
    if batch_size is not None:
        check_bounded_number(batch_size, "batch_size", low=1, high=MAX_BATCH_SIZE, integer=True)
    if planned_steps is not None:
        check_bounded_number(
            planned_steps, "planned DP-SGD steps (epochs × batches per epoch)", low=0,
            high=MAX_PLANNED_STEPS, integer=True,
        )  # fmt: skip


def check_spec_limits(spec: TableSpec) -> None:
    """The spec's sizes within this module's limits: columns (:data:`MAX_COLUMNS`), public category
    domains (:data:`MAX_CATEGORIES`, :data:`MAX_CATEGORY_CHARS`), rules (:data:`MAX_RULES`,
    :data:`MAX_RULE_EXPR_CHARS`, :data:`MAX_RULE_TERMS`); names by :func:`check_spec_identifiers`.

    Raises:
        SpecError: naming the table, the column or rule, and the limit.
    """
    check_spec_identifiers(spec)
    if len(spec.columns) > MAX_COLUMNS:
        raise SpecError(f"table {spec.name!r}: {len(spec.columns)} columns, more than {MAX_COLUMNS}")
    for column in spec.columns:
        check_category_domain(spec.name, column.name, column.categories)
    if len(spec.rules) > MAX_RULES:
        raise SpecError(f"table {spec.name!r}: {len(spec.rules)} rules, more than {MAX_RULES}")
    for rule in spec.rules:
        check_rule_size(spec.name, rule.name, rule.expr)
        terms = rule_terms(rule)
        if terms > MAX_RULE_TERMS:
            raise SpecError(
                f"table {spec.name!r}, rule {rule.name!r}: {terms} terms, more than {MAX_RULE_TERMS}"
            )


def check_category_domain(table: str | None, column: str, categories: Iterable[Any] | None) -> None:
    """A public category domain of at most :data:`MAX_CATEGORIES` values of at most
    :data:`MAX_CATEGORY_CHARS` characters each (:class:`SpecError` naming the column)."""
    if categories is None:
        return
    where = f"table {table!r}, column {column!r}" if table is not None else f"column {column!r}"
    values = categories if isinstance(categories, list | tuple) else list(categories)
    if len(values) > MAX_CATEGORIES:
        raise SpecError(
            f"{where}: a public domain of {len(values)} categories, more than {MAX_CATEGORIES} "
            "(declare the column 'id' or 'drop' instead)"
        )
    for value in values:
        if isinstance(value, str) and len(value) > MAX_CATEGORY_CHARS:
            raise SpecError(f"{where}: a public category is longer than {MAX_CATEGORY_CHARS} characters")


def check_rule_size(table: str, rule: Any, expr: Any) -> None:
    """A rule expression of at most :data:`MAX_RULE_EXPR_CHARS` characters (checked before it is
    parsed, so a huge expression never reaches the parser)."""
    if isinstance(expr, str) and len(expr) > MAX_RULE_EXPR_CHARS:
        raise SpecError(
            f"table {table!r}, rule {describe(rule)}: the expression has {len(expr)} characters, "
            f"more than {MAX_RULE_EXPR_CHARS}"
        )


def rule_terms(rule: Any) -> int:
    """Terms (column names and constants) of a parsed :class:`~synth_core.rules.Rule`."""
    import ast

    tree = getattr(rule, "_tree", None)  # the parsed expression the rule keeps
    if tree is None:
        return 0
    return sum(1 for node in ast.walk(tree) if isinstance(node, ast.Name | ast.Constant))


__all__ = [
    "IDENTIFIER_PATTERN",
    "MASK",
    "MAX_BATCH_SIZE",
    "MAX_CATEGORIES",
    "MAX_CATEGORY_CHARS",
    "MAX_COLUMNS",
    "MAX_EPOCHS",
    "MAX_IDENTIFIER_CHARS",
    "MAX_KEY_SEGMENT_CHARS",
    "MAX_PLANNED_STEPS",
    "MAX_QUERY_CHARS",
    "MAX_RULES",
    "MAX_RULE_EXPR_CHARS",
    "MAX_RULE_TERMS",
    "SECRET_PARAM_PATTERN",
    "check_bounded_number",
    "check_category_domain",
    "check_identifier",
    "check_key_part",
    "check_rule_size",
    "check_source_query",
    "check_spec_identifiers",
    "check_spec_limits",
    "check_table_name",
    "check_train_limits",
    "describe",
    "rule_terms",
    "scrub_url",
]
