"""The boundary checks (:mod:`synth_core.boundary`) against generated hostile input.

Names, keys, queries, URLs, specs and bundles come from users and files: hypothesis generates
them, and every test asserts the invariant (refused with a non-retryable error naming the parameter,
never echoing a secret or a long hostile text; or accepted and harmless), not a list of strings.
Warehouse and S3 attacks are in ``test_hostile_inputs.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synth_core import boundary
from synth_core.boundary import (
    IDENTIFIER_PATTERN,
    MAX_CATEGORIES,
    MAX_COLUMNS,
    MAX_RULE_EXPR_CHARS,
    MAX_RULE_TERMS,
    check_identifier,
    check_key_part,
    check_source_query,
    check_spec_limits,
    check_table_name,
    check_train_limits,
    scrub_url,
)
from synth_core.bundle import MAX_COMPRESSION_RATIO, read_bundle_metadata, read_member, read_weights
from synth_core.errors import BundleError, NonRetryableError, ParameterError, SpecError
from synth_core.object_store import ObjectStore, as_uri, join_uri, local_path, split_uri
from synth_core.spec import ColumnKind, ColumnSpec, TableSpec

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

#: characters an attacker reaches for in names and keys
HOSTILE_ALPHABET = st.sampled_from(
    [*"abcXYZ019_.-/\\%?#&=;:'\"` $*{}<>|~!@\x00\n\r\t", "%2e", "%2f", "%2E%2E%2F", "..", "\u202e", "é", "ﬀ"]
)
hostile_text = st.lists(HOSTILE_ALPHABET, min_size=0, max_size=40).map("".join)


def _short_message(exc: BaseException, hostile: str) -> None:
    """An error message stays short and shows no long hostile text whole."""
    message = str(exc)
    assert len(message) < 400, message
    if len(hostile) > boundary.MESSAGE_PREVIEW_CHARS:
        assert hostile not in message


# -- identifiers ------------------------------------------------------------------------------------
@SETTINGS
@given(name=st.one_of(hostile_text, st.text(max_size=200)))
def test_identifiers_obey_one_rule_or_are_refused_naming_what(name: str) -> None:
    try:
        checked = check_identifier(name, "target table")
    except ParameterError as exc:
        assert isinstance(exc, NonRetryableError)
        assert "target table" in str(exc)
        _short_message(exc, name)
        assert "\x00" not in str(exc) and "\n" not in str(exc)  # control characters escaped
        return
    assert checked == name and IDENTIFIER_PATTERN.fullmatch(name) and len(name) <= 63
    # what passes is safe as a path segment, an object key and a dbt identifier
    check_key_part(name)
    assert not set(name) & set("/\\.%?#")


@SETTINGS
@given(schema=hostile_text, table=hostile_text)
def test_qualified_table_names_check_both_parts(schema: str, table: str) -> None:
    name = f"{schema}.{table}"
    try:
        check_table_name(name)
    except ParameterError:
        assert not (IDENTIFIER_PATTERN.fullmatch(schema) and IDENTIFIER_PATTERN.fullmatch(table)) or (
            max(len(schema), len(table)) > 63
        )
        return
    assert IDENTIFIER_PATTERN.fullmatch(schema) and IDENTIFIER_PATTERN.fullmatch(table)


def test_url_encoded_traversal_in_a_spec_table_or_column_is_a_spec_error() -> None:
    """Regression: a spec ``table:`` of URL-encoded ``../`` segments wrote Parquet outside the store."""
    for table in ("..%2F..%2Fetc", "%2e%2e%2f%2e%2e%2fhome", "a/../../b", "people?x=1", "t#frag", "a b"):
        with pytest.raises(SpecError, match="spec table"):
            TableSpec.from_dict({"table": table, "columns": [{"name": "a", "kind": "integer"}]})
    with pytest.raises(SpecError, match="column"):
        TableSpec.from_dict({"table": "t", "columns": [{"name": "a%2e%2e", "kind": "integer"}]})
    with pytest.raises(SpecError, match="column"):
        ColumnSpec("x\x00y", ColumnKind.INTEGER)


# -- object keys on a local store -------------------------------------------------------------------
@SETTINGS
@given(parts=st.lists(hostile_text, min_size=1, max_size=3))
def test_keys_never_leave_the_store_root_nor_alias(tmp_path: Path, parts: list[str]) -> None:
    """Whatever the parts, a key either is refused or names a file under the root, read back as
    written: ``%2e%2e%2f`` is not decoded, ``?``/``#`` do not cut the key."""
    root = as_uri(tmp_path / "store")
    outside_before = set(os.listdir(tmp_path))
    store = ObjectStore(root=root)
    try:
        uri = join_uri(root, *parts)
    except ParameterError as exc:
        _short_message(exc, "/".join(parts))
        return
    payload = repr(parts).encode()
    try:
        store.put_bytes(uri, payload)
    except (ParameterError, OSError):  # a segment the filesystem refuses (too long, NUL...)
        return
    path = local_path(uri)
    assert Path(os.path.realpath(path)).is_relative_to(os.path.realpath(tmp_path / "store"))
    assert store.get_bytes(uri) == payload
    assert set(os.listdir(tmp_path)) <= outside_before | {"store"}
    # a sibling key that differs only after a '?' or '#' is another object
    sibling = uri + "?x" if "?" not in uri else uri.replace("?", "_", 1)
    store.put_bytes(sibling, b"other")
    assert store.get_bytes(uri) == payload


def test_question_mark_in_a_name_does_not_truncate_or_overwrite(tmp_path: Path) -> None:
    """Regression: a ``?`` in a name truncated staging keys, so files overwrote each other."""
    root = as_uri(tmp_path / "store")
    store = ObjectStore(root=root)
    a = store.put_bytes(join_uri(root, "staging", "t?x=1", "train.parquet"), b"train")
    b = store.put_bytes(join_uri(root, "staging", "t#y", "train.parquet"), b"other")
    c = store.put_bytes(join_uri(root, "staging", "t", "train.parquet"), b"plain")
    assert (store.get_bytes(a), store.get_bytes(b), store.get_bytes(c)) == (b"train", b"other", b"plain")
    assert split_uri(a)[2].endswith("/staging/t?x=1/train.parquet")


def test_url_encoded_traversal_stays_literal_and_dot_dot_is_refused(tmp_path: Path) -> None:
    """Regression: URL-encoded ``../`` in a table name wrote the real rows outside the store."""
    root = as_uri(tmp_path / "store")
    store = ObjectStore(root=root)
    uri = join_uri(root, "staging", "..%2F..%2Fescaped", "train.parquet")
    store.put_bytes(uri, b"rows")
    assert (tmp_path / "store" / "staging" / "..%2F..%2Fescaped" / "train.parquet").read_bytes() == b"rows"
    assert not (tmp_path / "escaped").exists()
    for bad in ("..", "a/../..", "./x", "a\\..\\b"):
        with pytest.raises(ParameterError):
            join_uri(root, bad)
    with pytest.raises(ParameterError, match=r"'\.\.'"):
        store.put_bytes(root + "/staging/../../escaped.bin", b"x")
    with pytest.raises(ParameterError, match="outside the object store root"):
        store.put_bytes(as_uri(tmp_path / "elsewhere.bin"), b"x")
    assert not (tmp_path / "escaped.bin").exists() and not (tmp_path / "elsewhere.bin").exists()


def test_a_symlink_inside_the_root_cannot_lead_outside(tmp_path: Path) -> None:
    root_dir = tmp_path / "store"
    (root_dir / "staging").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root_dir / "staging" / "link").symlink_to(outside)
    store = ObjectStore(root=as_uri(root_dir))
    with pytest.raises(ParameterError, match="outside the object store root"):
        store.put_bytes(join_uri(as_uri(root_dir), "staging", "link", "train.parquet"), b"rows")
    with pytest.raises(ParameterError, match="outside the object store root"):
        store.delete_prefix(join_uri(as_uri(root_dir), "staging", "link"))
    assert list(outside.iterdir()) == []


# -- source_query ---------------------------------------------------------------------------------
SELECTS = st.sampled_from(
    [
        "SELECT a, b FROM src",
        "select * from src where b = 'x;y'",
        "WITH s AS (SELECT a FROM src) SELECT a FROM s",
    ]
)
SEPARATORS = st.sampled_from([";", ";\n", " ;  ", ";/* c */", "\n;\n"])
PAYLOADS = st.sampled_from(
    [
        "DROP TABLE victim", "COMMIT; DROP TABLE victim", "DELETE FROM victim", "UPDATE victim SET v = 0",
        "INSERT INTO victim VALUES (9)", "CREATE TABLE made (a int)", "ALTER TABLE victim ADD COLUMN z int",
        "TRUNCATE victim", "GRANT ALL ON victim TO public", "SET default_transaction_read_only = off",
        "ATTACH DATABASE 'x.db' AS x", "PRAGMA query_only = OFF", "COPY victim TO '/tmp/x'",
    ]
)  # fmt: skip
TAILS = st.sampled_from(["", " --", " -- ", ";", "; --", " /* */"])


@SETTINGS
@given(
    select=SELECTS,
    sep=SEPARATORS,
    payload=PAYLOADS,
    tail=TAILS,
    dialect=st.sampled_from(["sqlite", "postgresql", "mysql", "mariadb"]),
)
def test_stacked_statements_are_refused_on_every_dialect(
    select: str, sep: str, payload: str, tail: str, dialect: str
) -> None:
    with pytest.raises(ParameterError) as info:
        check_source_query(f"{select}{sep}{payload}{tail}", dialect)
    assert isinstance(info.value, NonRetryableError)


@SETTINGS
@given(
    query=st.sampled_from(
        [
            "SELECT * INTO copy FROM src", "SELECT * FROM src FOR UPDATE", "SELECT * FROM src FOR SHARE",
            "WITH d AS (DELETE FROM victim RETURNING *) SELECT * FROM d", "SELECT pg_sleep(100)",
            "SELECT lo_export(1, '/tmp/x')", "SELECT sleep(10)", "SELECT load_file('/etc/passwd')",
            "SELECT 1 /*! ; DROP TABLE victim */", "SELECT load_extension('x')", "DELETE FROM victim",
            "DROP TABLE victim", "VALUES (1)", "", "   ", "SELECT set_config('a', 'b', false)",
        ]
    ),
    dialect=st.sampled_from(["sqlite", "postgresql", "mysql"]),
)  # fmt: skip
def test_writes_locks_and_side_effects_in_one_statement_are_refused(query: str, dialect: str) -> None:
    with pytest.raises(ParameterError):
        check_source_query(query, dialect)


@SETTINGS
@given(text=st.text(max_size=300), dialect=st.sampled_from(["sqlite", "postgresql", "mysql"]))
def test_any_text_is_refused_cleanly_or_is_one_select(text: str, dialect: str) -> None:
    try:
        out = check_source_query(text, dialect)
    except ParameterError as exc:
        _short_message(exc, text)
        return
    import sqlglot

    assert (
        len([s for s in sqlglot.parse(out, read={"postgresql": "postgres"}.get(dialect, dialect)) if s]) == 1
    )


def test_plain_selects_pass_unchanged_but_for_a_trailing_semicolon() -> None:
    for q in ("SELECT a FROM t WHERE b LIKE 'x%'", "select a from t union all select a from u", "(SELECT 1)"):
        assert check_source_query(q, "postgresql") == q
    assert check_source_query("SELECT a FROM t;  ", "sqlite") == "SELECT a FROM t"


#: queries analysts write: none may be refused
EVERYDAY_QUERIES = {
    "postgresql": [
        "SELECT a::int AS a, b FROM s.t WHERE b ILIKE 'x%'",
        "SELECT date_trunc('day', ts) AS d, count(*) OVER (PARTITION BY b) AS n FROM t",
        "SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b DESC",
        "SELECT a FROM t WHERE b = ANY(ARRAY[1,2])",
        "SELECT CASE WHEN a > 1 THEN 'x' ELSE NULL END AS c FROM t LIMIT 10 OFFSET 5",
        "SELECT t.a, u.b FROM t JOIN u USING (id) WHERE t.ts > now() - interval '30 days'",
        'select "Mixed Col" as a from "Weird Table"',
        "SELECT a FROM t TABLESAMPLE BERNOULLI (10)",
        "SELECT a FROM t WHERE b ~ '^x'",
    ],
    "mysql": [
        "SELECT `a`, DATE_FORMAT(ts, '%Y') AS y FROM `db`.`t`",
        "SELECT a FROM t WHERE b REGEXP '^x' LIMIT 5, 10",
        "SELECT IFNULL(a, 0) AS a, GROUP_CONCAT(b) AS b FROM t GROUP BY a",
    ],
    "sqlite": [
        "SELECT a, strftime('%Y', ts) AS y FROM t",
        "SELECT a FROM t WHERE b GLOB 'x*'",
        "SELECT a, b FROM t WHERE rowid % 2 = 0 LIMIT 5",
    ],
}


@pytest.mark.parametrize(
    ("dialect", "query"), [(d, q) for d, queries in EVERYDAY_QUERIES.items() for q in queries]
)
def test_everyday_selects_are_not_refused(dialect: str, query: str) -> None:
    assert check_source_query(query, dialect) == query


# -- secrets in URLs ------------------------------------------------------------------------------
#: secrets as they appear in URLs: ``/``, ``@``, ``:`` and ``=`` included (``?#&`` would be
#: percent-encoded in a real URL, as SQLAlchemy renders them)
secrets_text = st.text(alphabet="abcdefghXYZ0123456789/@:=-_.~!$", min_size=8, max_size=30).filter(
    lambda s: sum(c.isalnum() for c in s) >= 6
)


@SETTINGS
@given(
    secret=secrets_text,
    param=st.sampled_from(
        ["password", "PASSWORD", "pwd", "secret", "token", "access_token", "api_key", "sig", "X-Amz-Signature",
         "X-Amz-Security-Token", "aws_secret_access_key", "client_secret", "sslpassword", "auth"]
    ),
    scheme=st.sampled_from(["postgresql+psycopg", "mysql+pymysql", "https", "s3", "snowflake"]),
    where=st.sampled_from(["userinfo", "query", "fragment", "dsn"]),
)  # fmt: skip
def test_secrets_in_urls_never_survive_scrubbing(secret: str, param: str, scheme: str, where: str) -> None:
    """Regression: a password given as a URL query parameter appeared in the manifest and output
    (the ``user:pass@`` form was masked)."""
    if where == "userinfo":
        url = f"{scheme}://user:{secret}@host:5432/db?sslmode=require"
    elif where == "query":
        url = f"{scheme}://user@host:5432/db?sslmode=require&{param}={secret}&application_name=x"
    elif where == "fragment":
        url = f"{scheme}://host:5432/db?sslmode=require#{param}={secret}"
    else:
        url = f"host:5432/db sslmode=require {param if 'pass' in param.lower() else 'password'}={secret}"
    for text in (url, f"cannot use warehouse {url!r}: boom", json.dumps({"warehouse": url})):
        scrubbed = scrub_url(text)
        assert secret not in scrubbed
        assert "host:5432/db" in scrubbed and "sslmode=require" in scrubbed


def test_scrubbing_keeps_harmless_urls_readable() -> None:
    assert scrub_url("s3://bucket/published/t/_latest.json") == "s3://bucket/published/t/_latest.json"
    assert scrub_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert scrub_url("mysql+pymysql://root@h:3306/db") == "mysql+pymysql://root@h:3306/db"
    assert scrub_url("see https://x/y?page=2 and more") == "see https://x/y?page=2 and more"
    assert scrub_url("s3://bucket/me@example.com/x.parquet") == "s3://bucket/me@example.com/x.parquet"
    assert scrub_url("postgresql://u:p@ss/w@host/db") == "postgresql://u:***@host/db"


# -- spec and training limits ---------------------------------------------------------------------
def _spec(**extra: Any) -> dict[str, Any]:
    return {
        "table": "t",
        "columns": [{"name": "a", "kind": "integer"}, {"name": "c", "kind": "categorical"}],
        **extra,
    }


def test_a_huge_public_domain_is_refused_naming_column_and_limit() -> None:
    """Regression: a public domain of 2M categories failed only after the rows were read."""
    raw = _spec()
    raw["columns"][1]["categories"] = [f"v{i}" for i in range(2_000_000)]
    with pytest.raises(SpecError, match=rf"column 'c'.*2000000 categories, more than {MAX_CATEGORIES}"):
        TableSpec.from_dict(raw)


def test_a_huge_rule_is_refused_before_it_is_parsed() -> None:
    """Regression: a 500-term rule failed only after the rows were read."""
    expr = " and ".join(f"a > {i}" for i in range(500))
    with pytest.raises(SpecError, match=rf"rule 'huge'.*more than {MAX_RULE_EXPR_CHARS}"):
        TableSpec.from_dict(_spec(rules=[{"name": "huge", "expr": expr}]))
    many_terms = " + ".join("a" for _ in range(MAX_RULE_TERMS + 1)) + " > 0"
    assert len(many_terms) <= MAX_RULE_EXPR_CHARS
    with pytest.raises(SpecError, match=rf"rule 'wide'.*more than {MAX_RULE_TERMS}"):
        TableSpec.from_dict(_spec(rules=[{"name": "wide", "expr": many_terms}]))


def test_absurd_column_counts_are_refused_before_columns_are_built() -> None:
    raw = {"table": "t", "columns": [{"name": f"c{i}", "kind": "integer"} for i in range(MAX_COLUMNS + 1)]}
    with pytest.raises(SpecError, match=f"more than {MAX_COLUMNS}"):
        TableSpec.from_dict(raw)


@SETTINGS
@given(
    epochs=st.one_of(st.integers(-10, 10**12), st.floats(allow_nan=True, allow_infinity=True), st.booleans()),
    batch=st.one_of(st.integers(-10, 10**9), st.just(float("nan"))),
)
def test_train_limits_are_finite_integers_in_range(epochs: Any, batch: Any) -> None:
    try:
        check_train_limits(epochs=epochs, batch_size=batch)
    except ParameterError as exc:
        assert "epochs" in str(exc) or "batch_size" in str(exc)
        return
    assert 1 <= epochs <= boundary.MAX_EPOCHS and epochs == int(epochs) and not isinstance(epochs, bool)
    assert 1 <= batch <= boundary.MAX_BATCH_SIZE


def test_epochs_1e9_is_refused() -> None:
    """Regression: ``epochs=1e9`` failed only after the rows were read (the pipeline calls this
    before reserving budget)."""
    with pytest.raises(ParameterError, match="epochs must be in"):
        check_train_limits(epochs=1e9)
    with pytest.raises(ParameterError, match="planned DP-SGD steps"):
        check_train_limits(planned_steps=10**12)


@SETTINGS
@given(
    table=hostile_text,
    columns=st.lists(hostile_text, min_size=1, max_size=4),
    target=st.one_of(st.none(), hostile_text),
)
def test_generated_specs_are_valid_or_refused_as_spec_errors(
    table: str, columns: list[str], target: str | None
) -> None:
    raw: dict[str, Any] = {"table": table, "columns": [{"name": c, "kind": "categorical"} for c in columns]}
    if target is not None:
        raw["target"] = target
    try:
        spec = TableSpec.from_dict(raw)
    except SpecError as exc:
        _short_message(exc, table)
        return
    check_spec_limits(spec)
    for name in [spec.name.split(".")[-1], *spec.column_names]:
        assert IDENTIFIER_PATTERN.fullmatch(name)


# -- bundles --------------------------------------------------------------------------------------
def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


META = {
    "format": "dpsynth-model-bundle",
    "version": 1,
    "generator": "dp_tvae",
    "params": {},
    "model_config": {},
}


def _whitespace_bomb(mib: int) -> bytes:
    """A bundle whose ``bundle.json`` is valid JSON padded with ``mib`` MiB of spaces."""
    buf = io.BytesIO()
    piece = b" " * (1024 * 1024)
    with (
        zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf,
        zf.open("bundle.json", "w", force_zip64=True) as member,
    ):
        member.write(json.dumps(META)[:-1].encode())
        for _ in range(mib):
            member.write(piece)
        member.write(b"}")
    return buf.getvalue()


def test_a_zip_bomb_bundle_is_refused_without_inflating_it() -> None:
    """Regression: a 1.7 MB zip-bomb bundle took 3.5 GB. 256 MiB of JSON whitespace compresses
    to about 250 KB: refused by its size; 32 MiB (under the size cap): refused by its ratio. Both
    before a byte is inflated."""
    huge = _whitespace_bomb(256)
    assert len(huge) < 2 * 1024 * 1024
    with pytest.raises(BundleError, match=r"declares 268435\d+ bytes, more than"):
        read_bundle_metadata(huge)
    with pytest.raises(BundleError, match=rf"more than {MAX_COMPRESSION_RATIO}× \(a zip bomb\?\)"):
        read_bundle_metadata(_whitespace_bomb(32))


def test_a_member_whose_header_understates_its_size_is_cut_at_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("synth_core.bundle.MAX_METADATA_BYTES", 1000)
    data = _zip({"bundle.json": json.dumps({**META, "pad": "x" * 5000}).encode()}, zipfile.ZIP_STORED)
    with pytest.raises(BundleError, match="more than 1000"):
        read_bundle_metadata(data)
    # the cap holds while reading, whatever the header declares
    monkeypatch.setattr("synth_core.bundle._check_declared_size", lambda info, limit: None)
    with pytest.raises(BundleError, match="bigger than 10 bytes"):
        read_member(data, "bundle.json", 10)


def test_too_many_or_duplicated_members_are_refused() -> None:
    many = _zip({f"m{i}": b"" for i in range(40)} | {"bundle.json": json.dumps(META).encode()})
    with pytest.raises(BundleError, match="members, more than"):
        read_bundle_metadata(many)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf, pytest.warns(UserWarning):
        zf.writestr("bundle.json", json.dumps(META))
        zf.writestr("bundle.json", json.dumps({**META, "generator": "evil"}))
    with pytest.raises(BundleError, match="twice"):
        read_bundle_metadata(buf.getvalue())


@SETTINGS
@given(
    members=st.dictionaries(
        st.sampled_from(["bundle.json", "weights.pt", "x", "../evil", "/abs"]),
        st.one_of(
            st.binary(max_size=200),
            st.just(json.dumps(META).encode()),
            st.builds(lambda v: json.dumps({**META, "version": v}).encode(), st.integers()),
            st.just(b"[" * 100_000),
            st.just(json.dumps({**META, "params": [1]}).encode()),
        ),
        max_size=4,
    ),
    garbage=st.binary(max_size=64),
)
def test_generated_bundles_are_read_or_refused_as_bundle_errors(
    members: dict[str, bytes], garbage: bytes
) -> None:
    for data in (_zip(members), garbage, _zip(members)[: max(1, len(_zip(members)) // 2)]):
        try:
            meta = read_bundle_metadata(data)
        except BundleError:
            pass
        else:
            assert meta["format"] == META["format"] and isinstance(meta.get("params", {}), dict)
        with contextlib.suppress(BundleError):
            read_weights(data)


@pytest.mark.parametrize(
    "call", ["dblink_connect_u('x')", "dblink_send_query('c', 'DELETE FROM t')", "pg_file_write('f', 'x', false)",
             "pg_stat_reset()", "lo_get(1)"],
)  # fmt: skip
def test_side_effecting_function_families_are_refused_by_prefix(call: str) -> None:
    """dblink_* opens another session the read-only transaction does not bind: refused by name family."""
    with pytest.raises(ParameterError, match="side effects"):
        check_source_query(f"SELECT {call}", "postgresql")


def test_source_query_needs_a_dialect_with_a_read_only_guard() -> None:
    with pytest.raises(ParameterError, match="source_query is supported on"):
        check_source_query("SELECT 1", "snowflake")


def test_a_trailing_comment_cannot_swallow_the_wrapping_parenthesis() -> None:
    assert check_source_query("SELECT a FROM t -- note", "sqlite").endswith("\n")
    assert check_source_query("SELECT a FROM t;", "sqlite") == "SELECT a FROM t"
