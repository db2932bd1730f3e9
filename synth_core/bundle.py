"""Model bundle metadata, readable without torch.

A bundle is a zip of ``bundle.json`` (format, version, generator and parameters, the privacy
accounting, the fitted transformer's state — public metadata and DP outputs only) and
``weights.pt``. Validating, publishing and reporting need only the metadata, so they need not
import torch (:class:`~synth_core.generators.base.Synthesizer` loads the weights).

Bundles are attacker-controlled files. They are never extracted; members are read through a
size cap (a member's declared size is not trusted: reading stops past the cap), and a bundle with
too many members, a duplicated member name, a member bigger than its cap or a compression ratio
past :data:`MAX_COMPRESSION_RATIO` is refused. Weights are loaded with ``weights_only=True``
(tensors only, no pickled code), and :func:`check_architecture` rebuilds the model on PyTorch's
``meta`` device first, so architecture parameters that do not fit the stored weights are refused
before any memory is allocated for them.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from collections.abc import Callable
from typing import Any

from synth_core.errors import BundleError

BUNDLE_FORMAT = "dpsynth-model-bundle"
BUNDLE_VERSION = 1

MiB = 1024 * 1024
#: Largest bundle, in bytes (the zip as stored).
MAX_BUNDLE_BYTES = 4096 * MiB
#: Most members of a bundle's zip (a bundle has two: ``bundle.json`` and ``weights.pt``).
MAX_MEMBERS = 16
#: Largest ``bundle.json``, in bytes once decompressed.
MAX_METADATA_BYTES = 64 * MiB
#: Largest ``weights.pt``, in bytes once decompressed.
MAX_WEIGHTS_BYTES = 4096 * MiB
#: Largest ratio of a member's decompressed to compressed size (members over 1 MiB): tensors
#: compress about 1.1×, JSON about 10×; a zip bomb 1000× and more.
MAX_COMPRESSION_RATIO = 200
_READ_PIECE = MiB


def read_member(data: bytes, name: str, limit: int) -> bytes:
    """Member ``name`` of bundle bytes, read through a cap of ``limit`` bytes.

    Raises:
        BundleError: not a zip, too big, too many or duplicated members, the member missing, bigger
            than ``limit`` or compressed past :data:`MAX_COMPRESSION_RATIO`.
    """
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"the model bundle is {len(data)} bytes, more than {MAX_BUNDLE_BYTES}")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise BundleError(f"the model bundle has {len(infos)} members, more than {MAX_MEMBERS}")
            names = [i.filename for i in infos]
            if len(set(names)) != len(names):
                raise BundleError("the model bundle holds a member name twice")
            if name not in names:
                raise BundleError(f"not a dpsynth model bundle (no {name})")
            info = zf.getinfo(name)
            _check_declared_size(info, limit)
            out = io.BytesIO()
            with zf.open(info) as member:
                while piece := member.read(_READ_PIECE):
                    out.write(piece)
                    if out.tell() > limit:  # the header may lie: stop reading at the cap
                        raise BundleError(f"bundle member {name} is bigger than {limit} bytes")
            return out.getvalue()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError) as exc:
        raise BundleError(f"not a dpsynth model bundle ({exc.__class__.__name__})") from None


def _check_declared_size(info: zipfile.ZipInfo, limit: int) -> None:
    if info.file_size > limit:
        raise BundleError(f"bundle member {info.filename} declares {info.file_size} bytes, more than {limit}")
    if info.file_size > MiB and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
        raise BundleError(
            f"bundle member {info.filename} is compressed {info.file_size / max(info.compress_size, 1):.0f}×, "
            f"more than {MAX_COMPRESSION_RATIO}× (a zip bomb?)"
        )


def read_bundle_metadata(data: bytes) -> dict[str, Any]:
    """``bundle.json`` of bundle bytes, after checking format, version and the types of its parts.

    Raises:
        BundleError: not a dpsynth bundle, or a format/version this dpsynth cannot read.
    """
    raw = read_member(data, "bundle.json", MAX_METADATA_BYTES)
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise BundleError(f"not a dpsynth model bundle ({exc.__class__.__name__})") from None
    if not isinstance(meta, dict):
        raise BundleError("not a dpsynth model bundle (bundle.json is not an object)")
    if meta.get("format") != BUNDLE_FORMAT or meta.get("version") != BUNDLE_VERSION:
        raise BundleError(
            f"unsupported bundle format {str(meta.get('format'))[:40]!r} version {str(meta.get('version'))[:20]!r} "
            f"(this dpsynth reads {BUNDLE_FORMAT!r} version {BUNDLE_VERSION})"
        )
    for key, kind in (("generator", str), ("params", dict), ("model_config", dict), ("transformer", dict)):
        if key in meta and not isinstance(meta[key], kind):
            raise BundleError(f"bundle.json: {key!r} must be a {kind.__name__}")
    return meta


def read_weights(data: bytes) -> dict[str, Any]:
    """The bundle's ``weights.pt`` state dict (tensors only: loaded with ``weights_only=True``)."""
    import torch

    raw = read_member(data, "weights.pt", MAX_WEIGHTS_BYTES)
    try:
        state = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
    except Exception as exc:  # weights_only refuses anything but tensors and plain containers
        raise BundleError(f"the bundle's weights cannot be loaded ({exc.__class__.__name__})") from None
    if not isinstance(state, dict):
        raise BundleError("the bundle's weights are not a state dict")
    return state


def check_architecture(restore: Callable[[], object], generator: str) -> None:
    """Run ``restore`` (which builds the model from the bundle's parameters and loads the stored
    weights into it) on PyTorch's ``meta`` device, where tensors take no memory: architecture
    parameters that do not fit the stored weights' shapes fail there (``load_state_dict`` compares
    shapes), before a real allocation of their size.

    Raises:
        BundleError: naming the generator; the failure's class only.
    """
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "copying ... to a meta parameter is a no-op"
            with torch.device("meta"):
                restore()
    except BundleError:
        raise
    except Exception as exc:
        raise BundleError(
            f"model bundle of generator {generator[:40]!r}: its architecture parameters do not fit its "
            f"stored weights ({exc.__class__.__name__})"
        ) from None
