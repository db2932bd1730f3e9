"""Shared fixtures: real Adult data, a real Airflow (SQLite metadata DB), embedded dpsynth homes.

Airflow reads its configuration at import time, so the environment is set here, before any test
module imports it: a session-private AIRFLOW_HOME, the repository's ``dags/`` as DAGs folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from s3_server import s3_bucket, s3_server  # noqa: F401  (fixtures: a real SeaweedFS S3 server)

REPO = Path(__file__).resolve().parent.parent
ADULT_PATH = REPO / "data" / "adult" / "adult.data.gz"
ADULT_SPEC_PATH = REPO / "dags" / "specs" / "adult.yaml"
ARTIFACTS = REPO / "test-artifacts"

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="dpsynth-airflow-home-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DPSYNTH__HOME": str(_AIRFLOW_HOME / "dpsynth-unused"),
    }
)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata DB (SQLite) for ``dag.test()`` runs."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return _AIRFLOW_HOME


@pytest.fixture
def dpsynth_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh embedded dpsynth home (warehouse.db, objects/, ledger.db) for one test."""
    home = tmp_path / "dpsynth"
    home.mkdir()
    monkeypatch.setenv("AIRFLOW__DPSYNTH__HOME", str(home))
    return home


@pytest.fixture(scope="session")
def adult_frame():  # type: ignore[no-untyped-def]
    from synth_core.datasets import load_adult_frame

    return load_adult_frame(ADULT_PATH)


@pytest.fixture(scope="session")
def adult_spec():  # type: ignore[no-untyped-def]
    from synth_core.spec import TableSpec

    return TableSpec.from_yaml(ADULT_SPEC_PATH)


@pytest.fixture(scope="session")
def adult_split(adult_frame):  # type: ignore[no-untyped-def]
    """A fixed 80/20 train/holdout split of Adult."""
    import numpy as np

    rng = np.random.default_rng(7)
    order = rng.permutation(len(adult_frame))
    cut = int(0.8 * len(order))
    train = adult_frame.iloc[order[:cut]].reset_index(drop=True)
    holdout = adult_frame.iloc[order[cut:]].reset_index(drop=True)
    return train, holdout


@pytest.fixture
def artifacts_dir() -> Iterator[Path]:
    ARTIFACTS.mkdir(exist_ok=True)
    yield ARTIFACTS
