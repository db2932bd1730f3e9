"""ObjectStore against a local folder and a real S3 server (SeaweedFS, see ``s3_server.py``).

No mocks: every S3 test talks to a live ``weed`` process with authenticated access, and the
fault tests really kill, hang and restart it.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3_server as s3s
from s3_server import S3Bucket, S3Server

from synth_core.errors import NonRetryableError, ParameterError
from synth_core.object_store import (
    ObjectStore,
    ObjectStoreUnavailableError,
    S3Options,
    as_uri,
    join_uri,
    local_path,
)

# The S3 fixtures (tests/conftest.py may provide them too; the same functions either way).
s3_server = s3s.s3_server
s3_bucket = s3s.s3_bucket

EXPECTED_DTYPES = {
    "id": "int64",
    "age": "Int64",
    "income": "float64",
    "city": "str",
    "member": "bool",
    "born": "datetime64[us]",
    "seen": "datetime64[us, UTC]",
}

# Written by hand, without pandas metadata: the writer must still restore the pandas dtypes.
SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("age", pa.int64()),
        ("income", pa.float64()),
        ("city", pa.large_string()),
        ("member", pa.bool_()),
        ("born", pa.timestamp("us")),
        ("seen", pa.timestamp("us", tz="UTC")),
    ]
)


def make_chunk(start: int, n: int, *, all_null: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(start)
    ids = np.arange(start, start + n, dtype="int64")
    age = pd.array(rng.integers(0, 90, n), dtype="Int64")
    city = pd.array(rng.choice(["Oslo", "Lima", "Pune", "Kyiv"], n), dtype="str")
    if all_null:
        age[:] = pd.NA
        city[:] = None
    else:
        age[::7] = pd.NA
        city[::5] = None
    born = pd.Series(pd.date_range("1950-01-01", periods=n, freq="37D"), dtype="datetime64[us]")
    born[::11] = pd.NaT
    seen = pd.Series(
        pd.date_range("2024-01-01 08:00", periods=n, freq="13min", tz="UTC"), dtype="datetime64[us, UTC]"
    )
    seen[::13] = pd.NaT
    return pd.DataFrame(
        {
            "id": ids,
            "age": age,
            "income": np.where(rng.random(n) < 0.1, np.nan, rng.lognormal(10, 1, n)),
            "city": city,
            "member": rng.random(n) < 0.5,
            "born": born.to_numpy(),
            "seen": seen.array,
        }
    )


@pytest.fixture(params=["file", "s3"])
def store_root(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ObjectStore, str]:
    """An ObjectStore and a root URI under which the test may write: a folder or a fresh bucket."""
    if request.param == "file":
        return ObjectStore(), as_uri(tmp_path / "objects")
    bucket: S3Bucket = request.getfixturevalue("s3_bucket")
    return ObjectStore(bucket.options), join_uri(bucket.uri, "root")


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point Python's temp dir at an empty folder, to see which temporary files are left behind."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield tmp


def _objects_left(store: ObjectStore, root: str) -> list[str]:
    return store.list(root)


# -- bytes -----------------------------------------------------------------------------------------
def test_put_get_exists_list_round_trip(store_root: tuple[ObjectStore, str]) -> None:
    store, root = store_root
    payload = bytes(range(256)) * 1000
    a = store.put_bytes(join_uri(root, "a", "one.bin"), payload, content_type="application/octet-stream")
    b = store.put_bytes(join_uri(root, "a", "two.txt"), b"two")
    c = store.put_bytes(join_uri(root, "b", "deep", "three.txt"), b"")

    assert store.get_bytes(a) == payload
    assert store.get_bytes(b) == b"two"
    assert store.get_bytes(c) == b""
    assert store.exists(a) and store.exists(c)
    assert not store.exists(join_uri(root, "a", "one"))  # a prefix of a key is not an object
    assert not store.exists(join_uri(root, "missing.txt"))
    assert [u.rsplit("/", 2)[-2:] for u in store.list(join_uri(root, "a"))] == [
        ["a", "one.bin"],
        ["a", "two.txt"],
    ]
    assert len(store.list(root)) == 3
    assert store.list(join_uri(root, "nothing-here")) == []

    store.put_bytes(b, b"overwritten")
    assert store.get_bytes(b) == b"overwritten"
    with pytest.raises(FileNotFoundError, match=r"missing\.txt"):
        store.get_bytes(join_uri(root, "missing.txt"))


def test_copy_delete_and_delete_prefix(store_root: tuple[ObjectStore, str], tmp_path: Path) -> None:
    store, root = store_root
    src = store.put_bytes(join_uri(root, "src", "x.bin"), b"x" * 1000)
    assert store.copy(src, join_uri(root, "dst", "x.bin")) == join_uri(root, "dst", "x.bin")
    assert store.get_bytes(join_uri(root, "dst", "x.bin")) == b"x" * 1000

    # across schemes: to a local file and back
    local = as_uri(tmp_path / "elsewhere" / "x.bin")
    ObjectStore(store.s3).copy(src, local)
    assert Path(tmp_path / "elsewhere" / "x.bin").read_bytes() == b"x" * 1000
    store.copy(local, join_uri(root, "back.bin"))
    assert store.get_bytes(join_uri(root, "back.bin")) == b"x" * 1000

    with pytest.raises(FileNotFoundError):
        store.copy(join_uri(root, "src", "nope.bin"), join_uri(root, "dst", "nope.bin"))

    # staging clean-up: a prefix is a folder, so run-1 does not take run-10 with it
    for run in ("run-1", "run-10"):
        for name in ("part-0.parquet", "sub/part-1.parquet"):
            store.put_bytes(join_uri(root, "staging", run, name), b"p")
    assert store.delete_prefix(join_uri(root, "staging", "run-1")) == 2
    assert [u.split("/staging/")[1] for u in store.list(join_uri(root, "staging"))] == [
        "run-10/part-0.parquet",
        "run-10/sub/part-1.parquet",
    ]
    assert store.delete_prefix(join_uri(root, "staging", "never-existed")) == 0

    store.delete(src)
    store.delete(src)  # deleting a missing object is not an error
    assert not store.exists(src)
    assert store.exists(join_uri(root, "dst", "x.bin"))


def test_file_uris_are_literal_paths(tmp_path: Path) -> None:
    """``file://`` URIs are the path as written: a space stays a space, ``%20`` stays ``%20``
    (keys are never URL-decoded), and listing returns URIs that read back."""
    store = ObjectStore()
    root = as_uri(tmp_path / "my store")
    assert root == "file://" + str((tmp_path / "my store").resolve())
    spaced = store.put_bytes(join_uri(root, "a b.txt"), b"space")
    encoded = store.put_bytes(join_uri(root, "a%20b.txt"), b"percent")
    assert (tmp_path / "my store" / "a b.txt").read_bytes() == b"space"
    assert (tmp_path / "my store" / "a%20b.txt").read_bytes() == b"percent"
    assert sorted(store.list(root)) == sorted([spaced, encoded])
    assert [store.get_bytes(u) for u in sorted(store.list(root))] == [b"space", b"percent"]
    assert local_path(spaced) == tmp_path.resolve() / "my store" / "a b.txt"


def test_delete_prefix_refuses_a_whole_bucket_or_root(s3_bucket: S3Bucket) -> None:
    store = ObjectStore(s3_bucket.options)
    store.put_bytes(join_uri(s3_bucket.uri, "keep.txt"), b"k")
    for prefix in (s3_bucket.uri, s3_bucket.uri + "/", "file:///", "/", "", "relative/dir"):
        with pytest.raises(ParameterError, match=r"refusing|non-empty"):
            store.delete_prefix(prefix)
    assert store.exists(join_uri(s3_bucket.uri, "keep.txt"))


# -- Parquet ---------------------------------------------------------------------------------------
def test_chunked_parquet_writer_round_trips_pandas3_dtypes(
    store_root: tuple[ObjectStore, str], private_tmp: Path
) -> None:
    store, root = store_root
    uri = join_uri(root, "synthetic", "part-00000.parquet")
    chunks = [
        make_chunk(0, 1000),
        make_chunk(1000, 1),
        make_chunk(1001, 500, all_null=True),
        make_chunk(1501, 2000),
        make_chunk(3501, 17),
    ]
    with store.open_parquet_writer(uri, SCHEMA) as writer:
        for chunk in chunks:
            writer.write_frame(chunk)
        assert not store.exists(uri)  # nothing visible before the block ends
    assert writer.committed and writer.uri == uri
    assert writer.rows == sum(len(c) for c in chunks) == 3518
    assert writer.row_groups == 5

    back = store.read_parquet(uri)
    assert {c: str(t) for c, t in back.dtypes.items()} == EXPECTED_DTYPES
    pd.testing.assert_frame_equal(back, pd.concat(chunks, ignore_index=True))
    meta = pq.ParquetFile(pa.BufferReader(store.get_bytes(uri))).metadata
    assert meta.num_row_groups == 5 and meta.num_rows == 3518
    assert writer.size_bytes == len(store.get_bytes(uri))
    assert store.list(root) == [uri]
    assert list(private_tmp.iterdir()) == []  # the local staging file is gone


def test_write_parquet_and_read_parquet_keep_working(store_root: tuple[ObjectStore, str]) -> None:
    store, root = store_root
    frame = make_chunk(0, 300)
    uri = store.write_parquet(join_uri(root, "t.parquet"), frame)
    pd.testing.assert_frame_equal(store.read_parquet(uri), frame)
    empty = store.write_parquet(join_uri(root, "empty.parquet"), frame.iloc[:0])
    assert len(store.read_parquet(empty)) == 0
    with store.open_parquet_writer(join_uri(root, "nochunks.parquet"), SCHEMA) as writer:
        pass
    assert writer.rows == 0
    assert list(store.read_parquet(writer.uri).columns) == SCHEMA.names
    with pytest.raises(FileNotFoundError):
        store.read_parquet(join_uri(root, "missing.parquet"))


def test_error_inside_the_writer_publishes_nothing(
    store_root: tuple[ObjectStore, str], private_tmp: Path
) -> None:
    store, root = store_root
    uri = join_uri(root, "out", "part-00000.parquet")
    with pytest.raises(RuntimeError, match="generator crashed"), store.open_parquet_writer(uri, SCHEMA) as w:
        w.write_frame(make_chunk(0, 100))
        w.write_frame(make_chunk(100, 100))
        raise RuntimeError("generator crashed")
    assert not w.committed
    assert not store.exists(uri)
    assert store.list(root) == []
    assert list(private_tmp.iterdir()) == []
    if root.startswith("file://"):  # no hidden temporary file next to the destination either
        out = Path(store_root[1][len("file://") :]) / "out"
        assert list(out.iterdir()) == []

    # a failed rewrite leaves the previous object untouched
    store.write_parquet(uri, make_chunk(0, 10))
    with pytest.raises(KeyError), store.open_parquet_writer(uri, SCHEMA) as w:
        w.write_frame(make_chunk(500, 50))
        raise KeyError("boom")
    pd.testing.assert_frame_equal(store.read_parquet(uri), make_chunk(0, 10))


def test_chunk_that_does_not_fit_the_schema_names_the_column_not_the_value(tmp_path: Path) -> None:
    store = ObjectStore()
    uri = as_uri(tmp_path / "bad.parquet")
    bad = make_chunk(0, 5).assign(income=["SECRET-VALUE-42"] * 5)
    with pytest.raises(ParameterError) as info, store.open_parquet_writer(uri, SCHEMA) as w:
        w.write_frame(bad)
    assert "income" in str(info.value) and "SECRET-VALUE-42" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None
    renamed = make_chunk(0, 5).rename(columns={"city": "town"})
    with (
        pytest.raises(ParameterError, match=r"missing columns \['city'\].*unexpected columns \['town'\]"),
        store.open_parquet_writer(uri, SCHEMA) as w,
    ):
        w.write_frame(renamed)
    assert not store.exists(uri)


def test_big_parquet_upload_goes_multipart(s3_server: S3Server, s3_bucket: S3Bucket) -> None:
    store = ObjectStore(s3_bucket.options, multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20)
    rng = np.random.default_rng(1)
    uri = join_uri(s3_bucket.uri, "big.parquet")
    schema = pa.schema([("x", pa.float64()), ("y", pa.int64())])
    with store.open_parquet_writer(uri, schema, compression="none") as w:
        for _ in range(4):
            w.write_frame(pd.DataFrame({"x": rng.random(200_000), "y": rng.integers(0, 2**62, 200_000)}))
    assert w.size_bytes > 12 * 2**20
    head = s3_server.client().head_object(Bucket=s3_bucket.name, Key="big.parquet")
    assert head["ContentLength"] == w.size_bytes
    assert head["ETag"].strip('"').endswith("-3") or head["ETag"].strip('"').endswith("-4")  # multipart
    assert head["ContentType"] == "application/vnd.apache.parquet"
    small_spool = ObjectStore(s3_bucket.options, spool_bytes=2**20)  # streams through a temp file
    back = small_spool.read_parquet(uri)
    assert len(back) == 800_000 and back["y"].dtype == "int64"
    copy = store.copy(uri, join_uri(s3_bucket.uri, "copy", "big.parquet"))  # multipart server-side copy
    assert store.get_bytes(copy) == store.get_bytes(uri)


# -- sharing ---------------------------------------------------------------------------------------
def test_presigned_url_fetches_without_credentials(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = ObjectStore(s3_bucket.options)
    uri = store.put_bytes(join_uri(s3_bucket.uri, "report", "index.html"), b"<h1>report</h1>")
    url = store.presigned_url(uri, expires_s=60)
    assert s3_bucket.options.aws_secret_access_key not in url
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == b"<h1>report</h1>"
    plain = url.split("?", 1)[0]  # the same URL unsigned is refused: the server really checks
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(plain, timeout=10)
    assert denied.value.code == 403

    short = store.presigned_url(uri, expires_s=1)
    time.sleep(2.1)
    with pytest.raises(urllib.error.HTTPError) as expired:
        urllib.request.urlopen(short, timeout=10)
    assert expired.value.code == 403

    local = ObjectStore().put_bytes(as_uri(tmp_path / "r.html"), b"local")
    assert ObjectStore().presigned_url(local) == local
    with pytest.raises(ParameterError, match="lifetime"):
        store.presigned_url(uri, expires_s=8 * 24 * 3600)


# -- errors ----------------------------------------------------------------------------------------
def test_wrong_secret_is_a_clear_error_without_the_secret(s3_bucket: S3Bucket) -> None:
    good = ObjectStore(s3_bucket.options)
    uri = good.put_bytes(join_uri(s3_bucket.uri, "x.bin"), b"x")
    wrong_secret = "WRONG-" + str(s3_bucket.options.aws_secret_access_key)[::-1]
    bad = ObjectStore(dataclasses.replace(s3_bucket.options, aws_secret_access_key=wrong_secret))
    for attempt in (
        lambda: bad.get_bytes(uri),
        lambda: bad.put_bytes(uri, b"y"),
        lambda: bad.write_parquet(join_uri(s3_bucket.uri, "t.parquet"), make_chunk(0, 3)),
        lambda: bad.list(s3_bucket.uri),
    ):
        with pytest.raises(ParameterError) as info:
            attempt()
        assert isinstance(info.value, NonRetryableError)
        message = str(info.value)
        assert s3_bucket.name in message and "denied" in message
        everything = "".join(traceback.format_exception(info.value))  # chained causes included
        for secret in (wrong_secret, s3_bucket.options.aws_secret_access_key):
            assert secret not in everything
    assert good.get_bytes(uri) == b"x"


def test_missing_bucket_is_a_parameter_error_naming_it(s3_server: S3Server, private_tmp: Path) -> None:
    store = ObjectStore(s3_server.options())
    root = "s3://no-such-bucket-dpsynth"
    for attempt in (
        lambda: store.put_bytes(join_uri(root, "a.bin"), b"a"),
        lambda: store.get_bytes(join_uri(root, "a.bin")),
        lambda: store.exists(join_uri(root, "a.bin")),
        lambda: store.list(root),
        lambda: store.copy(join_uri(root, "a.bin"), join_uri(root, "b.bin")),
        lambda: store.write_parquet(join_uri(root, "t.parquet"), make_chunk(0, 3)),
    ):
        with pytest.raises(ParameterError, match="bucket 'no-such-bucket-dpsynth' does not exist"):
            attempt()
    assert list(private_tmp.iterdir()) == []
    assert "no-such-bucket-dpsynth" not in {b["Name"] for b in s3_server.client().list_buckets()["Buckets"]}


def test_stopped_server_is_retryable_and_a_retry_succeeds(
    s3_server: S3Server, s3_bucket: S3Bucket, private_tmp: Path
) -> None:
    store = ObjectStore(s3_bucket.options)
    uri = join_uri(s3_bucket.uri, "published", "part-00000.parquet")
    chunks = [make_chunk(0, 200), make_chunk(200, 300)]

    def publish() -> None:
        with store.open_parquet_writer(uri, SCHEMA) as w:
            for chunk in chunks:
                w.write_frame(chunk)

    s3_server.stop()
    try:
        t0 = time.monotonic()
        with pytest.raises(ObjectStoreUnavailableError) as info:
            publish()
        assert time.monotonic() - t0 < 15
        assert not isinstance(info.value, NonRetryableError)
        assert "unavailable" in str(info.value) and s3_bucket.options.aws_secret_access_key not in str(
            info.value
        )
        for attempt in (
            lambda: store.get_bytes(uri),
            lambda: store.exists(uri),
            lambda: store.list(s3_bucket.uri),
        ):
            with pytest.raises(ObjectStoreUnavailableError):
                attempt()
        assert list(private_tmp.iterdir()) == []
    finally:
        s3_server.start()
    publish()  # the task's retry
    pd.testing.assert_frame_equal(store.read_parquet(uri), pd.concat(chunks, ignore_index=True))


def test_hung_server_times_out_as_retryable(s3_server: S3Server, s3_bucket: S3Bucket) -> None:
    impatient = dataclasses.replace(s3_bucket.options, read_timeout_s=1.0, max_attempts=1)
    store = ObjectStore(impatient)
    uri = store.put_bytes(join_uri(s3_bucket.uri, "x.bin"), b"x")
    with s3_server.paused():
        t0 = time.monotonic()
        with pytest.raises(ObjectStoreUnavailableError, match="ReadTimeoutError"):
            store.get_bytes(uri)
        assert time.monotonic() - t0 < 10
    assert store.get_bytes(uri) == b"x"


def test_default_client_settings_fail_fast() -> None:
    options = S3Options(endpoint_url="http://user:pw@127.0.0.1:9")
    config = options.client().meta.config
    assert (config.connect_timeout, config.read_timeout) == (5.0, 8.0)
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}  # attempts, not retries
    assert options.endpoint_label() == "http://127.0.0.1:9"
    assert "secret" not in repr(dataclasses.replace(options, aws_secret_access_key="secret"))
