"""Model bundle metadata, readable without torch.

A bundle is a zip of ``bundle.json`` (format, version, generator and parameters, the privacy
accounting, the fitted transformer's state — public metadata and DP outputs only) and
``weights.pt``. Validating, publishing and reporting need only the metadata, so they need not
import torch (:class:`~synth_core.generators.base.Synthesizer` loads the weights).
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from synth_core.errors import BundleError

BUNDLE_FORMAT = "dpsynth-model-bundle"
BUNDLE_VERSION = 1


def read_bundle_metadata(data: bytes) -> dict[str, Any]:
    """``bundle.json`` of bundle bytes, after checking format and version.

    Raises:
        BundleError: not a dpsynth bundle, or a format/version this dpsynth cannot read.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            meta: dict[str, Any] = json.loads(zf.read("bundle.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise BundleError(f"not a dpsynth model bundle ({exc.__class__.__name__})") from None
    if meta.get("format") != BUNDLE_FORMAT or meta.get("version") != BUNDLE_VERSION:
        raise BundleError(
            f"unsupported bundle format {meta.get('format')!r} version {meta.get('version')!r} "
            f"(this dpsynth reads {BUNDLE_FORMAT!r} version {BUNDLE_VERSION})"
        )
    return meta


def read_weights(data: bytes) -> dict[str, Any]:
    """The bundle's ``weights.pt`` state dict (tensors only: loaded with ``weights_only=True``)."""
    import torch

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            state: dict[str, Any] = torch.load(
                io.BytesIO(zf.read("weights.pt")), weights_only=True, map_location="cpu"
            )
    except (zipfile.BadZipFile, KeyError) as exc:
        raise BundleError(f"not a dpsynth model bundle ({exc.__class__.__name__})") from None
    return state
