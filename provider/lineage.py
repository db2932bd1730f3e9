"""OpenLineage for dpsynth operators, imported lazily: without the OpenLineage provider, nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

#: (namespace, name) of a dataset in OpenLineage's naming
LineageDataset = tuple[str, str]


def object_dataset(uri: str) -> LineageDataset:
    """OpenLineage naming of an object-store URI: ``s3://bucket`` + key, or ``file`` + path."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        return f"s3://{parsed.netloc}", parsed.path.lstrip("/")
    return "file", parsed.path


def operator_lineage(inputs: Sequence[LineageDataset], outputs: Sequence[LineageDataset]) -> Any:
    """An ``OperatorLineage`` (or ``None`` when the OpenLineage provider is not installed)."""
    try:
        from airflow.providers.common.compat.openlineage.facet import Dataset
        from airflow.providers.openlineage.extractors import OperatorLineage
    except ImportError:
        return None
    return OperatorLineage(
        inputs=[Dataset(namespace=ns, name=name) for ns, name in inputs],
        outputs=[Dataset(namespace=ns, name=name) for ns, name in outputs],
    )
