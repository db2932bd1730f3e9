"""Budget scope: what a run reads, which is what the privacy ledger charges.

A privacy budget protects the people in a table's rows, so it must follow the rows, not the name a
spec gives them (issue 16.5: ``PEOPLE``, ``main.people`` or ``people_v2`` with
``source_query: SELECT * FROM people`` each got a fresh lifetime budget on the same rows). A
:class:`BudgetScope` holds one ledger key per source table the run reads:

    {connection}/{schema}.{table}

* **connection** — the dialect plus where the rows live, never credentials:
  PostgreSQL ``postgresql://host:port/database`` (the server's ``current_database()``),
  MySQL/MariaDB ``mysql://host:port`` (a database *is* the schema there, and one connection can read
  every database on the server), SQLite ``sqlite://`` plus the resolved path of the database file
  that holds the table (``sqlite://:memory:`` for an in-memory or temporary one). Hosts are
  lower-cased and default ports filled in; host aliases (``localhost`` vs ``127.0.0.1``) are *not*
  resolved: the connection is configured by whoever administers the warehouse, not by a spec.
* **schema.table** — the table as the database resolves the name: the catalog is asked where it can
  be (PostgreSQL ``to_regclass`` along the ``search_path``; SQLite ``temp`` then ``main`` then
  attached databases; MySQL/MariaDB the connection's database), and identifiers fold as the
  dialect folds unquoted names (PostgreSQL lower-cases unquoted ASCII and keeps quoted names;
  SQLite compares ASCII case-insensitively, quoted or not; MySQL/MariaDB compare per
  ``lower_case_table_names``). A name that is not in the catalog is keyed as the dialect would
  resolve it (the run fails when it reads it anyway). A view or materialized view is replaced by the
  tables its definition reads (recursively, up to :data:`MAX_VIEW_DEPTH`); a PostgreSQL partition
  by its partitioned root table.
  Key parts other than ``[A-Za-z0-9_$]+`` are double-quoted with ``""`` escaping, so two distinct
  tables never share a key.

A ``source_query`` charges every table it reads: it is parsed with ``sqlglot`` in the engine's
dialect and every table in it (joins, subqueries, CTE bodies, set operations) is resolved to its key;
CTE names are not tables. A query whose tables cannot be determined is refused with a
:class:`~synth_core.errors.ParameterError` unless the user declares a ``privacy_scope``: it does not
parse as one query; it writes (DML, ``SELECT INTO``, DDL); it calls a function defined in the database
(a user-defined, stored or extension function could read any table — refused by name, however the
parser models it); it calls a function the parser does not model that is not a built-in of the
dialect; or it calls a built-in that runs SQL given as text or reads files (``query_to_xml``,
``dblink``, ``pg_read_file``, ``load_file``...). Built-in set-returning functions in ``FROM``
(``unnest``, ``generate_series``) read no table. A declared scope is one more key, ``scope:{name}``, recorded in the ledger like a
table: it is charged *in addition to* every table that can be determined, so declaring a scope never
escapes a table's budget; it replaces the tables only where none can be determined.

What is out of reach of any key: a copy of the rows in another table (``CREATE TABLE people_v2 AS
SELECT * FROM people``) or another database is another table; that is the warehouse's access
control, not the ledger's. PostgreSQL table inheritance (not partitioning) is not followed, and a
foreign table (FDW) is keyed as the local table, not the remote one it reads.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from synth_core.errors import ParameterError

MAX_VIEW_DEPTH = 8
"""Views over views are followed this deep; deeper (or cyclic) definitions are refused."""

MAX_QUERY_CHARS = 200_000
"""A longer source_query is refused: its tables are not worth parsing."""

MAX_KEY_CHARS = 512
"""The ledger's key column holds at most this many characters."""

SCOPE_PREFIX = "scope:"
_SIMPLE_PART = re.compile(r"[A-Za-z0-9_$]+")
_SQLGLOT_DIALECTS = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql", "sqlite": "sqlite"}
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}


@dataclass(frozen=True)
class BudgetScope:
    """What a run reads, which is what the ledger charges: one key per source table.

    Attributes:
        keys: ledger keys, e.g. ``"postgresql://host:5432/db/public.people"`` (never credentials);
            stored sorted and unique. A plain table name (an old ledger's key) is one key too.
        privacy_scope: the scope the user declared (its key ``scope:{name}`` is among ``keys``).
        legacy_keys: the keys a ledger written before scopes existed used for these rows (the
            spec's table name): the ledger carries their grant and spend over to ``keys`` once,
            so upgrading never hands out a fresh budget (:meth:`PrivacyLedger.reserve`).
    """

    keys: tuple[str, ...]
    privacy_scope: str | None = None
    legacy_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        keys = tuple(self.keys) if not isinstance(self.keys, str) else (self.keys,)
        if not keys:
            raise ParameterError("a budget scope needs at least one ledger key")
        for key in keys + tuple(self.legacy_keys):
            _check_key(key)
        object.__setattr__(self, "keys", tuple(sorted(set(keys))))
        legacy = tuple(sorted(set(self.legacy_keys) - set(keys)))
        object.__setattr__(self, "legacy_keys", legacy)

    @classmethod
    def of(cls, scope: BudgetScope | str) -> BudgetScope:
        """``scope`` itself, or a one-key scope for a plain key (an old ledger's table name)."""
        if isinstance(scope, BudgetScope):
            return scope
        if isinstance(scope, str):
            return cls((scope,))
        raise ParameterError(f"a budget scope is a BudgetScope or a ledger key, got {type(scope).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """The scope as JSON (a staged manifest, a pod job, XCom): keys only, never credentials."""
        return {
            "keys": list(self.keys),
            "privacy_scope": self.privacy_scope,
            "legacy_keys": list(self.legacy_keys),
        }

    @classmethod
    def from_mapping(cls, raw: Any) -> BudgetScope:
        """The scope :meth:`to_dict` wrote; :class:`ParameterError` for anything else."""
        if not isinstance(raw, dict) or not isinstance(raw.get("keys"), list | tuple):
            raise ParameterError("a budget scope is a mapping with a list of keys")
        privacy_scope = raw.get("privacy_scope")
        if privacy_scope is not None and not isinstance(privacy_scope, str):
            raise ParameterError("a budget scope's privacy_scope is a string")
        legacy = raw.get("legacy_keys") or []
        if not isinstance(legacy, list | tuple):
            raise ParameterError("a budget scope's legacy_keys is a list")
        return cls(tuple(raw["keys"]), privacy_scope=privacy_scope, legacy_keys=tuple(legacy))

    def describe(self) -> str:
        """One line for logs and notes: the keys, and the declared scope if any."""
        text = ", ".join(self.keys)
        if self.privacy_scope is not None:
            text += f" (declared privacy scope {self.privacy_scope!r})"
        return text


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not key.strip():
        raise ParameterError(f"a ledger key must be a non-empty string, got {key!r}")
    if len(key) > MAX_KEY_CHARS:
        raise ParameterError(f"a ledger key holds at most {MAX_KEY_CHARS} characters, got {len(key)}")
    if any(not ch.isprintable() for ch in key):
        raise ParameterError("a ledger key must not contain control characters")


def scope_key(privacy_scope: str) -> str:
    """The ledger key of a declared privacy scope."""
    if not isinstance(privacy_scope, str) or not privacy_scope.strip():
        raise ParameterError("privacy_scope must be a non-empty string")
    key = SCOPE_PREFIX + privacy_scope.strip()
    _check_key(key)
    return key


def key_part(name: str) -> str:
    """A schema or table name as it appears in a key: plain when simple, else double-quoted."""
    if _SIMPLE_PART.fullmatch(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def budget_scope(
    engine: sa.engine.Engine,
    *,
    table: str | None,
    schema: str | None = None,
    source_query: str | None = None,
    privacy_scope: str | None = None,
) -> BudgetScope:
    """The budget scope of a run that reads ``table`` (or ``source_query``) from ``engine``.

    Reads the catalog only (never a row). ``table`` may be ``"schema.table"`` as the pipeline reads
    it; with a ``source_query`` the table name is only the output's label and is not charged.

    Raises:
        ParameterError: the tables a ``source_query`` reads cannot be determined and no
            ``privacy_scope`` is declared; a view nests deeper than :data:`MAX_VIEW_DEPTH`.
    """
    from sqlglot import exp

    extra = (scope_key(privacy_scope),) if privacy_scope is not None else ()
    with engine.connect() as conn:
        resolver = _Resolver(conn)
        if source_query is not None:
            if not isinstance(source_query, str) or not source_query.strip():
                raise ParameterError("source_query must be a non-empty SQL query")
            try:
                keys = resolver.query_keys(source_query, depth=0)
            except _Undeterminable as why:
                if privacy_scope is None:
                    raise ParameterError(
                        f"the ledger cannot determine which tables source_query reads ({why}); declare a "
                        "privacy_scope to charge instead"
                    ) from None
                keys = []
        else:
            if not isinstance(table, str) or not table:
                raise ParameterError("a budget scope needs a table or a source_query")
            from synth_core.warehouse import split_table_name

            schema_name, name = split_table_name(table, schema)
            preparer = engine.dialect.identifier_preparer

            def ident(text: str) -> exp.Identifier:
                # quoted exactly when SQLAlchemy quotes it, since that is how the pipeline reads it
                return exp.Identifier(this=text, quoted=preparer.quote(text) != text)

            node = exp.Table(this=ident(name), db=ident(schema_name) if schema_name else None)
            try:
                keys = resolver.table_keys(node, depth=0)
            except _Undeterminable as why:
                raise ParameterError(
                    f"the ledger cannot determine what table {table!r} reads ({why})"
                ) from None
    # before scopes, the ledger was keyed by the spec's table name as given
    legacy = (table,) if isinstance(table, str) and table and len(table) <= MAX_KEY_CHARS else ()
    return BudgetScope(
        tuple(keys) + extra,
        privacy_scope=privacy_scope.strip() if privacy_scope else None,
        legacy_keys=tuple(k for k in legacy if k.isprintable()),
    )


class _Undeterminable(Exception):
    """The tables a query reads cannot be determined (the message says why, without values)."""


_WRITE_NODES = ("Insert", "Update", "Delete", "Merge", "Into", "Create", "Drop", "Alter", "AlterTable", "TruncateTable")  # fmt: skip
"""sqlglot node types of a statement that writes: a source query holding one is refused."""

_READS_DATA = frozenset(
    {
        # PostgreSQL: run SQL given as text, or read files / large objects
        *(f"{what}_to_xml{suffix}" for what in ("query", "table", "cursor", "schema", "database")
          for suffix in ("", "schema", "_and_xmlschema")),
        "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "lo_get", "lo_import", "lo_export",
        "dblink", "dblink_exec", "dblink_open", "dblink_fetch", "xpath_table", "crosstab", "ts_stat", "ts_rewrite",
        "loread", "lo_open", "pg_read_server_files",
        # MySQL / MariaDB: read files or run commands (UDF libraries)
        "load_file", "sys_exec", "sys_eval",
        # SQLite: extensions that read files or other databases
        "readfile", "load_extension", "fts3_tokenizer",
    }
)  # fmt: skip
"""Functions that read data the ledger cannot see, refused even where they are built in."""

_SQLITE_BUILTINS = frozenset(
    {
        "abs", "changes", "char", "coalesce", "concat", "concat_ws", "format", "glob", "hex", "ifnull", "iif",
        "instr", "last_insert_rowid", "length", "like", "likelihood", "likely", "lower", "ltrim", "max", "min",
        "nullif", "octet_length", "printf", "quote", "random", "randomblob", "replace", "round", "rtrim", "sign",
        "soundex", "sqlite_version", "substr", "substring", "total_changes", "trim", "typeof", "unhex", "unicode",
        "unlikely", "upper", "zeroblob", "date", "time", "datetime", "julianday", "unixepoch", "strftime",
        "timediff", "avg", "count", "group_concat", "string_agg", "sum", "total", "acos", "acosh", "asin",
        "asinh", "atan", "atan2", "atanh", "ceil", "ceiling", "cos", "cosh", "degrees", "exp", "floor", "ln",
        "log", "log10", "log2", "mod", "pi", "pow", "power", "radians", "sin", "sinh", "sqrt", "tan", "tanh",
        "trunc", "json", "json_array", "json_array_length", "json_extract", "json_insert", "json_object",
        "json_patch", "json_remove", "json_replace", "json_set", "json_type", "json_valid", "json_quote",
        "json_group_array", "json_group_object", "row_number", "rank", "dense_rank", "percent_rank", "cume_dist",
        "ntile", "lag", "lead", "first_value", "last_value", "nth_value",
    }
)  # fmt: skip
"""SQLite's core, date, aggregate, math, JSON and window functions: none reads a table."""


def _ascii_lower(text: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


class _Resolver:
    """Resolves table references to ledger keys against one connection's catalog."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        dialect = conn.dialect.name
        self.dialect = "mysql" if dialect == "mariadb" else dialect
        self.read = _SQLGLOT_DIALECTS.get(dialect)
        self._user_function_names: frozenset[str] | None = None
        url = conn.engine.url
        host = url.host or str(url.query.get("host") or "localhost")
        port = url.port or _DEFAULT_PORTS.get(self.dialect, 0)
        self.host = f"{host.lower()}:{port}"
        if self.dialect == "postgresql":
            row = conn.execute(sa.text("SELECT current_database(), current_schema()")).one()
            self.database, self.default_schema = str(row[0]), row[1]
        elif self.dialect == "mysql":
            row = conn.execute(sa.text("SELECT DATABASE(), @@lower_case_table_names")).one()
            self.default_schema, self.lower_names = row[0], int(row[1]) != 0
        elif self.dialect == "sqlite":
            self.files = {
                str(r[1]).lower(): str(r[2] or "") for r in conn.exec_driver_sql("PRAGMA database_list")
            }
        else:
            self.database = str(url.database or "")
            self.default_schema = sa.inspect(conn).default_schema_name

    # -- queries ---------------------------------------------------------------------------------
    def query_keys(self, sql: str, *, depth: int) -> list[str]:
        keys: list[str] = []
        for node in self._tables_read(sql):
            keys.extend(self.table_keys(node, depth=depth))
        return keys

    def _tables_read(self, sql: str) -> list[Any]:
        import sqlglot
        from sqlglot import exp
        from sqlglot.optimizer.scope import traverse_scope

        if len(sql) > MAX_QUERY_CHARS:
            raise _Undeterminable(f"it is longer than {MAX_QUERY_CHARS} characters")
        try:
            statements = [s for s in sqlglot.parse(sql, read=self.read) if s is not None]
        except (sqlglot.errors.ParseError, sqlglot.errors.TokenError):
            raise _Undeterminable("it does not parse as SQL") from None
        except RecursionError:
            raise _Undeterminable("it nests too deeply to parse") from None
        if len(statements) != 1:
            raise _Undeterminable(f"it holds {len(statements)} statements, not one query")
        (tree,) = statements
        if isinstance(tree, exp.Create) and isinstance(tree.expression, exp.Query):
            tree = tree.expression  # a SQLite view definition
        if not isinstance(tree, exp.Query):
            raise _Undeterminable("it is not a query")
        if tree.find(exp.Command) is not None:
            raise _Undeterminable("it holds a statement the parser does not understand")
        writes = tuple(getattr(exp, n) for n in _WRITE_NODES if hasattr(exp, n))
        if tree.find(*writes) is not None:
            raise _Undeterminable(
                "it writes (INSERT, UPDATE, DELETE, MERGE, SELECT INTO or DDL), it is not a read"
            )
        self._refuse_functions_that_read(sql, tree)
        try:
            scopes = list(traverse_scope(tree))
        except (Exception, RecursionError):  # sqlglot raises several types on queries it cannot scope
            raise _Undeterminable("its table references cannot be scoped") from None
        read: dict[int, Any] = {}
        for scope in scopes:
            for source in scope.sources.values():
                if isinstance(source, exp.Table):
                    read[id(source)] = source
        cte_names = {str(cte.alias_or_name) for cte in tree.find_all(exp.CTE)}
        for node in tree.find_all(exp.Table):
            if id(node) in read or not isinstance(node.this, exp.Identifier):
                continue
            if not node.args.get("db") and node.name in cte_names:
                continue  # a reference to a CTE, whose body is scoped on its own
            read[id(node)] = node  # not explained by scoping: charged, to be safe
        for node in tree.find_all(exp.Table):
            # a set-returning function in FROM: a built-in (checked above) reads no table
            if not isinstance(node.this, exp.Identifier | exp.Func):
                raise _Undeterminable("it reads from something that is neither a table nor a function")
        return [n for n in read.values() if isinstance(n.this, exp.Identifier)]

    def _refuse_functions_that_read(self, sql: str, tree: Any) -> None:
        """Refuse a call of a user-defined (stored, extension) function — by any spelling, whatever
        the parser made of it — of a built-in that runs SQL given as text or reads files, and of a
        function the parser does not model that is not a built-in of the dialect."""
        import sqlglot
        from sqlglot import exp
        from sqlglot.tokens import TokenType

        try:
            tokens = sqlglot.Dialect.get_or_raise(self.read).tokenize(sql)
        except (sqlglot.errors.TokenError, RecursionError):
            raise _Undeterminable("it does not parse as SQL") from None
        user_functions = self._user_functions()
        for token, after in itertools.pairwise(tokens):
            name = token.text.lower()
            if after.token_type == TokenType.L_PAREN and (name in user_functions or name in _READS_DATA):
                raise _Undeterminable(
                    f"it calls the function {token.text[:64]!r}, which may read tables the ledger cannot see"
                )
        for call in tree.find_all(exp.Anonymous):
            name = str(call.name)
            if not self._builtin_reads_no_table(name):
                raise _Undeterminable(
                    f"it calls the function {name[:64]!r}, which may read tables the ledger cannot see"
                )

    def _user_functions(self) -> frozenset[str]:
        """Lower-cased names of the functions defined in the database rather than built in."""
        if self._user_function_names is None:
            names: set[str] = set()
            if self.dialect == "postgresql":
                query = (
                    "SELECT DISTINCT lower(p.proname) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                    "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')"
                )
                names.update(str(r[0]) for r in self.conn.execute(sa.text(query)))
            elif self.dialect == "mysql":
                query = "SELECT DISTINCT LOWER(ROUTINE_NAME) FROM information_schema.ROUTINES"
                names.update(str(r[0]) for r in self.conn.execute(sa.text(query)))
            self._user_function_names = frozenset(names)
        return self._user_function_names

    def _builtin_reads_no_table(self, name: str) -> bool:
        """Whether a function the parser does not model is a built-in that reads no table: not a
        user-defined (or extension) function, and not one that runs SQL given as text or reads
        files (:data:`_READS_DATA`)."""
        folded = name.lower()
        if folded in _READS_DATA:
            return False
        if self.dialect == "sqlite":  # no SQL-defined functions; a connection's own are unknown
            return folded in _SQLITE_BUILTINS
        if folded in self._user_functions():
            return False
        if self.dialect == "postgresql":
            builtin: int = self.conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                    "WHERE p.proname = :f AND n.nspname = 'pg_catalog'"
                ),
                {"f": folded},
            ).scalar_one()
            return bool(builtin)
        return self.dialect == "mysql"  # a MySQL name that is not a stored routine is a built-in

    # -- one table -------------------------------------------------------------------------------
    def table_keys(self, node: Any, *, depth: int) -> list[str]:
        """The keys of the table ``node`` names: itself, or the tables a view over it reads."""
        if depth > MAX_VIEW_DEPTH:
            raise _Undeterminable(f"views nest deeper than {MAX_VIEW_DEPTH}")
        for part in ("this", "db", "catalog"):
            identifier = node.args.get(part)
            if identifier is not None and (
                not str(identifier.name) or not str(identifier.name).isprintable()
            ):
                raise _Undeterminable("a table name is empty or holds control characters")
        try:
            if self.dialect == "postgresql":
                return self._postgres(node, depth)
            if self.dialect == "mysql":
                return self._mysql(node, depth)
            if self.dialect == "sqlite":
                return self._sqlite(node, depth)
        except (sa.exc.DataError, sa.exc.ProgrammingError):  # the catalog refused the name itself
            raise _Undeterminable("the catalog refuses a table name") from None
        return self._generic(node)

    def _postgres(self, node: Any, depth: int) -> list[str]:
        from sqlglot import exp

        catalog = node.args.get("catalog")
        if catalog is not None and _fold_postgres(catalog) != self.database:
            raise _Undeterminable("it names another database")
        name = exp.Table(this=node.this.copy(), db=node.args["db"].copy() if node.args.get("db") else None)
        row = self.conn.execute(
            sa.text(
                "SELECT n.nspname, c.relname, c.relkind, c.oid::bigint FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.oid = COALESCE(pg_partition_root(to_regclass(:name)), to_regclass(:name))"
            ),
            {"name": name.sql(dialect="postgres")},
        ).first()
        if row is None:  # not in the catalog: keyed as PostgreSQL would resolve the name
            db = node.args.get("db")
            schema = _fold_postgres(db) if db is not None else self.default_schema
            if schema is None:
                raise _Undeterminable("the connection has no current schema")
            return [self._key(f"postgresql://{self.host}/{self.database}", schema, _fold_postgres(node.this))]
        if str(row[2]) in ("v", "m"):
            definition = self.conn.execute(
                sa.text("SELECT pg_get_viewdef(:oid)"), {"oid": int(row[3])}
            ).scalar()
            if not definition:
                raise _Undeterminable("a view's definition cannot be read")
            return self.query_keys(str(definition), depth=depth + 1)
        return [self._key(f"postgresql://{self.host}/{self.database}", str(row[0]), str(row[1]))]

    def _mysql(self, node: Any, depth: int) -> list[str]:
        if node.args.get("catalog") is not None:
            raise _Undeterminable("it names a catalog")
        db = node.args.get("db")
        schema = str(db.name) if db is not None else self.default_schema
        if schema is None:
            raise _Undeterminable("the connection has no default database")
        name = str(node.name)
        if self.lower_names:
            schema, name = schema.lower(), name.lower()
        row = self.conn.execute(
            sa.text(
                "SELECT t.TABLE_TYPE, v.VIEW_DEFINITION FROM information_schema.TABLES t "
                "LEFT JOIN information_schema.VIEWS v "
                "ON v.TABLE_SCHEMA = t.TABLE_SCHEMA AND v.TABLE_NAME = t.TABLE_NAME "
                "WHERE BINARY t.TABLE_SCHEMA = :s AND BINARY t.TABLE_NAME = :t"
            ),
            {"s": schema, "t": name},
        ).first()
        if row is not None and str(row[0]).upper() == "VIEW":
            if not row[1]:  # without the SHOW VIEW privilege the definition reads empty
                raise _Undeterminable("a view's definition cannot be read")
            return self.query_keys(str(row[1]), depth=depth + 1)
        return [self._key(f"mysql://{self.host}", schema, name)]

    def _sqlite(self, node: Any, depth: int) -> list[str]:
        if node.args.get("catalog") is not None:
            raise _Undeterminable("it names a catalog")
        db = node.args.get("db")
        name = _ascii_lower(str(node.name))
        if db is not None:
            candidates = [_ascii_lower(str(db.name))]
        else:  # SQLite's own search order for an unqualified name
            candidates = ["temp", "main"] + [s for s in self.files if s not in ("temp", "main")]
        for schema in candidates:
            if schema not in self.files:
                continue
            master = (
                "sqlite_temp_master"
                if schema == "temp"
                else f'"{schema.replace(chr(34), chr(34) * 2)}".sqlite_master'
            )
            row = self.conn.execute(
                sa.text(
                    f"SELECT type, sql FROM {master} WHERE lower(name) = :n AND type IN ('table', 'view')"
                ),
                {"n": name},
            ).first()
            if row is None:
                continue
            if str(row[0]) == "view":
                if not row[1]:
                    raise _Undeterminable("a view's definition cannot be read")
                return self.query_keys(str(row[1]), depth=depth + 1)
            return [self._sqlite_key(schema, name)]
        schema = candidates[0] if db is not None else "main"
        return [self._sqlite_key(schema, name)]

    def _sqlite_key(self, schema: str, name: str) -> str:
        path = self.files.get(schema, "")
        if path:  # the file is the identity: an attached database is its file's main schema
            return self._key(f"sqlite://{os.path.realpath(path)}", "main", name)
        return self._key("sqlite://:memory:", schema, name)

    def _generic(self, node: Any) -> list[str]:
        db = node.args.get("db")
        schema = str(db.name) if db is not None else (self.default_schema or "")
        return [self._key(f"{self.dialect}://{self.host}/{self.database}", schema, str(node.name))]

    @staticmethod
    def _key(connection: str, schema: str, table: str) -> str:
        key = f"{connection}/{key_part(schema)}.{key_part(table)}"
        if len(key) > MAX_KEY_CHARS:
            raise _Undeterminable(f"a table's ledger key would exceed {MAX_KEY_CHARS} characters")
        return key


def _fold_postgres(identifier: Any) -> str:
    return str(identifier.name) if identifier.args.get("quoted") else _ascii_lower(str(identifier.name))
