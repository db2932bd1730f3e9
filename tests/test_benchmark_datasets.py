"""The benchmark's datasets (../shared/datasets) load as their TableSpecs declare: the declared
category sets and public bounds hold on the real rows, and the splits are fixed."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from synth_core.spec import ColumnKind
from synth_core.transformer import check_frame_against_spec

REPO = Path(__file__).resolve().parent.parent


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_generators", REPO / "benchmarks" / "generators.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("dataset", "rows", "columns"),
    [("bank_marketing", 45_211, 17), ("credit_default", 30_000, 24), ("california_housing", 20_640, 10)],
)
def test_benchmark_datasets_match_their_specs(dataset: str, rows: int, columns: int) -> None:
    harness = _harness()
    train, test, spec = harness.DATASETS[dataset]()
    assert len(train) + len(test) == rows and len(test) == round(0.2 * rows)
    assert list(train.columns) == [c.name for c in spec.output_columns] and len(train.columns) == columns
    check_frame_against_spec(train, spec)
    check_frame_against_spec(test, spec)
    again, _, _ = harness.DATASETS[dataset]()
    assert again.equals(train)  # the seeded split is the same every time
    both = [train, test]
    for c in spec.output_columns:
        values = [f[c.name].dropna() for f in both]
        if c.kind == ColumnKind.CATEGORICAL and c.categories is not None:
            seen = set().union(*(set(v.unique()) for v in values))
            assert seen <= set(c.categories), (c.name, sorted(seen - set(c.categories)))
        if c.bounds is not None:
            low, high = c.bounds
            assert all(v.min() >= low and v.max() <= high for v in values), c.name
    assert spec.target in train.columns and train[spec.target].nunique() >= 2
