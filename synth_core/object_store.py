"""Object store: a local folder (``file://``) by default, S3 (``s3://``) through boto3.

Everything dpsynth stages or publishes (Parquet, model bundles, reports, manifests) goes through
:class:`ObjectStore`, addressed by absolute URIs. Writes are atomic per object: local files are
written to a temporary name and renamed; S3 ``PutObject`` is atomic by nature.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from synth_core.errors import ParameterError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class S3Options:
    """How to reach S3: endpoint (for S3-compatible servers) and credentials.

    Credentials left ``None`` come from boto3's usual chain (environment, profile, instance role).
    """

    endpoint_url: str | None = None
    region_name: str | None = None
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region_name or "us-east-1",
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
        )


def join_uri(base: str, *parts: str) -> str:
    """``join_uri("s3://b/p", "x", "y.parquet")`` → ``"s3://b/p/x/y.parquet"``."""
    out = base.rstrip("/")
    for p in parts:
        out += "/" + p.strip("/")
    return out


def local_path(uri: str) -> Path:
    """The filesystem path of a ``file://`` URI (or a plain path)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path if parsed.scheme else uri))
    raise ParameterError(f"not a local URI: {uri!r}")


def as_uri(path_or_uri: str | os.PathLike[str]) -> str:
    """A plain path becomes a ``file://`` URI; URIs pass through."""
    text = os.fspath(path_or_uri)
    if urlparse(text).scheme in ("file", "s3"):
        return text
    return Path(text).resolve().as_uri()


class ObjectStore:
    """Reads and writes objects by absolute ``file://`` or ``s3://`` URI.

    Args:
        s3: how to reach S3 (only used for ``s3://`` URIs).
    """

    def __init__(self, s3: S3Options | None = None) -> None:
        self.s3 = s3 or S3Options()
        self._client: Any = None

    def _s3(self) -> Any:
        if self._client is None:
            self._client = self.s3.client()
        return self._client

    @staticmethod
    def _split(uri: str) -> tuple[str, str, str]:
        parsed = urlparse(uri)
        if parsed.scheme == "s3":
            return "s3", parsed.netloc, parsed.path.lstrip("/")
        if parsed.scheme in ("file", ""):
            return "file", "", str(local_path(uri))
        raise ParameterError(
            f"unsupported object store URI scheme {parsed.scheme!r} in {uri!r} (use file:// or s3://)"
        )

    def put_bytes(self, uri: str, data: bytes, *, content_type: str | None = None) -> str:
        scheme, bucket, key = self._split(uri)
        if scheme == "s3":
            extra = {"ContentType": content_type} if content_type else {}
            self._s3().put_object(Bucket=bucket, Key=key, Body=data, **extra)
            return uri
        path = Path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return uri

    def get_bytes(self, uri: str) -> bytes:
        scheme, bucket, key = self._split(uri)
        if scheme == "s3":
            try:
                return bytes(self._s3().get_object(Bucket=bucket, Key=key)["Body"].read())
            except self._s3().exceptions.NoSuchKey:
                raise FileNotFoundError(uri) from None
        return Path(key).read_bytes()

    def exists(self, uri: str) -> bool:
        scheme, bucket, key = self._split(uri)
        if scheme == "s3":
            resp = self._s3().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
            return any(o["Key"] == key for o in resp.get("Contents", []))
        return Path(key).exists()

    def list(self, prefix_uri: str) -> list[str]:
        """Object URIs under a prefix, sorted."""
        scheme, bucket, key = self._split(prefix_uri)
        if scheme == "s3":
            out: list[str] = []
            paginator = self._s3().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=key):
                out.extend(f"s3://{bucket}/{o['Key']}" for o in page.get("Contents", []))
            return sorted(out)
        root = Path(key)
        if not root.exists():
            return []
        return sorted(
            p.resolve().as_uri() for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
        )

    # -- tables ----------------------------------------------------------------------------------
    def write_parquet(self, uri: str, frame: pd.DataFrame) -> str:
        import pyarrow as pa
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf, compression="zstd")
        return self.put_bytes(uri, buf.getvalue(), content_type="application/vnd.apache.parquet")

    def read_parquet(self, uri: str) -> pd.DataFrame:
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(self.get_bytes(uri))).to_pandas()
