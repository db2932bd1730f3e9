"""The benchmark's datasets load as their TableSpecs declare: the declared category sets and public
bounds hold on the real rows, and the splits are fixed.

The tests never read ``../shared/datasets``: they point the benchmark's one setting,
``DPSYNTH_DATASETS``, at the samples vendored in ``data/benchmark_samples`` (1,000 original lines
of each file, chosen to hold every column's minimum and maximum and every level of each
low-cardinality column of the full file, so the category and bound checks see the full file's
extremes; see each folder's ``SOURCE.md``). A data set that is not there fails with a message
naming that setting.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from synth_core.spec import ColumnKind
from synth_core.transformer import check_frame_against_spec

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "data" / "benchmark_samples"
#: data lines in each vendored sample (its SOURCE.md says how they were chosen)
SAMPLE_ROWS = 1_000


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_generators", REPO / "benchmarks" / "generators.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("dataset", "columns"), [("bank_marketing", 17), ("credit_default", 24), ("california_housing", 10)]
)
def test_benchmark_datasets_match_their_specs(
    dataset: str, columns: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DPSYNTH_DATASETS", str(SAMPLES))
    harness = _harness()
    train, test, spec = harness.DATASETS[dataset]()
    # every vendored line is loaded (none dropped or merged), 20 % of them as the test split
    assert len(train) + len(test) == SAMPLE_ROWS and len(test) == round(0.2 * SAMPLE_ROWS)
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


@pytest.mark.parametrize("dataset", ["bank_marketing", "credit_default", "california_housing"])
def test_a_missing_benchmark_dataset_names_the_setting(
    dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DPSYNTH_DATASETS", str(tmp_path))
    harness = _harness()
    with pytest.raises(harness.BenchmarkDatasetMissing, match=r"DPSYNTH_DATASETS=") as raised:
        harness.DATASETS[dataset]()
    assert str(tmp_path / dataset) in str(raised.value)
