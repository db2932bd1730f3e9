"""Validation records that publish trusts only if the pipeline wrote them.

A record is signed with HMAC-SHA256 over its canonical JSON, which names the synthetic file's and
the model's SHA-256; the key is a secret of the installation (``$DPSYNTH_SIGNING_KEY``, else
``{dpsynth home}/signing.key``, created with mode 0600 on first use), never stored beside the
records. A hand-written ``<synthetic>.validation.json`` with ``success: true`` therefore does not
verify, and neither does a record whose file or model changed after validation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synth_core.errors import ValidationFailedError

SIGNING_KEY_ENV = "DPSYNTH_SIGNING_KEY"
SIGNATURE_FIELD = "signature"


def signing_key(home: Path) -> bytes:
    """The installation's signing key (created on first use)."""
    env = os.environ.get(SIGNING_KEY_ENV)
    if env:
        return env.encode("utf-8")
    path = home / "signing.key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text(encoding="ascii").strip().encode("ascii")


def _canonical(record: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in record.items() if k != SIGNATURE_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


def sign(record: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """``record`` with its ``signature``."""
    return {**record, SIGNATURE_FIELD: hmac.new(key, _canonical(record), hashlib.sha256).hexdigest()}


def verify_passing(
    record: Mapping[str, Any] | None, key: bytes, *, synthetic_sha256: str, model_sha256: str, where: str
) -> Mapping[str, Any]:
    """The record, if the pipeline signed it for exactly this synthetic file and model and it passed.

    Raises:
        ValidationFailedError: no record, a bad signature, another file or model, or a failure.
    """
    if record is None:
        raise ValidationFailedError(f"{where} has no validation record; nothing is published")
    expected = hmac.new(key, _canonical(record), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(str(record.get(SIGNATURE_FIELD, "")), expected):
        raise ValidationFailedError(
            f"the validation record of {where} was not written by this dpsynth installation "
            "(bad or missing signature); nothing is published"
        )
    if record.get("synthetic_sha256") != synthetic_sha256:
        raise ValidationFailedError(f"{where} changed since it was validated; nothing is published")
    if record.get("model_sha256") != model_sha256:
        raise ValidationFailedError(
            f"{where} was validated against another model bundle; nothing is published"
        )
    if record.get("success") is not True:
        raise ValidationFailedError(f"{where} did not pass validation; nothing is published")
    return record


def sha256_of(store: Any, uri: str) -> str:
    """SHA-256 of an object (streamed from a local file)."""
    from synth_core.object_store import local_path

    if uri.startswith("file://"):
        path = local_path(uri)
        if not path.is_file():
            raise FileNotFoundError(f"no object at {uri}")
        with path.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    return hashlib.sha256(store.get_bytes(uri)).hexdigest()
