"""Object store: a local folder (``file://``) by default, S3 (``s3://``) through boto3.

Everything dpsynth stages or publishes (Parquet, model bundles, reports, manifests) goes through
:class:`ObjectStore`, addressed by absolute URIs. Writes are atomic per object: local files are
written to a temporary name in the destination folder and renamed; on S3 an object appears only
when its ``PutObject`` (or its multipart upload) completes.

Errors are classified so that the provider can decide whether a retry makes sense:

* S3 unreachable, timing out, throttling or answering 5xx → :class:`ObjectStoreUnavailableError`
  (retryable: it is not a :class:`~synth_core.errors.NonRetryableError`);
* a missing object → :class:`FileNotFoundError`;
* a missing bucket, denied access, bad credentials or a malformed request →
  :class:`~synth_core.errors.ParameterError` naming the bucket (never a credential).

URIs are taken literally: everything after ``s3://bucket/`` (or ``file://``) is the key or path,
never URL-decoded, and ``?``, ``#`` and ``%`` are ordinary characters of it (so a name holding
``%2e%2e%2f`` or ``?`` cannot climb out of a folder or cut two keys to one). :func:`join_uri` refuses
``.``/``..`` segments, and so does every operation; a store made with ``root`` refuses any URI not
under it, checking local paths after resolving symlinks.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from synth_core.boundary import check_key_part, describe
from synth_core.errors import DPSynthError, ParameterError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

T = TypeVar("T")

MiB = 1024 * 1024
#: S3 refuses presigned URLs (SigV4) that live longer than 7 days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
_PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"

# S3 error codes (besides any HTTP 5xx) after which a later retry can succeed.
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeoutException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "OperationAborted",
        "500",
        "502",
        "503",
        "504",
    }
)
_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
        "AccountProblem",
        "InvalidSecurity",
    }
)
_MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class ObjectStoreUnavailableError(DPSynthError):
    """The object store could not be reached or failed on its side (connection refused, timeout,
    throttling, HTTP 5xx). Retrying the task later can succeed."""


@dataclass(frozen=True)
class S3Options:
    """How to reach S3: endpoint (for S3-compatible servers), credentials and client timeouts.

    Credentials left ``None`` come from boto3's usual chain (environment, profile, instance role).
    The timeouts and retry budget make a dead endpoint fail within seconds with
    :class:`ObjectStoreUnavailableError` (retryable): one connection attempt waits at most
    ``connect_timeout_s``, a stalled response ``read_timeout_s`` (between two received bytes, so a
    long download that keeps flowing is not cut), and botocore makes at most ``max_attempts``
    attempts per call ("standard" retry mode, jittered back-off of at most 1 s then 2 s). With the
    defaults an endpoint that accepts connections and never answers fails a call in at most
    3 × 8 s + 3 s = 27 s, one that drops them in 3 × 5 s + 3 s = 18 s (a connection's
    ``config_kwargs`` can give slow operations more, e.g. ``{"read_timeout": 60}``).

    ``client_factory``, when given, makes the client instead of ``boto3.client``: it receives
    these defaults as a ``botocore.config.Config`` and merges its own settings over them (the
    provider passes the amazon provider's ``S3Hook.get_client_type``, so a connection's endpoint,
    region, role, ``config_kwargs``, retries and timeouts apply and temporary credentials refresh);
    the other fields then only name the endpoint in messages.
    """

    endpoint_url: str | None = None
    region_name: str | None = None
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 8.0
    max_attempts: int = 3
    client_factory: Callable[[Any], Any] | None = field(default=None, repr=False, compare=False)

    def default_config(self) -> Any:
        """dpsynth's botocore ``Config`` for S3: timeouts, retry budget, SigV4, TCP keep-alive."""
        from botocore.config import Config

        return Config(
            connect_timeout=self.connect_timeout_s,
            read_timeout=self.read_timeout_s,
            retries={"mode": "standard", "total_max_attempts": self.max_attempts},
            signature_version="s3v4",  # also for presigned URLs (botocore would otherwise pick SigV2)
            tcp_keepalive=True,
        )

    def client(self) -> Any:
        if self.client_factory is not None:
            return self.client_factory(self.default_config())
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region_name or "us-east-1",
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
            config=self.default_config(),
        )

    def endpoint_label(self) -> str:
        """The endpoint for messages: without any user:password part; ``AWS S3`` by default."""
        if not self.endpoint_url:
            return "AWS S3"
        parts = urlsplit(self.endpoint_url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))


def join_uri(base: str, *parts: str) -> str:
    """``join_uri("s3://b/p", "x", "y.parquet")`` → ``"s3://b/p/x/y.parquet"``.

    Each part is one or more key segments (:func:`~synth_core.boundary.check_key_part`): a ``.`` or
    ``..`` segment, a backslash or a control character is refused, so the result lies under
    ``base``.
    """
    out = base.rstrip("/")
    for p in parts:
        out += "/" + check_key_part(p).strip("/")
    return out


def split_uri(uri: str) -> tuple[str, str, str]:
    """``(scheme, bucket, key)`` of an ``s3://`` URI, or ``("file", "", path)`` of a ``file://`` URI
    or a plain path, taken literally: no ``?``/``#`` parsing, no percent-decoding.

    Raises:
        ParameterError: another scheme, an S3 URI without a bucket, a ``file://`` URI naming a
            host, or a ``..`` segment or NUL character in the key or path.
    """
    if not isinstance(uri, str) or not uri:
        raise ParameterError(f"an object URI must be non-empty text, got {describe(uri)}")
    scheme, sep, rest = uri.partition("://")
    if not sep:
        scheme, rest = "", uri
    scheme = scheme.lower()
    if scheme == "s3":
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise ParameterError(f"S3 URI without a bucket: {describe(uri)}")
        _check_segments(key, uri)
        return "s3", bucket, key
    if scheme == "file":
        host, slash, path = rest.partition("/")
        if host not in ("", "localhost"):
            raise ParameterError(f"a file:// URI names a host ({describe(host)}): use file:///absolute/path")
        _check_segments(slash + path, uri)
        return "file", "", slash + path
    if scheme == "":
        _check_segments(uri, uri)
        return "file", "", uri
    raise ParameterError(
        f"unsupported object store URI scheme {describe(scheme)} in {describe(uri)} (use file:// or s3://)"
    )


def _check_segments(key: str, uri: str) -> None:
    if "\x00" in key or ".." in key.split("/"):
        raise ParameterError(f"object URI {describe(uri)} has a '..' segment or a NUL character")


def lineage_dataset_for_uri(uri: str) -> tuple[str, str]:
    """OpenLineage ``(namespace, name)`` of an object: ``s3://bucket`` + key, or ``file`` + path."""
    scheme, bucket, key = split_uri(uri)
    if scheme == "s3":
        return f"s3://{bucket}", key
    return "file", key


def local_path(uri: str) -> Path:
    """The filesystem path of a ``file://`` URI (or a plain path), taken literally (no decoding)."""
    scheme, _, path = split_uri(uri)
    if scheme != "file":
        raise ParameterError(f"not a local URI: {describe(uri)}")
    return Path(path)


def file_uri(path: str | os.PathLike[str]) -> str:
    """The ``file://`` URI of an absolute path, literally (``file://`` + the path, no
    percent-encoding: :func:`local_path` reads it back unchanged)."""
    text = os.fspath(path)
    if not os.path.isabs(text):
        raise ParameterError(f"file URIs need an absolute path, got {describe(text)}")
    return "file://" + text


def as_uri(path_or_uri: str | os.PathLike[str]) -> str:
    """A plain path becomes a ``file://`` URI (absolute, symlinks resolved); URIs pass through."""
    text = os.fspath(path_or_uri)
    if text.partition("://")[0].lower() in ("file", "s3") and "://" in text:
        return text
    return file_uri(Path(text).resolve())


def is_under(uri: str, root: str) -> bool:
    """Whether ``uri`` lies under ``root`` (or is it): the same S3 bucket with the root's key as a
    folder prefix, or a local path inside the root folder once both are resolved (symlinks
    included, so a link inside the root pointing outside is not under it)."""
    scheme, bucket, key = split_uri(uri)
    r_scheme, r_bucket, r_key = split_uri(root)
    if scheme != r_scheme or bucket != r_bucket:
        return False
    if scheme == "s3":
        prefix = r_key.strip("/")
        return not prefix or key == prefix or key.startswith(prefix + "/")
    real = Path(os.path.realpath(key))
    return real.is_relative_to(Path(os.path.realpath(r_key)))


def _remove_quietly(path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(OSError):
        Path(path).unlink(missing_ok=True)


class ParquetChunkWriter:
    """Appends pandas frames, one row group each, to a local temporary Parquet file.

    Made by :meth:`ObjectStore.open_parquet_writer`; the file becomes the object at :attr:`uri`
    only when that context exits without an error.

    Attributes:
        uri: where the object appears.
        rows: rows written so far.
        row_groups: chunks written so far.
        size_bytes: size of the finished file (set on commit).
        committed: whether the object has been published at :attr:`uri`.
    """

    def __init__(self, uri: str, schema: pa.Schema, path: Path, *, compression: str = "zstd") -> None:
        self.uri = uri
        self.schema = schema
        self.rows = 0
        self.row_groups = 0
        self.size_bytes = 0
        self.committed = False
        self._path = path
        self._compression = compression
        self._writer: Any = None

    def write_frame(self, frame: pd.DataFrame) -> int:
        """Append ``frame`` as a row group; returns the total rows written so far.

        Raises:
            ParameterError: the frame's columns or types do not fit the writer's schema (the
                message names the columns, never a value).
        """
        import pyarrow.parquet as pq

        table = self._to_table(frame)
        if self._writer is None:
            # The first chunk's schema carries pandas metadata (Int64, str, tz...), so the
            # file reads back with the same pandas dtypes.
            self._writer = pq.ParquetWriter(str(self._path), table.schema, compression=self._compression)
        self._writer.write_table(table)
        self.rows += table.num_rows
        self.row_groups += 1
        return self.rows

    def _to_table(self, frame: pd.DataFrame) -> pa.Table:
        import pyarrow as pa

        expected = list(self.schema.names)
        got = [str(c) for c in frame.columns]
        missing = [c for c in expected if c not in got]
        extra = [c for c in got if c not in expected]
        if missing or extra:
            raise ParameterError(
                f"frame written to {self.uri} does not match the Parquet schema: "
                f"missing columns {missing}, unexpected columns {extra}"
            )
        try:
            return pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
        except (pa.ArrowException, ValueError, TypeError):
            pass
        # Arrow's message quotes the offending cell value: find the column(s) without it.
        bad = []
        for f in self.schema:
            try:
                pa.array(frame[f.name], type=f.type, from_pandas=True)
            except (pa.ArrowException, ValueError, TypeError):
                bad.append(f"{f.name} (expected {f.type}, got {frame[f.name].dtype})")
        raise ParameterError(
            f"frame written to {self.uri} does not fit the Parquet schema in column(s): "
            f"{', '.join(bad) or 'unknown'}"
        )

    def _finish(self) -> Path:
        """Close the file (writing an empty file with the schema if no chunk came)."""
        import pyarrow.parquet as pq

        if self._writer is None:
            self._writer = pq.ParquetWriter(str(self._path), self.schema, compression=self._compression)
        self._writer.close()
        self._writer = None
        self.size_bytes = self._path.stat().st_size
        return self._path

    def _abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        _remove_quietly(self._path)


class ObjectStore:
    """Reads and writes objects by absolute ``file://`` or ``s3://`` URI.

    Args:
        s3: how to reach S3 (only used for ``s3://`` URIs).
        multipart_threshold: S3 uploads/copies of files at least this big use multipart.
        multipart_chunksize: part size of multipart uploads (boto3 raises it when a file would
            need more than 10,000 parts).
        spool_bytes: S3 reads of Parquet objects up to this size stay in memory; bigger ones are
            streamed to a local temporary file first.
        root: when given, every URI this store reads, writes, lists or deletes must lie under it
            (:func:`is_under`: local paths checked after resolving symlinks); others are refused
            with :class:`~synth_core.errors.ParameterError`.
    """

    def __init__(
        self,
        s3: S3Options | None = None,
        *,
        multipart_threshold: int = 32 * MiB,
        multipart_chunksize: int = 16 * MiB,
        spool_bytes: int = 64 * MiB,
        root: str | None = None,
    ) -> None:
        if root is not None:
            split_uri(root)
        self.root = root
        self.s3 = s3 or S3Options()
        self.multipart_threshold = multipart_threshold
        self.multipart_chunksize = multipart_chunksize
        self.spool_bytes = spool_bytes
        self._client: Any = None

    def _s3(self) -> Any:
        if self._client is None:
            try:
                self._client = self.s3.client()
            except Exception as exc:  # bad region/endpoint in the connection
                raise ParameterError(
                    f"cannot configure the S3 client for {self.s3.endpoint_label()}: {type(exc).__name__}"
                ) from None
        return self._client

    def _transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            max_concurrency=4,
            use_threads=True,
        )

    def _split(self, uri: str) -> tuple[str, str, str]:
        """:func:`split_uri`, after checking that ``uri`` lies under the store's root (if any)."""
        parts = split_uri(uri)
        if self.root is not None and not is_under(uri, self.root):
            raise ParameterError(f"object {describe(uri, 200)} is outside the object store root {self.root}")
        return parts

    # -- S3 error classification ---------------------------------------------------------------
    def _call(self, op: str, uri: str, fn: Callable[[], T]) -> T:
        """Run one S3 operation, turning boto errors into dpsynth's error classes."""
        try:
            return fn()
        except Exception as exc:
            translated = self._translate(exc, op, uri)
            if translated is None:
                raise
            if isinstance(translated, FileNotFoundError):
                raise translated from None
            raise translated from exc

    def _translate(self, exc: BaseException, op: str, uri: str) -> BaseException | None:
        """The dpsynth error for a boto/s3transfer/urllib3 error, or ``None`` to re-raise as is."""
        import urllib3.exceptions
        from botocore import exceptions as bce

        _, bucket, _ = split_uri(uri)
        where = self.s3.endpoint_label()
        # s3transfer wraps the real error (S3UploadFailedError from a ClientError, or
        # RetriesExceededError with .last_exception): look through the chain.
        seen: set[int] = set()
        cause: BaseException | None = exc
        while cause is not None and id(cause) not in seen:
            seen.add(id(cause))
            if isinstance(cause, bce.ClientError):
                return self._translate_client_error(cause, op, uri, bucket)
            if isinstance(cause, bce.NoCredentialsError | bce.PartialCredentialsError):
                return ParameterError(
                    f"no usable S3 credentials to {op} {uri} (bucket {bucket!r} at {where}): "
                    "configure the S3 connection"
                )
            if isinstance(
                cause,
                bce.ConnectionError
                | bce.HTTPClientError
                | bce.IncompleteReadError
                | bce.ChecksumError
                | bce.FlexibleChecksumError
                | urllib3.exceptions.HTTPError
                | ConnectionError
                | TimeoutError,
            ):
                return ObjectStoreUnavailableError(
                    f"S3 at {where} is unavailable: could not {op} {uri} ({type(cause).__name__}); "
                    "a retry may succeed"
                )
            if isinstance(cause, bce.ParamValidationError):
                return ParameterError(f"invalid S3 request to {op} {uri}: bad bucket or key name")
            nxt = getattr(cause, "last_exception", None)
            cause = nxt if isinstance(nxt, BaseException) else (cause.__cause__ or cause.__context__)
        return None

    def _translate_client_error(self, exc: Any, op: str, uri: str, bucket: str) -> BaseException:
        error = exc.response.get("Error", {}) or {}
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        named = str(error.get("BucketName") or bucket)
        where = self.s3.endpoint_label()
        if code == "NoSuchBucket":
            return ParameterError(
                f"S3 bucket {named!r} does not exist at {where} (while trying to {op} {uri})"
            )
        if code in _MISSING_KEY_CODES or (status == 404 and code != "NoSuchUpload"):
            # HEAD answers a bare 404 both for a missing key and a missing bucket: tell them apart.
            if code != "NoSuchKey" and not self._bucket_exists(bucket):
                return ParameterError(
                    f"S3 bucket {bucket!r} does not exist at {where} (while trying to {op} {uri})"
                )
            return FileNotFoundError(f"no object at {uri}")
        if code in _DENIED_CODES or status == 403:
            return ParameterError(
                f"access to S3 bucket {named!r} at {where} was denied ({code or status}) while trying to "
                f"{op} {uri}: check the S3 connection's credentials and the bucket's permissions"
            )
        if code in _TRANSIENT_CODES or status >= 500 or status == 429:
            return ObjectStoreUnavailableError(
                f"S3 at {where} failed to {op} {uri} ({code or status}); a retry may succeed"
            )
        return ParameterError(f"S3 at {where} refused to {op} {uri} ({code or status})")

    def _bucket_exists(self, bucket: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._s3().head_bucket(Bucket=bucket)
        except ClientError as exc:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            return status != 404
        except Exception:
            return True  # cannot tell: report the object as missing
        return True

    # -- bytes -----------------------------------------------------------------------------------
    def put_bytes(self, uri: str, data: bytes, *, content_type: str | None = None) -> str:
        scheme, bucket, key = self._split(uri)
        if scheme == "s3":
            extra = {"ContentType": content_type} if content_type else {}
            self._call(
                "write", uri, lambda: self._s3().put_object(Bucket=bucket, Key=key, Body=data, **extra)
            )
            return uri
        path = Path(key)
        with self._local_atomic(path) as tmp:
            tmp.write_bytes(data)
        return uri

    def get_bytes(self, uri: str) -> bytes:
        scheme, bucket, key = self._split(uri)
        if scheme == "s3":

            def fetch() -> bytes:
                resp = self._s3().get_object(Bucket=bucket, Key=key)
                with contextlib.closing(resp["Body"]) as body:
                    return bytes(body.read())

            return self._call("read", uri, fetch)
        return Path(key).read_bytes()

    def exists(self, uri: str) -> bool:
        scheme, bucket, key = self._split(uri)
        if scheme == "s3":
            resp = self._call(
                "check", uri, lambda: self._s3().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
            )
            return any(o["Key"] == key for o in resp.get("Contents", []))
        return Path(key).exists()

    def list(self, prefix_uri: str) -> list[str]:
        """Object URIs under a prefix, sorted."""
        scheme, bucket, key = self._split(prefix_uri)
        if scheme == "s3":
            return sorted(f"s3://{bucket}/{k}" for k in self._s3_keys(bucket, key, prefix_uri))
        root = Path(key)
        if not root.exists():
            return []
        return sorted(
            file_uri(os.path.abspath(p))
            for p in root.rglob("*")
            if p.is_file()
            and not p.name.startswith(".")
            and (self.root is None or is_under(str(p), self.root))
        )

    def _s3_keys(self, bucket: str, prefix: str, uri: str) -> builtins.list[str]:
        def collect() -> builtins.list[str]:
            keys: builtins.list[str] = []
            paginator = self._s3().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                keys.extend(o["Key"] for o in page.get("Contents", []))
            return keys

        return self._call("list", uri, collect)

    # -- copy, delete, share -------------------------------------------------------------------
    def copy(self, src_uri: str, dst_uri: str) -> str:
        """Copy one object (any scheme to any scheme); returns ``dst_uri``.

        S3 to S3 is a server-side copy. The destination appears atomically.

        Raises:
            FileNotFoundError: ``src_uri`` does not exist.
        """
        s_scheme, s_bucket, s_key = self._split(src_uri)
        d_scheme, d_bucket, d_key = self._split(dst_uri)
        if s_scheme == "s3" and d_scheme == "s3":
            size = self._call(
                "copy", src_uri, lambda: self._s3().head_object(Bucket=s_bucket, Key=s_key)["ContentLength"]
            )
            source = {"Bucket": s_bucket, "Key": s_key}
            if size < self.multipart_threshold:
                self._call(
                    "copy to",
                    dst_uri,
                    lambda: self._s3().copy_object(CopySource=source, Bucket=d_bucket, Key=d_key),
                )
            else:
                self._call(
                    "copy to",
                    dst_uri,
                    lambda: self._s3().copy(source, d_bucket, d_key, Config=self._transfer_config()),
                )
            return dst_uri
        if s_scheme == "s3":  # S3 -> local
            dst = Path(d_key)
            with self._local_atomic(dst) as tmp:
                self._download(src_uri, tmp)
            return dst_uri
        src = Path(s_key)
        if not src.is_file():
            raise FileNotFoundError(f"no object at {src_uri}")
        if d_scheme == "s3":  # local -> S3
            self._upload(src, dst_uri)
            return dst_uri
        with self._local_atomic(Path(d_key)) as tmp:
            shutil.copyfile(src, tmp)
        return dst_uri

    def delete(self, uri: str) -> None:
        """Delete one object; deleting a missing object is not an error (as on S3)."""
        scheme, bucket, key = self._split(uri)
        if scheme == "s3":
            self._call("delete", uri, lambda: self._s3().delete_object(Bucket=bucket, Key=key))
            return
        Path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix_uri: str) -> int:
        """Delete every object under a folder-like prefix; returns how many were deleted.

        The prefix is a folder: ``delete_prefix("s3://b/staging/run-1")`` deletes
        ``staging/run-1/...`` but not ``staging/run-10/...``. A bare bucket or filesystem root is
        refused.
        """
        scheme, bucket, key = self._split(prefix_uri)
        folder = key.strip("/")
        if scheme == "s3":
            if not folder:
                raise ParameterError(f"refusing to delete a whole bucket: {prefix_uri!r}")
            keys = self._s3_keys(bucket, folder + "/", prefix_uri)
            for start in range(0, len(keys), 1000):
                batch = [{"Key": k} for k in keys[start : start + 1000]]

                def delete_batch(objects: builtins.list[dict[str, str]] = batch) -> Any:
                    return self._s3().delete_objects(
                        Bucket=bucket, Delete={"Objects": objects, "Quiet": True}
                    )

                resp = self._call("delete under", prefix_uri, delete_batch)
                errors = resp.get("Errors") or []
                if errors:
                    codes = sorted({str(e.get("Code")) for e in errors})
                    raise ObjectStoreUnavailableError(
                        f"S3 at {self.s3.endpoint_label()} did not delete {len(errors)} object(s) under "
                        f"{prefix_uri} ({', '.join(codes)}); a retry may succeed"
                    )
            return len(keys)
        root = Path(key)
        if not root.is_absolute() or root.resolve() == Path(root.anchor).resolve():
            raise ParameterError(
                f"refusing to delete under {prefix_uri!r}: a local prefix must be an absolute folder, "
                "not a filesystem root"
            )
        if not root.is_dir():
            return 0
        count = sum(1 for p in root.rglob("*") if p.is_file() or p.is_symlink())
        shutil.rmtree(root)
        return count

    def presigned_url(self, uri: str, expires_s: int = 3600) -> str:
        """A URL that fetches the object without credentials (S3: a SigV4 presigned GET valid for
        ``expires_s`` seconds); a ``file://`` object's URL is its own ``file://`` URI.

        The URL is a bearer credential for that object: hand it only to its intended reader.
        """
        if not 1 <= int(expires_s) <= MAX_PRESIGN_SECONDS:
            raise ParameterError(
                f"presigned URL lifetime must be 1..{MAX_PRESIGN_SECONDS} seconds, got {expires_s}"
            )
        scheme, bucket, key = self._split(uri)
        if scheme == "s3":
            return str(
                self._call(
                    "presign",
                    uri,
                    lambda: self._s3().generate_presigned_url(
                        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=int(expires_s)
                    ),
                )
            )
        return as_uri(key)

    # -- local files <-> objects ---------------------------------------------------------------
    @staticmethod
    @contextlib.contextmanager
    def _local_atomic(path: Path) -> Iterator[Path]:
        """Yield a hidden temporary path next to ``path``; rename it to ``path`` on success."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            yield Path(tmp)
            os.replace(tmp, path)
        finally:
            _remove_quietly(tmp)

    def _upload(self, src: Path, uri: str, *, content_type: str | None = None) -> None:
        _, bucket, key = self._split(uri)
        extra = {"ContentType": content_type} if content_type else None
        self._call(
            "write",
            uri,
            lambda: self._s3().upload_file(
                str(src), bucket, key, ExtraArgs=extra, Config=self._transfer_config()
            ),
        )

    def _download(self, uri: str, dst: Path) -> None:
        _, bucket, key = self._split(uri)
        self._call(
            "read",
            uri,
            lambda: self._s3().download_file(bucket, key, str(dst), Config=self._transfer_config()),
        )

    def _stream_to(self, uri: str, sink: IO[bytes]) -> int:
        """Stream an S3 object into ``sink`` in 1 MiB pieces; returns its size."""
        _, bucket, key = self._split(uri)

        def fetch() -> int:
            resp = self._s3().get_object(Bucket=bucket, Key=key)
            with contextlib.closing(resp["Body"]) as body:
                for piece in body.iter_chunks(chunk_size=MiB):
                    sink.write(piece)
            return int(resp.get("ContentLength") or 0)

        return self._call("read", uri, fetch)

    # -- tables ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def open_parquet_writer(
        self, uri: str, schema: pa.Schema, *, compression: str = "zstd"
    ) -> Iterator[ParquetChunkWriter]:
        """Write a Parquet object chunk by chunk with memory bounded by one chunk.

        ``with store.open_parquet_writer(uri, schema) as w: w.write_frame(chunk)`` appends each
        chunk as a row group to a local temporary file; the object appears at ``uri`` only when
        the block exits without an error (S3: ``upload_file``, multipart for big files; local: an
        atomic rename). On an error nothing appears and the temporary file is removed. After the
        block, ``w.rows`` / ``w.uri`` / ``w.size_bytes`` describe what was published.

        ``schema`` may come from ``pyarrow.Schema.from_pandas(frame)`` or be written by hand;
        pandas dtypes (``Int64``, ``str``, time zones...) are recorded from the first chunk.
        """
        scheme, _, key = self._split(uri)
        if scheme == "file":
            dst = Path(key)
            dst.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
        else:
            fd, tmp = tempfile.mkstemp(prefix="dpsynth-upload-", suffix=".parquet")
        os.close(fd)
        writer = ParquetChunkWriter(uri, schema, Path(tmp), compression=compression)
        try:
            yield writer
            path = writer._finish()
            if scheme == "file":
                os.replace(path, key)
            else:
                self._upload(path, uri, content_type=_PARQUET_CONTENT_TYPE)
            writer.committed = True
        finally:
            writer._abort()

    def write_parquet(self, uri: str, frame: pd.DataFrame) -> str:
        import pyarrow as pa

        with self.open_parquet_writer(uri, pa.Schema.from_pandas(frame, preserve_index=False)) as writer:
            writer.write_frame(frame)
        return uri

    def read_parquet(self, uri: str) -> pd.DataFrame:
        """Read a whole Parquet object; big S3 objects go through a local temporary file."""
        import pyarrow.parquet as pq

        scheme, _, key = self._split(uri)
        if scheme == "file":
            if not Path(key).is_file():
                raise FileNotFoundError(f"no object at {uri}")
            return pq.read_table(key).to_pandas()
        with tempfile.SpooledTemporaryFile(max_size=self.spool_bytes, prefix="dpsynth-read-") as spool:
            self._stream_to(uri, spool)
            spool.seek(0)
            return pq.read_table(spool).to_pandas()

    def iter_parquet(self, uri: str, *, batch_rows: int = 50_000) -> Iterator[pd.DataFrame]:
        """A Parquet object as DataFrames of at most ``batch_rows`` rows (memory bounded by one
        batch; S3 objects are spooled to a local temporary file first)."""
        import pyarrow.parquet as pq

        scheme, _, key = self._split(uri)
        if scheme == "file":
            if not Path(key).is_file():
                raise FileNotFoundError(f"no object at {uri}")
            for batch in pq.ParquetFile(key).iter_batches(batch_size=batch_rows):
                yield batch.to_pandas()
            return
        with tempfile.SpooledTemporaryFile(max_size=self.spool_bytes, prefix="dpsynth-read-") as spool:
            self._stream_to(uri, spool)
            spool.seek(0)
            for batch in pq.ParquetFile(spool).iter_batches(batch_size=batch_rows):
                yield batch.to_pandas()
