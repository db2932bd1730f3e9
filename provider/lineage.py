"""OpenLineage for dpsynth operators, imported lazily: without the OpenLineage provider, nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: (namespace, name) of a dataset in OpenLineage's naming
LineageDataset = tuple[str, str]


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
